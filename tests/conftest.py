"""Shared test helpers: tiny models and random examples, corpora, the parameter count by formula, running the CLI
(forked from a server that has imported torch, or in a fresh interpreter, or in this process), and the trained
runs several modules read (tiny_run, api_run, bpe_run: each trained once per session; copy one before changing it)."""

from __future__ import annotations

import atexit
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import pytest
import torch
from hypothesis import strategies as st

from seq2seq.config import ModelConfig
from seq2seq.data.encoding import Example
from seq2seq.model.network import Seq2Seq
from seq2seq.data.vocab import SPECIALS

if TYPE_CHECKING:
    from seq2seq.config import Config
    from seq2seq.training.trainer import TrainResult

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


# No test may touch the checkout's runs/: training records the default model in runs/latest under the working
# directory, and a test that trained from the checkout once repointed a user's model at a 3-step one in a temporary
# directory (issue 32). Every test runs in a working directory of its own, outside the checkout, and the session
# fails if the checkout's runs/ changed anyway (a path written through ROOT, or a subprocess started in it).
def _runs_snapshot() -> dict[str, tuple[int, int]]:
    runs = ROOT / "runs"
    if not runs.exists():
        return {}
    return {str(p.relative_to(runs)): (p.stat().st_mtime_ns, p.stat().st_size) for p in [runs, *runs.rglob("*")] if p.exists()}


_RUNS_BEFORE: dict[str, tuple[int, int]] = {}


def pytest_sessionstart(session: pytest.Session) -> None:
    _RUNS_BEFORE.update(_runs_snapshot())


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    after = _runs_snapshot()
    changed = sorted(k for k in set(_RUNS_BEFORE) | set(after) if _RUNS_BEFORE.get(k) != after.get(k))
    if changed and not os.environ.get("PYTEST_XDIST_WORKER"):
        print(f"\nthe tests changed the checkout's runs/: {', '.join(changed[:5])}", file=sys.stderr)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture(autouse=True)
def _own_working_directory(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Each test starts in an empty directory of its own (not the checkout): whatever it trains records runs/latest
    there. Tests that need a place of their own still chdir into tmp_path; paths into the checkout go through ROOT."""
    work = tmp_path_factory.mktemp("cwd")
    monkeypatch.chdir(work)
    return work


def tiny_model(seed: int = 0, vocab: int = 23, **overrides: object) -> Seq2Seq:
    """A small randomly initialised model in eval mode (dropout off)."""
    torch.manual_seed(seed)
    cfg = ModelConfig(**{"emb_size": 12, "hidden_size": 16, "dropout": 0.0, **overrides})
    model = Seq2Seq(cfg, vocab, vocab + 2)
    return model.eval()


def expected_parameter_count(cfg: ModelConfig, src_vocab: int, tgt_vocab: int) -> int:
    """The model's parameter count by formula from the layer sizes independent of
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
        "tgt_tokenizer": {"level": "word", "lowercase": False}, "model": {"w": torch.full((3,), float(step))}, "step": step,
    }


class _ForkServer:
    """The client side of tests/forkserver.py: one server per test session, started on first use."""

    def __init__(self) -> None:
        self.proc: subprocess.Popen | None = None

    def ask(self, request: dict) -> dict:
        if self.proc is None or self.proc.poll() is not None:
            env = {**os.environ, **ONE_THREAD, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "tests.forkserver"], cwd=ROOT, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE
            )
            atexit.register(self.close)
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write((json.dumps(request) + "\n").encode())
        self.proc.stdin.flush()
        reply = self.proc.stdout.readline()
        assert reply, "the fork server died"
        return json.loads(reply)

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
    env: dict[str, str] | None = None  # variables set for this command alone


def _request(job: CliJob, files: Path, name: str) -> dict:
    stdin = files / f"{name}.in"
    stdin.write_bytes(job.stdin.encode("utf-8") if isinstance(job.stdin, str) else job.stdin or b"")
    return {
        "args": list(job.args), "cwd": str(job.cwd), "stdin": str(stdin), "stdout": str(files / f"{name}.out"),
        "stderr": str(files / f"{name}.err"), "timeout": job.timeout, "env": job.env or {},
    }


def _read(path: str) -> bytes:
    return Path(path).read_bytes() if Path(path).exists() else b""


def run_cli_many(jobs: list[CliJob], workers: int = 2) -> list[subprocess.CompletedProcess]:
    """Run `python -m seq2seq ARGS` for each job, `workers` at a time, in processes forked from one that has
    already imported torch (tests/forkserver.py says why and what that leaves out); text output."""
    with tempfile.TemporaryDirectory(prefix="cli-") as tmp:
        requests = [_request(job, Path(tmp), str(i)) for i, job in enumerate(jobs)]
        codes = _FORK_SERVER.ask({"jobs": requests, "workers": workers})["codes"]
        return [
            subprocess.CompletedProcess(
                ["python", "-m", "seq2seq", *job.args], code,
                _read(r["stdout"]).decode("utf-8", "replace"), _read(r["stderr"]).decode("utf-8", "replace"),
            )
            for job, r, code in zip(jobs, requests, codes)
        ]


