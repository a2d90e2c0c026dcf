"""Shared test helpers: tiny models, random examples, and running the CLI in a subprocess."""

from __future__ import annotations

import atexit
import json
import os
import random
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import NamedTuple

import pytest
import torch
from hypothesis import strategies as st

from seq2seq.config import ModelConfig
from seq2seq.data.batch import Example
from seq2seq.model.network import Seq2Seq
from seq2seq.data.vocab import SPECIALS

# Control characters that other tools treat as line breaks (\x0b \x0c \x1c-\x1e \x85 \u2028 \u2029, a lone \r)
# are the usual way a translated file ends up one line short: the fuzz tests draw them on purpose.
BREAKERS = ["\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x85", "\u2028", "\u2029", "\r", "\t", " ", "\x00", "\ufeff"]
# Any text, with line-breaking characters much more likely than st.text() alone would make them.
unicode_text = st.lists(st.one_of(st.text(max_size=8), st.sampled_from(BREAKERS)), max_size=12).map("".join)
line = unicode_text.filter(lambda s: "\n" not in s)

# The tests use tiny models, which gain nothing from threads and lose a lot when the cores are shared
# (OpenMP threads spin while they wait for each other).
torch.set_num_threads(1)
ONE_THREAD = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}

ROOT = Path(__file__).resolve().parents[1]
TOY = ROOT / "data" / "toy"
MULTI30K = ROOT.parent / "shared" / "data" / "multi30k"


def tiny_model(seed: int = 0, vocab: int = 23, **overrides: object) -> Seq2Seq:
    """A small randomly initialised model in eval mode (dropout off)."""
    torch.manual_seed(seed)
    cfg = ModelConfig(**{"emb_size": 12, "hidden_size": 16, "dropout": 0.0, **overrides})
    model = Seq2Seq(cfg, vocab, vocab + 2)
    return model.eval()


def expected_parameter_count(cfg: ModelConfig, src_vocab: int, tgt_vocab: int) -> int:
    """The model's parameter count by formula from the layer sizes (docs/model.md's architecture), independent of
    the code that builds it: embeddings, GRUs (3 gates: input and hidden weights and biases), attention, bridge,
    pre-output and output layer (tied: the output weight is the target embedding, counted once)."""
    E, H, L_enc, L_dec = cfg.emb_size, cfg.hidden_size, cfg.enc_layers, cfg.dec_layers
    dirs = 2 if cfg.bidirectional else 1
    D = H * dirs  # encoder output size

    def gru(first_input: int, later_input: int, layers: int, directions: int) -> int:
        per = lambda n_in: 3 * H * n_in + 3 * H * H + 6 * H  # noqa: E731  W_ih, W_hh, b_ih, b_hh
        return directions * (per(first_input) + (layers - 1) * per(later_input))

    O = E if cfg.tie_embeddings else H  # pre-output size
    encoder = src_vocab * E + gru(E, D, L_enc, dirs)
    if cfg.attention == "bahdanau":
        decoder_gru = gru(E + D, H, L_dec, 1)
        attention = D * H + H * H + H  # keys, query, energy (no biases)
        pre_output = (H + D + E) * O + O
    else:
        decoder_gru = gru(E, H, L_dec, 1)
        attention = D * H  # W of q . W k
        pre_output = (H + D) * O + O
    bridge = D * L_dec * H + L_dec * H
    output = (0 if cfg.tie_embeddings else O * tgt_vocab) + tgt_vocab
    return encoder + tgt_vocab * E + decoder_gru + attention + pre_output + bridge + output


def random_examples(n: int, seed: int, vocab: int = 23, max_len: int = 9) -> list[Example]:
    """Examples with ids from the non-special range; sources end in <eos> like encode_pairs makes them."""
    rng = random.Random(seed)
    first = len(SPECIALS)
    out = []
    for _ in range(n):
        src = [rng.randrange(first, vocab) for _ in range(rng.randint(1, max_len))] + [3]
        tgt = [rng.randrange(first, vocab) for _ in range(rng.randint(1, max_len))]
        out.append((src, tgt))
    return out


def fake_state(step: int) -> dict:
    """A minimal checkpoint dict (not a model's): what save_checkpoint and load_checkpoint need, its weight `step`."""
    return {
        "config": {}, "src_vocab": list(SPECIALS), "tgt_vocab": list(SPECIALS), "tokenizer": {"level": "word", "lowercase": False},
        "model": {"w": torch.full((3,), float(step))}, "step": step,
    }


class _ForkServer:
    """The client side of tests/forkserver.py: one server per test session, started on first use."""

    def __init__(self) -> None:
        self.proc: subprocess.Popen | None = None

    def run(self, jobs: list[dict], workers: int) -> list[int]:
        if self.proc is None or self.proc.poll() is not None:
            env = {**os.environ, **ONE_THREAD, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "tests.forkserver"], cwd=ROOT, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE
            )
            atexit.register(self.close)
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write((json.dumps({"jobs": jobs, "workers": workers}) + "\n").encode())
        self.proc.stdin.flush()
        reply = self.proc.stdout.readline()
        assert reply, "the fork server died"
        return json.loads(reply)["codes"]

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.stdin.close()  # type: ignore[union-attr]
            self.proc.wait(timeout=30)


