"""Run `python -m seq2seq ARGS` in processes forked from one that has already imported seq2seq and torch.

Why: importing torch costs a fresh interpreter about 2 s of CPU, and the suite runs the command line about a
hundred times (the bad-input catalogue alone holds ~60 cases). A forked child is a process of its own, like a
subprocess: its own working directory, stdin, stdout and stderr (files, not terminals), its own exit code, and
the real entry point (`seq2seq/__main__.py`, run as `python -m seq2seq` runs it). What it does not repeat is the
interpreter's start and the imports; what happens at import time (oneDNN's cache cap, `import seq2seq` staying
light) is tested with fresh interpreters in tests/test_device.py and tests/test_api.py.

The server reads one JSON request per line on stdin and answers each with one JSON line:
  {"jobs": [...], "workers": N}  runs the jobs N at a time -> {"codes": [...]}, each job's exit status as
                                 subprocess reports it (-9: killed after its timeout);
  {"spawn": job}                 starts one job and answers at once -> {"pid": PID} (the caller may signal it);
  {"poll": PID} / {"wait": PID}  -> {"code": exit status, or null while it runs} (wait: once it has ended).
A job: args, cwd, the files for stdin, stdout and stderr, a timeout, and optionally env (variables to set).
It never runs a torch operation itself, so no OpenMP thread pool exists when it forks.
"""

from __future__ import annotations

import importlib
import io
import json
import logging
import os
import runpy
import signal
import sys
import time
import traceback

import torch  # noqa: F401  (imported once here, inherited by every child)

import seq2seq.cli.app  # noqa: F401

# What the commands import lazily, imported here too (typer's option parsing brings pydantic; the commands bring
# the library; torch's first optimizer brings torch._dynamo, ~2 s). Only a speed-up: a module missing here is
# imported by the child that needs it.
WARM = [
    "torch._dynamo", "pydantic", "typer._adapters", "yaml", "sacrebleu", "seq2seq.cli.tools", "seq2seq.decode.evaluate", "seq2seq.decode.results",
    "seq2seq.decode.translator", "seq2seq.model.checkpoint", "seq2seq.training.preprocess", "seq2seq.training.trainer",
]
for _name in WARM:
    try:
        importlib.import_module(_name)
    except ImportError:
        pass


def _stream(fd: int, mode: str, like: io.TextIOWrapper, line_buffering: bool = False) -> io.TextIOWrapper:
    """A text stream on `fd` with the encoding and error handler of the interpreter's own stream `like`."""
    raw = io.FileIO(fd, mode, closefd=False)
    buffered = io.BufferedReader(raw) if mode == "rb" else io.BufferedWriter(raw)
    return io.TextIOWrapper(buffered, encoding=like.encoding, errors=like.errors, line_buffering=line_buffering)


def _child(job: dict) -> None:
    """In the forked child: take the job's directory and files as cwd, fd 0, 1 and 2, run the CLI, exit."""
    code = 1
    try:
        os.chdir(job["cwd"])
        os.environ.update(job.get("env") or {})
        for fd, path, flags in (
            (0, job["stdin"], os.O_RDONLY),
            (1, job["stdout"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC),
            (2, job["stderr"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC),
        ):
            opened = os.open(path, flags, 0o644)
            os.dup2(opened, fd)
            os.close(opened)
        # New stream objects: the server's sys.stdin may hold buffered requests, and these must not see them.
        sys.stdin = _stream(0, "rb", sys.__stdin__)
        sys.stdout = _stream(1, "wb", sys.__stdout__)
        sys.stderr = _stream(2, "wb", sys.__stderr__, line_buffering=True)
        sys.argv = ["seq2seq", *job["args"]]
        signal.signal(signal.SIGINT, signal.default_int_handler)
        try:
            runpy.run_module("seq2seq", run_name="__main__", alter_sys=True)
            code = 0
        except SystemExit as e:
            if e.code is None or isinstance(e.code, int):
                code = e.code or 0
            else:
                print(e.code, file=sys.stderr)
                code = 1
    except BaseException:  # what an uncaught exception does to `python -m seq2seq`: a traceback, exit 1
        traceback.print_exc()
        code = 1
    finally:
        logging.shutdown()  # as at interpreter exit: file handlers (train.log) flushed
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:
                pass
        os._exit(code)


def _start(job: dict) -> int:
    pid = os.fork()
    if pid == 0:
        _child(job)
    return pid


def _run(jobs: list[dict], workers: int) -> list[int]:
    """Fork each job, at most `workers` at a time; their exit statuses in job order."""
    codes: list[int | None] = [None] * len(jobs)
    running: dict[int, tuple[int, float]] = {}  # pid -> (job index, deadline)
    pending = list(range(len(jobs)))
    while pending or running:
        while pending and len(running) < workers:
            index = pending.pop(0)
            running[_start(jobs[index])] = (index, time.monotonic() + jobs[index]["timeout"])
        for pid, (index, deadline) in list(running.items()):
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                codes[index] = os.waitstatus_to_exitcode(status)
                del running[pid]
            elif time.monotonic() > deadline:
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.002)
    return [c if c is not None else -9 for c in codes]


def main() -> None:
    for line in sys.stdin.buffer:
        request = json.loads(line)
        if "jobs" in request:
            reply: dict = {"codes": _run(request["jobs"], request.get("workers", 1))}
        elif "spawn" in request:
            reply = {"pid": _start(request["spawn"])}
        else:
            pid = request.get("poll", request.get("wait"))
            done, status = os.waitpid(pid, os.WNOHANG if "poll" in request else 0)
            reply = {"code": os.waitstatus_to_exitcode(status) if done else None}
        sys.stdout.write(json.dumps(reply) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
