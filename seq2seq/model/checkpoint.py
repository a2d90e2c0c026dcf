"""Checkpoints: one self-describing file, written atomically, read with `weights_only=True` only.

The layout, written by `Checkpoint.write` and read by `Checkpoint.read` and nowhere else, is one flat dict
of plain tensors, dicts, lists, strings and numbers (nothing is ever unpickled):

    format, format_version       "seq2seq-checkpoint", 1
    config                       the resolved Config, as `config_to_dict` writes it
    src_vocab, tgt_vocab         the token lists of both vocabularies
    tokenizer, tgt_tokenizer     `Tokenizer.to_dict()` of each side (a sentencepiece model as a uint8 tensor)
    model                        the Seq2Seq state_dict
    step                         updates trained
    scores                       best.pt and ckpt-STEP.pt: the validation record that chose them
    averaged_from                `seq2seq average`: the checkpoints averaged into it
    every other key              the training state (last.pt, best.pt): optimizer, progress, rng, schedule,
                                 early_stopping, kept_best; what resuming needs, and only that

Reading checks the file before torch.load sees it (`check_archive`): torch.save's zip archive holds a CRC-32
of every record, which torch.load ignores; a damaged file is refused as corrupted instead of loading other numbers.

torch and the model are imported only when a checkpoint is read or built: the CLI resolves a `--model` path
through this module before it pays for torch's import.
"""

from __future__ import annotations

import dataclasses
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from seq2seq.config import Config, config_from_dict, config_to_dict
from seq2seq.errors import CheckpointError, ConfigError, DataError
from seq2seq.files import atomic_write, atomic_write_text
from seq2seq.data.tokenizer import Tokenizer
from seq2seq.data.vocab import Vocab
from seq2seq.runfiles import DEFAULT_MODEL_FILE, RunFiles

if TYPE_CHECKING:
    import torch

    from seq2seq.model.network import Seq2Seq

FORMAT = "seq2seq-checkpoint"
FORMAT_VERSION = 1
REQUIRED_KEYS = ("config", "src_vocab", "tgt_vocab", "tokenizer", "tgt_tokenizer", "model", "step")
RESUME_KEYS = ("optimizer", "progress", "rng")  # a checkpoint without them decodes but cannot resume a run
_LAYOUT_KEYS = ("format", "format_version", *REQUIRED_KEYS, "scores", "averaged_from")


@dataclass(eq=False)  # identity: comparing weights tensor by tensor is no `==`
class Checkpoint:
    """Everything a checkpoint holds, typed. `read` / `write` are the only code that knows the file layout."""

    config: Config
    src_vocab: Vocab
    tgt_vocab: Vocab
    src_tokenizer: Tokenizer
    tgt_tokenizer: Tokenizer
    weights: dict[str, "torch.Tensor"] = field(repr=False)  # the Seq2Seq state_dict
    step: int
    training: dict[str, Any] = field(default_factory=dict, repr=False)  # optimizer, progress, rng, ...: what resuming needs
    scores: dict[str, Any] | None = None  # the validation record of best.pt / ckpt-STEP.pt
    averaged_from: list[str] | None = None  # the checkpoints `seq2seq average` made it from
    path: Path | None = None  # where it was read from; names the file in errors

    @classmethod
    def read(cls, path: str | Path) -> "Checkpoint":
        """Load and check the checkpoint at `path`; every problem is one CheckpointError line naming the file."""
        return cls.from_state(load_checkpoint(path), Path(path))

    @classmethod
    def from_state(cls, state: Mapping[str, Any], path: Path | None = None) -> "Checkpoint":
        """The typed checkpoint of a flat layout dict (as `load_checkpoint` returns it), checked for consistency."""
        where = path if path is not None else "checkpoint"
        missing = [k for k in REQUIRED_KEYS if k not in state]
        if missing:
            raise CheckpointError(f"{where}: checkpoint lacks {', '.join(missing)}")
        try:
            config = config_from_dict(state["config"])
            src_vocab, tgt_vocab = Vocab(state["src_vocab"]), Vocab(state["tgt_vocab"])
            src_tokenizer = Tokenizer.from_dict(state["tokenizer"])
            tgt_tokenizer = Tokenizer.from_dict(state["tgt_tokenizer"])
            step = int(state["step"])
        except (ConfigError, DataError, KeyError, TypeError, ValueError) as e:
            raise CheckpointError(f"{where}: inconsistent checkpoint: {e}") from None
        weights = state["model"]
        _check_embeddings(weights, len(src_vocab), len(tgt_vocab), where)
        scores, averaged = state.get("scores"), state.get("averaged_from")
        return cls(
            config, src_vocab, tgt_vocab, src_tokenizer, tgt_tokenizer, weights, step,
            training={k: v for k, v in state.items() if k not in _LAYOUT_KEYS},
            scores=dict(scores) if isinstance(scores, dict) else None,
            averaged_from=[str(p) for p in averaged] if isinstance(averaged, list) else None,
            path=path,
        )

    def to_state(self) -> dict[str, Any]:
        """The flat layout dict (without format and version, which `save_checkpoint` adds)."""
        state: dict[str, Any] = {
            "config": config_to_dict(self.config),
            "src_vocab": self.src_vocab.to_list(),
            "tgt_vocab": self.tgt_vocab.to_list(),
            "tokenizer": self.src_tokenizer.to_dict(),
            "tgt_tokenizer": self.tgt_tokenizer.to_dict(),
            "model": self.weights,
            "step": self.step,
            **self.training,
        }
        if self.scores is not None:
            state["scores"] = self.scores
        if self.averaged_from is not None:
            state["averaged_from"] = self.averaged_from
        return state

    def write(self, path: str | Path) -> None:
        """Write the checkpoint to `path` atomically (a crash leaves the old file or the new one)."""
        save_checkpoint(path, self.to_state())

    def decoding_only(self) -> "Checkpoint":
        """A copy without the training state: it decodes (translate, eval, average), it does not resume."""
        return dataclasses.replace(self, training={})

    @property
    def resumable(self) -> bool:
        """Whether it holds the state a run resumes from (optimizer, progress, random generators)."""
        return all(k in self.training for k in RESUME_KEYS)

    def build_model(self) -> "Seq2Seq":
        """The Seq2Seq of the config with these weights loaded, in eval mode, on the CPU."""
        from seq2seq.model.network import Seq2Seq

        model = Seq2Seq(self.config.model, len(self.src_vocab), len(self.tgt_vocab))
        try:
            model.load_state_dict(self.weights)
        except (RuntimeError, TypeError) as e:
            first = str(e).strip().splitlines()
            where = self.path if self.path is not None else "checkpoint"
            raise CheckpointError(f"{where}: weights do not match the model in its config: {' '.join(first[:2])[:300]}") from None
        return model.eval()


