"""Checkpoints: one self-describing file, written atomically, read with `weights_only=True` only.

A checkpoint holds plain tensors, dicts, lists, strings and numbers: the weights, the resolved config,
both vocabularies, the tokenizer settings, the step and the optimizer state. Nothing is ever unpickled.
"""

from __future__ import annotations

import glob
import io
import os
import tempfile
from pathlib import Path
from typing import Any, Sequence

from seq2seq.errors import CheckpointError

FORMAT = "seq2seq-checkpoint"
FORMAT_VERSION = 1
DEFAULT_MODEL_FILE = Path("runs") / "latest"  # holds the path of the last trained run directory


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


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write to a temporary file in the same directory, fsync, then rename over `path`.

    A crash at any moment leaves either the old file or the new one, never a torn one.
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
            f.write(data)
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


def _write_error(path: Path, e: OSError) -> OSError:
    error = OSError(f"cannot write {path}: {e.strerror or e}")
    error.errno = e.errno
    return error


TMP_SUFFIX = ".tmp"
_UMASK = os.umask(0o022)  # read once, at import (os.umask can only be read by setting it)
os.umask(_UMASK)


def _default_mode() -> int:
    return 0o666 & ~_UMASK


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


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    """Serialize `state` (plain containers and tensors only) and write it atomically."""
    import torch  # here, not at the top: the CLI checks --model paths without paying for torch's import

    buffer = io.BytesIO()
    torch.save({"format": FORMAT, "format_version": FORMAT_VERSION, **state}, buffer)
    atomic_write_bytes(Path(path), buffer.getvalue())


REQUIRED_KEYS = ("config", "src_vocab", "tgt_vocab", "tokenizer", "model", "step")


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint safely: `weights_only=True`, format and version checked, required keys present."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: checkpoint not found")
    if path.is_dir():
        raise CheckpointError(f"{path}: is a directory, expected a .pt checkpoint")
    import torch

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # a refused pickle, a truncated zip, garbage bytes: all the same to the user
        if "weights_only" in str(e) or "Unsupported global" in str(e):
            reason = "it holds pickled Python objects, which are never loaded (weights_only=True)"
        else:  # torch's own words, first sentence only: they run on for lines
            detail = str(e).strip().split(". ")[0].splitlines()[0] if str(e).strip() else type(e).__name__
            reason = f"truncated, corrupted or not a PyTorch file ({detail[:120]})"
        raise CheckpointError(f"{path}: not a loadable checkpoint: {reason}") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a seq2seq checkpoint")
    if state.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: checkpoint format version {state.get('format_version')!r}, this seq2seq reads version {FORMAT_VERSION}"
        )
    missing = [k for k in REQUIRED_KEYS if k not in state]
    if missing:
        raise CheckpointError(f"{path}: checkpoint lacks {', '.join(missing)}")
    return state


def resolve_model_path(model: str | Path | None) -> Path:
    """A `--model` argument (run directory or .pt file; None: the last trained run) -> checkpoint file."""
    if model is None:
        if not DEFAULT_MODEL_FILE.exists():
            raise CheckpointError("no --model given and no trained model recorded in runs/latest: train one first")
        model = DEFAULT_MODEL_FILE.read_text(encoding="utf-8").strip()
    path = Path(model)
    if path.is_dir():
        for name in ("best.pt", "last.pt"):
            if (path / name).exists():
                return path / name
        raise CheckpointError(f"{path}: run directory holds no best.pt or last.pt")
    if not path.exists():
        raise CheckpointError(f"{path}: no such model (give a run directory or a .pt checkpoint)")
    return path


def record_default_model(run_dir: Path) -> None:
    """Remember `run_dir` as the model `eval` and `translate` use when no --model is given."""
    DEFAULT_MODEL_FILE.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(DEFAULT_MODEL_FILE, str(run_dir.resolve()) + "\n")
