"""Files that a crash cannot tear: write to a temporary file beside the target, fsync, rename over it.

Used for everything a run writes (checkpoints, vocabularies, configs, sentencepiece models, metrics). It
imports nothing of seq2seq, so that low modules (vocab, subword) can use it without pulling in the rest.
"""

from __future__ import annotations

import json
import math

import glob
import os
import tempfile
from pathlib import Path
from typing import BinaryIO, Callable, Sequence

TMP_SUFFIX = ".tmp"
_UMASK = os.umask(0o022)  # read once, at import (os.umask can only be read by setting it)
os.umask(_UMASK)


def _default_mode() -> int:
    return 0o666 & ~_UMASK


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _write_error(path: Path, e: OSError) -> OSError:
    error = OSError(f"cannot write {path}: {e.strerror or e}")
    error.errno = e.errno
    return error


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write to a temporary file in the same directory, fsync, then rename over `path`.

    A crash at any moment leaves either the old file or the new one, never a torn one.
    """
    atomic_write(path, lambda f: f.write(data))


def atomic_write(path: Path, write: Callable[[BinaryIO], object]) -> None:
    """`write(f)` into a temporary file in the same directory, fsync, then rename over `path` (as atomic_write_bytes).

    For large files written by a serializer (torch.save): the bytes go straight to the file, never held in memory.
    """
    path = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TMP_SUFFIX)
    except OSError as e:
        raise _write_error(path, e) from None
    try:
        with os.fdopen(fd, "wb") as f:
            # mkstemp makes the file private (0600); give it the mode a plain open() would have.
            os.fchmod(f.fileno(), _default_mode())
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(e, OSError):  # name the file the user knows, not our temporary one
            raise _write_error(path, e) from None
        raise
    _fsync_dir(path.parent)


def atomic_write_text(path: Path, text: str) -> None:
    """`atomic_write_bytes` of `text` in UTF-8."""
    atomic_write_bytes(path, text.encode("utf-8"))


def remove_stale_temp_files(directory: Path, names: Sequence[str]) -> list[Path]:
    """Delete the temporary files that a process killed inside `atomic_write_bytes` left for `names`."""
    removed = []
    for name in names:
        for tmp in Path(directory).glob(f".{glob.escape(name)}.*{TMP_SUFFIX}"):
            try:
                tmp.unlink()
                removed.append(tmp)
            except OSError:
                pass
    return removed


def finite_or_null(value: object) -> object:
    """`value` with every NaN or infinite float inside (dicts, lists, tuples) replaced by None.

    Python's json writes them as `NaN` / `Infinity`, which is not JSON: one diverged score would make a whole
    line unreadable to every JSON parser. null says "no number" in a way they all read.
    """
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite_or_null(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_or_null(v) for v in value]
    return value


def dump_json(obj: object) -> str:
    """`obj` as one line of strict JSON (non-finite numbers as null; `allow_nan=False` guards the rule)."""
    return json.dumps(finite_or_null(obj), ensure_ascii=False, allow_nan=False)