class ForkedCli:
    """`python -m seq2seq ARGS` running in a forked process (see run_cli_many), as much of subprocess.Popen as the
    tests use: poll, send_signal, communicate (bytes), returncode."""

    def __init__(self, job: CliJob):
        self._files = tempfile.TemporaryDirectory(prefix="cli-")
        self._request = _request(job, Path(self._files.name), "p")
        self.pid: int = _FORK_SERVER.ask({"spawn": self._request})["pid"]
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            self.returncode = _FORK_SERVER.ask({"poll": self.pid})["code"]
        return self.returncode

    def send_signal(self, sig: int) -> None:
        if self.poll() is None:
            os.kill(self.pid, sig)

    def communicate(self, timeout: float | None = None) -> tuple[bytes, bytes]:
        deadline = time.monotonic() + (timeout if timeout is not None else 1e9)
        while self.poll() is None:
            if time.monotonic() > deadline:
                raise subprocess.TimeoutExpired(["seq2seq"], timeout or 0)
            time.sleep(0.01)
        out, err = _read(self._request["stdout"]), _read(self._request["stderr"])
        self._files.cleanup()
        return out, err


def start_cli(*args: str, cwd: Path, env: dict[str, str] | None = None) -> ForkedCli:
    """Start `python -m seq2seq ARGS` in `cwd` (a forked process) and return at once."""
    return ForkedCli(CliJob(args, cwd, env=env))


def run_cli(*args: str, cwd: Path, stdin: str | bytes | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run `python -m seq2seq ARGS` in `cwd` (a forked process, see run_cli_many); returns the completed process."""
    return run_cli_many([CliJob(args, cwd, stdin, timeout)], workers=1)[0]


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


def bpe_config(tmp_path: Path, **train_keys: object) -> "Config":
    """A tiny config on 400 toy pairs with a 320-piece BPE model; run directory tmp_path/run."""
    from seq2seq.config import config_from_dict

    data = tmp_path / "data"
    raw = {
        "data": {
            "train": write_corpus(data, "train", toy_pairs("train", 400)), "valid": write_corpus(data, "val", toy_pairs("val", 30)),
            "src_lang": "en", "tgt_lang": "de", "level": "bpe", "vocab_size": 320,
        },
        "model": {"emb_size": 16, "hidden_size": 24, "attention": "luong", "dropout": 0.0},
        "train": {"batch_size": 32, "epochs": 5, "lr": 0.01, "seed": 3, "run_dir": str(tmp_path / "run"), **train_keys},
        "decode": {"batch_size": 64},
    }
    return config_from_dict(raw)


def train_here(cfg: "Config", run_dir: Path, work: Path, **keys: object) -> "TrainResult":
    """Train in this process with `work` as the working directory (where runs/latest goes), torch's thread count kept."""
    from seq2seq.training.trainer import train

    cwd, threads = os.getcwd(), torch.get_num_threads()
    os.chdir(work)
    try:
        return train(cfg, run_dir, quiet=True, **keys)
    finally:
        os.chdir(cwd)
        torch.set_num_threads(threads)


BPE_RUN_KEYS = {"max_steps": 12, "valid_every": 3, "keep_best": 2, "log_every": 1, "schedule": "warmup_cosine", "warmup_steps": 4}


@pytest.fixture(scope="session")
def bpe_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """12 steps on 400 toy pairs with BPE, validating every 3 and keeping the 2 best checkpoints (config
    `bpe_config(work, **BPE_RUN_KEYS)`); returns the run directory. Read it, never change it: copy it first."""
    work = tmp_path_factory.mktemp("bpe_run")
    cfg = bpe_config(work, **BPE_RUN_KEYS)
    return train_here(cfg, Path(cfg.train.run_dir), work).run_dir


API_RUN_EPOCHS = 2


def _installed(name: str) -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


HAS_MATPLOTLIB = _installed("matplotlib")
HAS_TENSORBOARD = _installed("tensorboard")
needs_matplotlib = pytest.mark.skipif(not HAS_MATPLOTLIB, reason="matplotlib (the `plot` extra) is not installed")
needs_tensorboard = pytest.mark.skipif(not HAS_TENSORBOARD, reason="tensorboard (the `tensorboard` extra) is not installed")


@pytest.fixture(scope="session")
def api_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny model trained through the Python API (seq2seq.train with a dict) on 200 toy pairs for
    API_RUN_EPOCHS epochs, logging every 3 steps (and to TensorBoard when installed); returns its run directory."""
    import seq2seq

    work = tmp_path_factory.mktemp("api_run")
    pairs = toy_pairs("train", 200)
    config = {
        "data": {"train": write_corpus(work, "train", pairs), "valid": write_corpus(work, "val", pairs[:20]), "src_lang": "en", "tgt_lang": "de"},
        "model": {"emb_size": 16, "hidden_size": 24, "dropout": 0.0, "attention": "luong"},
        "train": {"batch_size": 20, "epochs": API_RUN_EPOCHS, "lr": 0.01, "log_every": 3, "tensorboard": HAS_TENSORBOARD,
                  "num_threads": 1},  # one thread: several on a busy CPU are many times slower
    }
    cwd = os.getcwd()
    os.chdir(work)  # training records runs/latest in the working directory
    try:
        result = seq2seq.train(config, work / "run", quiet=True)
    finally:
        os.chdir(cwd)
        torch.set_num_threads(1)
    assert result.run_dir == work / "run"
    assert result.progress.epoch == API_RUN_EPOCHS
    return result.run_dir


def strict_json(text: str) -> object:
    """json.loads that refuses NaN / Infinity, as every JSON parser but Python's does."""
    def refuse(constant: str) -> None:
        raise ValueError(f"not JSON: {constant}")
    return json.loads(text, parse_constant=refuse)
