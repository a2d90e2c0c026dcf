"""Shared test helpers: tiny models, random examples, and running the CLI in a subprocess."""

from __future__ import annotations

import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from seq2seq.config import ModelConfig
from seq2seq.data.batch import Example
from seq2seq.model.network import Seq2Seq
from seq2seq.data.vocab import SPECIALS

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


def run_cli(*args: str, cwd: Path, stdin: str | bytes | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run `python -m seq2seq ARGS` in `cwd`; returns the completed process (text output)."""
    env = {**os.environ, **ONE_THREAD, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
    data = stdin.encode("utf-8") if isinstance(stdin, str) else stdin
    proc = subprocess.run(
        [sys.executable, "-m", "seq2seq", *args], cwd=cwd, input=data, capture_output=True, env=env, timeout=timeout
    )
    return subprocess.CompletedProcess(proc.args, proc.returncode, proc.stdout.decode("utf-8", "replace"), proc.stderr.decode("utf-8", "replace"))


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
