"""The interactive prompt of `seq2seq translate` when stdin is a terminal.

Line editing and history come from the stdlib `readline` (history kept in ~/.seq2seq_history);
`:q` or Ctrl-D quits, Ctrl-C abandons the line being typed.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Callable

QUIT_COMMANDS = (":q", ":quit", ":exit")
HISTORY_FILE = Path.home() / ".seq2seq_history"
HISTORY_LENGTH = 1000
PROMPT = "> "


def _load_history(history_file: Path | None) -> Any:
    """Import readline (which gives input() line editing) and load the history; None where there is none."""
    try:
        import readline
    except ImportError:  # e.g. Windows without pyreadline
        return None
    if history_file is not None:
        readline.set_history_length(HISTORY_LENGTH)
        try:
            readline.read_history_file(history_file)
        except (OSError, UnicodeDecodeError):
            pass
    return readline


def _save_history(readline: Any, history_file: Path | None) -> None:
    if readline is None or history_file is None:
        return
    try:
        readline.write_history_file(history_file)
    except OSError:
        pass  # a read-only home is no reason to fail


def prompt_loop(handle: Callable[[str], None], banner: str, history_file: Path | None = HISTORY_FILE) -> None:
    """Read lines from the terminal and pass each non-empty one to `handle` until :q or end of input."""
    readline = _load_history(history_file)
    if banner:
        print(banner, file=sys.stderr, flush=True)
    try:
        while True:
            try:
                if sys.stdout.isatty():
                    line = input(PROMPT)
                else:  # keep a redirected stdout free of prompts
                    sys.stderr.write(PROMPT)
                    sys.stderr.flush()
                    line = input()
            except EOFError:
                print(file=sys.stderr)
                return
            except KeyboardInterrupt:
                print(file=sys.stderr)
                continue
            text = line.strip()
            if text in QUIT_COMMANDS:
                if readline is not None and readline.get_current_history_length():
                    # keep the history for sentences: recalling ":q" is never wanted
                    readline.remove_history_item(readline.get_current_history_length() - 1)
                return
            if text:
                handle(text)
    finally:
        _save_history(readline, history_file)
