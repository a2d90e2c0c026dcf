"""The files of a run directory, each named once: every module that reads or writes one asks `RunFiles` for its path.
Base layer, no torch: data (the sentencepiece models, the shards), the checkpoint, training and the tools all use it.

    config.yaml                    the config the run trains with (written first)
    src_vocab.json tgt_vocab.json  the vocabularies
    sentencepiece/                 src.model / tgt.model, or joint.model (data.sp_shared): the subword models
    bin/                           the training shards of `seq2seq preprocess` (data/shards.ShardFiles, their layout)
    best.pt last.pt                the best validation's checkpoint and the latest (what a resume reads)
    ckpt-STEP.pt                   the k best validations (train.keep_best > 1), weights only
    metrics.jsonl train.log        one record per log and validation; the log lines
    tensorboard/                   train.tensorboard's event files
    curves.png averaged.pt         `seq2seq plot curves` and `seq2seq average`, by default
    stderr.log                     a tuning trial's stderr (tools/tune_trial)

Outside it, `DEFAULT_MODEL_FILE` (runs/latest, under the working directory) names the last trained run directory.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

DEFAULT_MODEL_FILE = Path("runs") / "latest"  # holds the path of the last trained run directory
KEPT_PREFIX = "ckpt-"  # ckpt-STEP.pt


@dataclass(frozen=True)
class RunFiles:
    """The files of a run directory."""

    root: Path

    @property
    def config(self) -> Path:
        return self.root / "config.yaml"

    @property
    def src_vocab(self) -> Path:
        return self.root / "src_vocab.json"

    @property
    def tgt_vocab(self) -> Path:
        return self.root / "tgt_vocab.json"

    @property
    def sentencepiece(self) -> Path:
        """The directory of the sentencepiece models."""
        return self.root / "sentencepiece"

    def subword_models(self, joint: bool) -> tuple[Path, Path]:
        """The source and target sentencepiece models (the same file when `joint`: data.sp_shared)."""
        if joint:
            return self.sentencepiece / "joint.model", self.sentencepiece / "joint.model"
        return self.sentencepiece / "src.model", self.sentencepiece / "tgt.model"

    @property
    def shards(self) -> Path:
        """The directory of the training shards (`seq2seq preprocess`)."""
        return self.root / "bin"

    @property
    def best(self) -> Path:
        return self.root / "best.pt"

    @property
    def last(self) -> Path:
        return self.root / "last.pt"

    def kept(self, step: int) -> Path:
        """One of the k best checkpoints (train.keep_best > 1), weights only."""
        return self.root / f"{KEPT_PREFIX}{step}.pt"

    def kept_files(self) -> list[Path]:
        """The k best checkpoints the directory holds, by step."""
        paths = [p for p in self.root.glob(f"{KEPT_PREFIX}*.pt") if p.stem[len(KEPT_PREFIX) :].isdigit()]
        return sorted(paths, key=lambda p: int(p.stem[len(KEPT_PREFIX) :]))

    @property
    def metrics(self) -> Path:
        return self.root / "metrics.jsonl"

    @property
    def log(self) -> Path:
        return self.root / "train.log"

    @property
    def tensorboard(self) -> Path:
        return self.root / "tensorboard"

    @property
    def curves(self) -> Path:
        """`seq2seq plot curves`' image by default."""
        return self.root / "curves.png"

    @property
    def averaged(self) -> Path:
        """`seq2seq average`'s checkpoint by default."""
        return self.root / "averaged.pt"

    @property
    def stderr(self) -> Path:
        """A tuning trial's stderr: its warnings and last line (tools/tune_trial)."""
        return self.root / "stderr.log"
