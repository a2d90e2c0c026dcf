"""The interactive prompt of `translate` when stdin is a terminal: line editing, history, :q and Ctrl-D."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest

import seq2seq
from tests.conftest import ONE_THREAD, ROOT


@pytest.fixture
def run(api_run: Path) -> Path:
    return api_run


ENV = {**os.environ, **ONE_THREAD, "PYTHONPATH": str(ROOT)}


def test_interactive_prompt_in_a_pseudo_terminal(run: Path, tmp_path: Path) -> None:
    expected = seq2seq.Translator.load(run).translate(["I love you"])[0]
    master, slave = pty.openpty()
    env = {**ENV, "HOME": str(tmp_path), "TERM": "dumb"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "seq2seq", "translate", "--model", str(run)],
        stdin=slave, stdout=slave, stderr=slave, cwd=tmp_path, env=env, close_fds=True,
    )
    os.close(slave)
    seen = b""

    def read_until(marker: bytes, timeout: float = 60.0) -> None:
        nonlocal seen
        deadline = time.monotonic() + timeout
        while marker not in seen:
            ready, _, _ = select.select([master], [], [], max(deadline - time.monotonic(), 0))
            if not ready:
                raise AssertionError(f"no {marker!r} in the terminal output: {seen!r}")
            try:
                seen += os.read(master, 4096)
            except OSError:  # the child closed the terminal
                raise AssertionError(f"no {marker!r} in the terminal output: {seen!r}") from None

    try:
        read_until(b":q or Ctrl-D quits")
        read_until(b"> ")
        os.write(master, b"I love you\n")
        read_until(expected.encode("utf-8") + b"\r\n")
        os.write(master, b":q\n")
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
    assert (tmp_path / ".seq2seq_history").read_text(encoding="utf-8").split() == ["I", "love", "you"]  # not ":q"


def test_prompt_loop_quits_on_end_of_input_and_survives_ctrl_c(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    from seq2seq.cli.interactive import prompt_loop

    feed = iter(["one", "", KeyboardInterrupt(), "  two  ", EOFError(), "never"])

    def fake_input(prompt: str = "") -> str:
        item = next(feed)
        if isinstance(item, BaseException):
            raise item
        return item

    monkeypatch.setattr("builtins.input", fake_input)
    handled: list[str] = []
    prompt_loop(handled.append, "banner", history_file=None)
    assert handled == ["one", "two"]
    assert next(feed) == "never"
