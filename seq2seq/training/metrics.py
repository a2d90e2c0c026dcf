"""Training metrics: one JSON object per line in `metrics.jsonl`, optionally mirrored to TensorBoard.

Two kinds of record share the file, told apart by their keys:
    train:      step, epoch, train_loss, lr, tokens_per_s, tgt_tokens, elapsed
    validation: step, epoch, val_loss, val_ppl, val_bleu, val_chrf, tgt_tokens, elapsed
`tgt_tokens` counts the real target tokens trained on so far (all ranks).
`elapsed` is seconds of training over all sessions of the run.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from seq2seq.errors import ConfigError, DataError, install_hint
from seq2seq.files import dump_json



def tensorboard_tag(key: str) -> str:
    """`val_bleu` -> `val/bleu`, `train_loss` -> `train/loss`, `lr` -> `train/lr`."""
    if key.startswith("val_"):
        return "val/" + key[len("val_") :]
    if key.startswith("train_"):
        return "train/" + key[len("train_") :]
    return "train/" + key


class MetricsLogger:
    """Appends records to `metrics.jsonl` and, when `tensorboard_dir` is given, to TensorBoard events.

    `purge_step` (on resume): records of a later step, written by a session that did not reach its next
    checkpoint, are dropped from both, so that the curves continue from the checkpoint without a doubled tail.
    """

    def __init__(self, path: Path, tensorboard_dir: Path | None = None, purge_step: int | None = None):
        self.path = Path(path)
        self.writer: Any = None
        if purge_step is not None and self.path.exists():
            from seq2seq.files import atomic_write_text

            kept = [r for r in read_metrics(self.path) if r["step"] <= purge_step]
            atomic_write_text(self.path, "".join(dump_json(r) + "\n" for r in kept))
        if tensorboard_dir is not None:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                raise ConfigError(f"train.tensorboard: TensorBoard is not installed: {install_hint('tensorboard')}") from None
            self.writer = SummaryWriter(log_dir=str(tensorboard_dir), purge_step=purge_step)

    def log(self, record: dict[str, Any]) -> None:
        """Write one record (it must hold `step`); numbers other than step and epoch go to TensorBoard."""
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(dump_json(record) + "\n")  # a diverged loss is null, never NaN (not JSON)
        if self.writer is not None:
            for key, value in record.items():
                if key not in ("step", "epoch") and isinstance(value, (int, float)) and not isinstance(value, bool):
                    self.writer.add_scalar(tensorboard_tag(key), value, record["step"])
            self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """All records of a metrics.jsonl file, in file order. A torn last line (a crash mid-write) is skipped."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no metrics file (it is written while a model trains)")
    try:
        lines = path.read_text(encoding="utf-8").split("\n")
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: cannot read ({e})") from None
    records = []
    last = max((i for i, line in enumerate(lines) if line.strip()), default=-1)
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            if i == last:
                break
            raise DataError(f"{path}:{i + 1}: not a JSON object") from None
        if not isinstance(record, dict) or not isinstance(record.get("step"), int):
            raise DataError(f"{path}:{i + 1}: expected a JSON object with an integer `step`")
        records.append(record)
    return records


def latest_per_step(records: list[dict[str, Any]], key: str) -> tuple[list[int], list[float]]:
    """Steps and values of `key`, sorted by step; where a step repeats (a resumed run), the last record wins."""
    by_step: dict[int, float] = {}
    for record in records:
        value = record.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            by_step[record["step"]] = float(value)
    steps = sorted(by_step)
    return steps, [by_step[s] for s in steps]
