"""Where training's words go: log lines on stderr (and, once the run directory exists, into its train.log), and a
progress bar only where a person watches stderr (a terminal): a log file would collect every redraw."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from tqdm import tqdm

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
