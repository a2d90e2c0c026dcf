"""Stopping on request: Ctrl-C or SIGTERM lets training finish its step, save last.pt and exit 130.

    with StopRequest() as stop:
        for batch in batches:
            ...one update...
            if stop.requested:
                save last.pt
                raise TrainingInterrupted(stop.signal_name, step, last_pt)

A second signal while the first is being honoured aborts at once (KeyboardInterrupt): the checkpoint
already on disk stays intact, because every checkpoint is written atomically.
"""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from types import FrameType
from typing import Any

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
EXIT_CODE = 130  # what shells report for a command stopped by Ctrl-C


class TrainingInterrupted(Exception):
    """Training stopped on a signal after saving `checkpoint` at `step`; the CLI prints how to resume."""

    def __init__(self, signal_name: str, step: int, checkpoint: Path):
        super().__init__(f"{signal_name} at step {step}: saved {checkpoint}")
        self.signal_name = signal_name
        self.step = step
        self.checkpoint = checkpoint


class StopRequest:
    """While active, SIGINT / SIGTERM set `requested` instead of ending the process.

    Outside the main thread (where Python cannot install handlers) it does nothing and `requested` stays False.
    """

    def __init__(self) -> None:
        self.requested = False
        self.signal_name = ""
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.requested:
            raise KeyboardInterrupt  # asked twice: stop now, the last checkpoint on disk is intact
        self.requested = True
        self.signal_name = signal.Signals(signum).name

    def __enter__(self) -> "StopRequest":
        if threading.current_thread() is threading.main_thread():
            for signum in STOP_SIGNALS:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc_info: object) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()
