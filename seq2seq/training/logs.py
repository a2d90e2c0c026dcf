"""Where training's words go: log lines on stderr (and, once the run directory exists, into its train.log), and a
progress bar only where a person watches stderr (a terminal): a log file would collect every redraw."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from tqdm import tqdm

from seq2seq.device import choose_precision
from seq2seq.metric import LOWER_IS_BETTER, label, said
from seq2seq.model.network import count_parameters

if TYPE_CHECKING:
    from seq2seq.config import Config, TrainConfig
    from seq2seq.model.network import Seq2Seq
    from seq2seq.training.build import Machine

log = logging.getLogger("seq2seq")

FILE_FORMAT = "%(asctime)s %(levelname)s %(message)s"


class _TqdmHandler(logging.Handler):
    """Log lines on stderr through tqdm, so that progress bars stay intact."""

    def emit(self, record: logging.LogRecord) -> None:
        tqdm.write(self.format(record), file=sys.stderr)


class _Buffer(logging.Handler):
    """Holds log records until the run's train.log exists (see `attach_log_file`)."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def setup_logging(quiet: bool = False, buffer: bool = False) -> None:
    """Log lines to stderr (warnings only when `quiet`); `buffer`: also keep them for `attach_log_file`."""
    log.setLevel(logging.INFO)
    for handler in list(log.handlers):
        log.removeHandler(handler)
        handler.close()
    console = _TqdmHandler(logging.WARNING if quiet else logging.INFO)
    console.setFormatter(logging.Formatter("%(message)s"))
    log.addHandler(console)
    if buffer:
        log.addHandler(_Buffer())
    log.propagate = False


def attach_log_file(log_file: Path | None) -> None:
    """From now on log into `log_file` too, starting with the lines buffered so far (None: drop them)."""
    buffered = [h for h in log.handlers if isinstance(h, _Buffer)]
    for handler in buffered:
        log.removeHandler(handler)
    if log_file is None:
        return
    file_handler = logging.FileHandler(log_file, encoding="utf-8")
    file_handler.setFormatter(logging.Formatter(FILE_FORMAT))
    log.addHandler(file_handler)
    for handler in buffered:
        for record in handler.records:
            file_handler.handle(record)


def bars_wanted(quiet: bool, is_main: bool) -> bool:
    """Progress bars: on rank 0, not with --quiet, and only when stderr is a terminal."""
    return not quiet and is_main and sys.stderr.isatty()


def epoch_bar(total: int, done: int, epoch: int, epochs: int, show: bool) -> tqdm:
    """The bar of one epoch's batches (`done` of them trained already); a silent one when `show` is False."""
    return tqdm(
        total=total, initial=done, desc=f"epoch {epoch + 1}/{epochs}", disable=not show, leave=False, dynamic_ncols=True,
        file=sys.stderr,
    )


def format_interval(seconds: float) -> str:
    return tqdm.format_interval(seconds)


def log_setup(cfg: Config, m: Machine, model: Seq2Seq, pairs: int, root: Path) -> None:
    """What the run trains, on what, and what best.pt follows."""
    t = cfg.train
    log.info(
        "training %s: %d parameters, %d pairs, device %s, %s; run directory %s",
        cfg.model.attention, count_parameters(model), pairs, m.device, m.precision, root,
    )
    log.info("precision %s: %s", m.precision, choose_precision(t.precision, m.device).reason)
    if cfg.model.attention == "bahdanau":
        fast = model.uses_fast_bahdanau(m.device)
        log.info("decoder loop for training: %s", "the fast Bahdanau loop" if fast else "the textbook loop")
    if m.dist.enabled:
        log.info("distributed: %d processes, each update takes one batch from each", m.dist.world_size)
    if t.valid_every_minutes is not None:
        log.info("validation every %g min of training time (train.valid_every_minutes)", t.valid_every_minutes)
    better = "lower" if t.metric in LOWER_IS_BETTER else "higher"
    log.info("best.pt follows val %s (train.metric; %s is better)", label(t.metric), better)


FINISHED = {
    "train.epochs": "train.epochs: {t.epochs} trained",
    "train.max_steps": "train.max_steps: {t.max_steps} updates made",
    "train.max_time": "train.max_time: its {t.max_time:g} min are spent",
    "train.patience": "train.patience: early stopping ended it",
}


def log_stop(t: TrainConfig, root: Path, step: int, reason: str, resumed_at: int | None) -> None:
    """Why training stopped (`reason`: the config key that stopped it); a warning when a resumed run had nothing left."""
    if resumed_at is not None and step == resumed_at:  # a warning: --quiet shows it
        log.warning("the run in %s is finished (%s): nothing was trained", root, FINISHED[reason].format(t=t))
    elif reason in ("train.max_time", "train.max_steps"):
        log.info("stopping: %s reached", reason)
    elif reason == "train.patience":
        log.info("stopping early: no better val %s in %d validations (train.patience)", label(t.metric), t.patience)


def log_done(metric: str, step: int, elapsed: float, best: float | None, best_file: Path) -> None:
    shown = f"{label(metric)} none yet" if best is None else said(metric, best)
    log.info("done: %d steps in %.1f s, best val %s -> %s", step, elapsed, shown, best_file)