def _check_embeddings(weights: Any, src_rows: int, tgt_rows: int, where: Path | str) -> None:
    """Both embedding matrices have one row per vocabulary entry (a vocabulary edited after training has not)."""
    import torch

    for name, rows in (("encoder.embed.weight", src_rows), ("decoder.embed.weight", tgt_rows)):
        tensor = weights.get(name) if isinstance(weights, dict) else None
        if not isinstance(tensor, torch.Tensor) or tensor.size(0) != rows:
            got = tuple(tensor.shape) if isinstance(tensor, torch.Tensor) else "nothing"
            raise CheckpointError(f"{where}: vocabulary of {rows} tokens does not match weights {name} of shape {got}")


# ---- the file: safe low-level reading and writing of the layout dict ---------------------------------


def save_checkpoint(path: str | Path, state: Mapping[str, Any]) -> None:
    """Serialize `state` (plain containers and tensors only), with format and version, and write it atomically."""
    import torch  # here, not at the top: the CLI checks --model paths without paying for torch's import

    # Straight into the temporary file: through a BytesIO, a checkpoint with its optimizer state (~190 MB for the
    # recipe model) was held twice in memory at every save (the buffer and its getvalue() copy).
    atomic_write(Path(path), lambda f: torch.save({"format": FORMAT, "format_version": FORMAT_VERSION, **state}, f))


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint's layout dict safely: the file checked intact (`check_archive`), `weights_only=True`,
    format and version checked, required keys present."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: checkpoint not found")
    if path.is_dir():
        raise CheckpointError(f"{path}: is a directory, expected a .pt checkpoint")
    import torch

    unverified = check_archive(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # a refused pickle, a damaged record: torch's words are no help to the user
        raise CheckpointError(f"{path}: not a loadable checkpoint: {_load_failure(e)}") from None
    if unverified is not None:  # torch read a zip whose directory Python's zipfile could not: its CRCs went unchecked
        raise CheckpointError(f"{path}: not a loadable checkpoint: {unverified}")
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


# torch.save writes a zip archive (since torch 1.6) with a CRC-32 of every record, which torch.load never
# checks: flipped bytes inside a tensor load silently as other numbers (NaN scores, empty translations).
# Python's zipfile checks them: about 22 ms for a 66 MB checkpoint that torch.load reads in about 100 ms
# (one CPU core, file in the page cache). A digest of the tensors stored at save time would cost as much
# (crc32: 27 ms, sha256: 62 ms), change the format, and leave the pickle and every older checkpoint unchecked.
_ZIP_MAGIC = b"PK\x03\x04"
_LEGACY_MAGIC = b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19"  # torch.save before 1.6: a pickled magic number
_CORRUPTED = "corrupted or not a seq2seq checkpoint"
_DOS_DIRECTORY = 0x10  # the directory bit of a zip record's external attributes


def check_archive(path: Path) -> str | None:
    """Raise CheckpointError unless `path` is an intact torch.save archive: not empty, a zip holding a data.pkl
    record, every record matching its CRC-32.

    Returns None when intact, or the reason it is unverified when Python's zipfile cannot read the zip
    directory (a file cut short, most often): torch.load then judges it, and says why in its own words.
    Torch's legacy format (no zip, no checksums; seq2seq never writes it) is left to torch.load as well.
    """
    with path.open("rb") as f:  # an unreadable file is an OSError: the CLI shows it as it is
        head = f.read(len(_LEGACY_MAGIC))
    if not head:
        raise CheckpointError(f"{path}: not a loadable checkpoint: the file is empty (0 bytes), not a seq2seq checkpoint")
    if head.startswith(_LEGACY_MAGIC):
        return None
    if not head.startswith(_ZIP_MAGIC):
        raise CheckpointError(f"{path}: not a loadable checkpoint: {_CORRUPTED} (not the zip archive torch.save writes)")
    try:
        archive = zipfile.ZipFile(path)
    except Exception as e:  # noqa: BLE001 (BadZipFile, but a damaged directory raises others too)
        return f"truncated or corrupted: its zip directory is unreadable ({e})"
    with archive:
        try:
            if not any(name == "data.pkl" or name.endswith("/data.pkl") for name in archive.namelist()):
                raise CheckpointError(f"{path}: not a loadable checkpoint: a zip archive, but not a PyTorch file (no data.pkl record)")
            damage = _damaged_record(archive)
        except CheckpointError:
            raise
        except Exception as e:  # noqa: BLE001 (a damaged record header: BadZipFile, EOFError, ValueError, OSError, ...)
            raise CheckpointError(f"{path}: not a loadable checkpoint: corrupted ({_first_line(e)})") from None
    if damage is not None:
        raise CheckpointError(
            f"{path}: not a loadable checkpoint: corrupted: {damage} "
            "(the file changed after it was written: a bad disk, copy or download; use another copy)"
        )
    return None


def _damaged_record(archive: zipfile.ZipFile) -> str | None:
    """What is wrong with the first damaged record of `archive`, or None when every record is intact."""
    bad = archive.testzip()  # reads every record: the first whose bytes do not match their CRC-32
    if bad is not None:
        return f"record {bad} does not match its CRC-32 checksum"
    # torch's zip reader takes a record with the MS-DOS directory attribute for a folder and reads no bytes
    # from it, while zipfile ignores that attribute: one flipped bit there would load other weights silently.
    folder = next((i.filename for i in archive.infolist() if i.is_dir() or i.external_attr & _DOS_DIRECTORY), None)
    return None if folder is None else f"record {folder} is marked as a directory"


def _load_failure(e: Exception) -> str:
    """Why torch.load refused a file that `check_archive` let through, for the user."""
    if "weights_only" in str(e) or "Unsupported global" in str(e):  # an intact torch file: the pickle itself is refused
        return "it holds pickled Python objects, which are never loaded (weights_only=True)"
    return f"truncated, corrupted or not a PyTorch file ({_first_line(e)})"


def _first_line(e: Exception) -> str:
    """An exception's first sentence (torch's messages run on for lines), or its type when it has no message."""
    text = str(e).strip()
    return text.split(". ")[0].splitlines()[0][:120] if text else type(e).__name__


# ---- which checkpoint: --model and runs/latest ------------------------------------------------------


def resolve_model_path(model: str | Path | None) -> Path:
    """A `--model` argument (run directory or .pt file; None: the last trained run) -> checkpoint file."""
    if model is None:
        if not DEFAULT_MODEL_FILE.exists():
            raise CheckpointError("no --model given and no trained model recorded in runs/latest: train one first")
        model = DEFAULT_MODEL_FILE.read_text(encoding="utf-8").strip()
    path = Path(model)
    if path.is_dir():
        files = RunFiles(path)
        for checkpoint in (files.best, files.last):
            if checkpoint.exists():
                return checkpoint
        raise CheckpointError(f"{path}: run directory holds no best.pt or last.pt")
    if not path.exists():
        raise CheckpointError(f"{path}: no such model (give a run directory or a .pt checkpoint)")
    return path


def record_default_model(run_dir: Path) -> None:
    """Remember `run_dir` as the model `eval` and `translate` use when no --model is given."""
    DEFAULT_MODEL_FILE.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(DEFAULT_MODEL_FILE, str(run_dir.resolve()) + "\n")
