"""Fixtures of the export tests: a small trained run (fp32, Bahdanau, two layers each side) and its export."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT, toy_pairs, train_here, write_corpus

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

BLOCK_TORCH = 'raise ModuleNotFoundError("torch is blocked in this test: the export path must not import it", name="torch")\n'


@pytest.fixture(scope="session")
def export_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """12 steps on 300 toy pairs, fp32 (so translate --model RUN decodes in fp32 on any CPU), beam 5 decode defaults
    with a length penalty, min and max length; returns the run directory."""
    from seq2seq.config import config_from_dict

    work = tmp_path_factory.mktemp("export_run")
    pairs = toy_pairs("train", 300)
    raw = {
        "data": {"train": write_corpus(work / "data", "train", pairs), "valid": write_corpus(work / "data", "val", pairs[:20]),
                 "src_lang": "en", "tgt_lang": "de"},
        "model": {"emb_size": 16, "hidden_size": 24, "attention": "bahdanau", "enc_layers": 2, "dec_layers": 2, "dropout": 0.3},
        "train": {"batch_size": 32, "max_steps": 12, "valid_every": 12, "lr": 0.01, "seed": 5, "precision": "fp32",
                  "run_dir": str(work / "run")},
        "decode": {"beam_size": 5, "length_penalty": 0.6, "min_len": 1, "max_len_a": 1.2, "max_len_b": 4, "batch_size": 16},
    }
    cfg = config_from_dict(raw)
    return train_here(cfg, work / "run", work).run_dir


@pytest.fixture(scope="session")
def exported(export_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The fp32 export of export_run (read it, never change it: copy it first)."""
    from seq2seq.model.checkpoint import Checkpoint
    from seq2seq.model.export import export_checkpoint

    out = tmp_path_factory.mktemp("exports") / "fp32"
    export_checkpoint(Checkpoint.read(export_run / "best.pt"), out)
    return out


@pytest.fixture(scope="session")
def no_torch_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """An environment where `import torch` fails: a package named torch, first on PYTHONPATH, that raises ImportError."""
    blocker = tmp_path_factory.mktemp("no_torch")
    (blocker / "torch").mkdir()
    (blocker / "torch" / "__init__.py").write_text(BLOCK_TORCH, encoding="utf-8")
    return {**os.environ, "PYTHONPATH": f"{blocker}{os.pathsep}{ROOT}", "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def run_without_torch(env: dict[str, str], *args: str, cwd: Path = ROOT, stdin: str = "") -> subprocess.CompletedProcess:
    """`python ARGS` in a fresh interpreter where torch cannot be imported."""
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, input=stdin, capture_output=True, text=True, timeout=120)