_FORK_SERVER = _ForkServer()


class CliJob(NamedTuple):
    args: tuple[str, ...]
    cwd: Path
    stdin: str | bytes | None = None
    timeout: float = 120


def run_cli_many(jobs: list[CliJob], workers: int = 2) -> list[subprocess.CompletedProcess]:
    """Run `python -m seq2seq ARGS` for each job, `workers` at a time, in processes forked from one that has
    already imported torch (tests/forkserver.py says why and what that leaves out); text output."""
    with tempfile.TemporaryDirectory(prefix="cli-") as tmp:
        requests = []
        for i, job in enumerate(jobs):
            stdin = Path(tmp) / f"{i}.in"
            stdin.write_bytes(job.stdin.encode("utf-8") if isinstance(job.stdin, str) else job.stdin or b"")
            requests.append({
                "args": list(job.args), "cwd": str(job.cwd), "stdin": str(stdin), "stdout": f"{tmp}/{i}.out",
                "stderr": f"{tmp}/{i}.err", "timeout": job.timeout,
            })
        codes = _FORK_SERVER.run(requests, workers)
        return [
            subprocess.CompletedProcess(
                ["python", "-m", "seq2seq", *job.args], code,
                Path(r["stdout"]).read_bytes().decode("utf-8", "replace") if Path(r["stdout"]).exists() else "",
                Path(r["stderr"]).read_bytes().decode("utf-8", "replace") if Path(r["stderr"]).exists() else "",
            )
            for job, r, code in zip(jobs, requests, codes)
        ]


def run_cli(*args: str, cwd: Path, stdin: str | bytes | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run `python -m seq2seq ARGS` in `cwd` (a forked process, see run_cli_many); returns the completed process."""
    return run_cli_many([CliJob(args, cwd, stdin, timeout)], workers=1)[0]


def run_cli_fresh(*args: str, cwd: Path, stdin: str | bytes | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run `python -m seq2seq ARGS` in a fresh interpreter: for what happens at start-up and import time."""
    env = {**os.environ, **ONE_THREAD, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
    data = stdin.encode("utf-8") if isinstance(stdin, str) else stdin
    proc = subprocess.run(
        [sys.executable, "-m", "seq2seq", *args], cwd=cwd, input=data, capture_output=True, env=env, timeout=timeout
    )
    return subprocess.CompletedProcess(proc.args, proc.returncode, proc.stdout.decode("utf-8", "replace"), proc.stderr.decode("utf-8", "replace"))


def invoke(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, *args: str) -> tuple[int, str, str]:
    """Run the console entry point in this process; returns exit code, stdout, stderr."""
    from seq2seq.cli.app import main

    monkeypatch.setattr(sys, "argv", ["seq2seq", *args])
    threads = torch.get_num_threads()
    try:
        with pytest.raises(SystemExit) as exit_info:
            main()
    finally:
        torch.set_num_threads(threads)
    out, err = capsys.readouterr()
    return exit_info.value.code, out, err


def write_corpus(directory: Path, name: str, pairs: list[tuple[str, str]], src: str = "en", tgt: str = "de") -> str:
    """Write aligned files NAME.SRC / NAME.TGT under `directory`; returns the path prefix."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{name}.{src}").write_text("".join(s + "\n" for s, _ in pairs), encoding="utf-8")
    (directory / f"{name}.{tgt}").write_text("".join(t + "\n" for _, t in pairs), encoding="utf-8")
    return str(directory / name)


def toy_pairs(split: str, n: int | None = None) -> list[tuple[str, str]]:
    en = (TOY / f"{split}.en").read_text(encoding="utf-8").splitlines()
    de = (TOY / f"{split}.de").read_text(encoding="utf-8").splitlines()
    pairs = list(zip(en, de))
    return pairs[:n] if n is not None else pairs


TINY_CONFIG = """\
data:
  train: {train}
  valid: {valid}
  test: {valid}
  src_lang: en
  tgt_lang: de
model:
  emb_size: 32
  hidden_size: 48
  attention: luong
  dropout: 0.0
train:
  batch_size: 32
  epochs: {epochs}
  lr: 0.005
  seed: 7
decode:
  batch_size: 64
"""


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny model trained once on 1,500 toy pairs; returns the working directory holding runs/tiny."""
    work = tmp_path_factory.mktemp("tiny_run")
    train = write_corpus(work / "data", "train", toy_pairs("train", 1500))
    valid = write_corpus(work / "data", "val", toy_pairs("val", 120))
    (work / "tiny.yaml").write_text(TINY_CONFIG.format(train=train, valid=valid, epochs=3), encoding="utf-8")
    proc = run_cli("train", "--config", "tiny.yaml", "--quiet", cwd=work, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return work
