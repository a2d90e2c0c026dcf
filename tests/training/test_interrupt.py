"""A stop signal becomes a flag the training loop reads once per step; a second one stops at once."""

from __future__ import annotations

import os
import signal
import time

import pytest

from seq2seq.training.interrupt import StopRequest


def test_stop_request_turns_sigterm_into_a_flag():
    with StopRequest() as stop:
        assert not stop.requested
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.01)
        assert stop.requested and stop.signal_name == "SIGTERM"
        with pytest.raises(KeyboardInterrupt):  # a second signal stops at once
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.01)
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
