"""int8 decoding (decode.quantize / --quantize int8): applied at load time, about the same BLEU, no warnings."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch

from seq2seq.model.checkpoint import Checkpoint
from seq2seq.errors import ConfigError
from seq2seq.decode.evaluate import evaluate, load_split
from seq2seq.model.quantize import quantize_for_decoding
from seq2seq.decode.translator import Translator
from tests.conftest import run_cli


def test_int8_decoding_scores_within_a_point_of_fp32_and_warns_nothing(tiny_run: Path) -> None:
    run = tiny_run / "runs" / "tiny"
    fp32 = Translator.load(run, device="cpu")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a deprecation notice from torch.ao would fail here
        int8 = Translator.load(run, device="cpu", quantize="int8")
        pairs = load_split(fp32.cfg.data, "val", None, None)
        scores = {
            name: evaluate(t, pairs)
            for name, t in (("fp32", fp32), ("int8", int8))
        }
    assert int8.cfg.decode.quantize == "int8" and int8.precision == "fp32"
    assert any(type(m).__module__.startswith("torch.ao.nn.quantized") for m in int8.backend.model.modules())
    assert not any(type(m).__module__.startswith("torch.ao.nn.quantized") for m in fp32.backend.model.modules())
    assert scores["fp32"].bleu > 20, scores["fp32"].bleu  # a model that translates, so the comparison means something
    assert abs(scores["int8"].bleu - scores["fp32"].bleu) <= 1.0, (scores["fp32"].bleu, scores["int8"].bleu)


def test_quantized_translation_keeps_one_line_per_input_and_the_checkpoint_unchanged(tiny_run: Path) -> None:
    run = tiny_run / "runs" / "tiny"
    before = (run / "best.pt").read_bytes()
    proc = run_cli("translate", "--model", "runs/tiny", "--quantize", "int8", "--quiet", cwd=tiny_run, stdin="I love you\n\nwe see him\n")
    assert proc.returncode == 0, proc.stderr
    assert len(proc.stdout.split("\n")) == 4 and proc.stdout.split("\n")[1] == ""
    assert "Warning" not in proc.stderr and "deprecated" not in proc.stderr
    assert (run / "best.pt").read_bytes() == before
    assert Checkpoint.read(run / "best.pt").config.decode.quantize == "none"


def test_quantize_is_cpu_only_and_names_its_choices() -> None:
    model = torch.nn.Linear(3, 2)
    assert quantize_for_decoding(model, "none", torch.device("cpu")) is model
    with pytest.raises(ConfigError, match="CPU only"):
        quantize_for_decoding(model, "int8", torch.device("cuda"))
    with pytest.raises(ConfigError, match="none, int8"):
        quantize_for_decoding(model, "int4", torch.device("cpu"))


def test_device_auto_decodes_int8_on_the_cpu_where_a_gpu_is_present(tiny_run: Path, monkeypatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # a CUDA machine, as far as `auto` can tell
    t = Translator.load(tiny_run / "runs" / "tiny", quantize="int8")  # device auto
    assert t.device == "cpu" and t.cfg.decode.quantize == "int8"
    assert t.translate(["I love you"]) == Translator.load(tiny_run / "runs" / "tiny", device="cpu", quantize="int8").translate(["I love you"])
