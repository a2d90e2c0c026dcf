"""`info`: what a checkpoint holds (parameters counted by formula, vocabularies, the best validation BLEU, the
step, the config) and the precision it would decode in here."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import seq2seq
from seq2seq.training.metrics import read_metrics
from tests.conftest import expected_parameter_count, invoke


@pytest.fixture
def run(api_run: Path) -> Path:
    return api_run


def test_info_describes_the_checkpoint(run: Path, capsys, monkeypatch) -> None:
    t = seq2seq.Translator.load(run)
    code, stdout, stderr = invoke(capsys, monkeypatch, "info", "--model", str(run), "--json")
    assert code == 0, stderr
    info = json.loads(stdout)
    assert info["parameters"] == expected_parameter_count(t.cfg.model, len(t.src.vocab), len(t.tgt.vocab))
    assert (info["src_vocab_size"], info["tgt_vocab_size"]) == (len(t.src.vocab), len(t.tgt.vocab))
    val = [r for r in read_metrics(run / "metrics.jsonl") if "val_bleu" in r]
    assert info["best_val_bleu"] == pytest.approx(max(r["val_bleu"] for r in val))
    assert info["step"] == val[-1]["step"] and info["training_seconds"] > 0
    assert info["config"]["model"]["hidden_size"] == 24
    code, text, _ = invoke(capsys, monkeypatch, "info", "--model", str(run))
    assert code == 0
    assert f"{info['parameters']:,}" in text and "hidden_size: 24" in text and "luong attention" in text
    # auto, resolved for decoding on this machine: this model is far below device.SMALL_DECODE_PARAMETERS, so fp32
    # whatever the CPU; where it lists native bf16 (/proc/cpuinfo, read here) the reason says the size decided
    assert info["config"]["train"]["precision"] == "auto" and info["precision"]["configured"] == "auto"
    assert info["precision"]["here"] == "fp32"
    flags = set(next((ln.split(":", 1)[1].split() for ln in open("/proc/cpuinfo") if ln.startswith("flags")), []))
    if flags:
        assert ("decodes faster in fp32" in info["precision"]["reason"]) == bool({"avx512_bf16", "amx_bf16"} & flags)
    assert info["precision"]["reason"].startswith("auto: ")
    assert f"precision     {info['precision']['here']} here ({info['precision']['reason']})" in text


def test_info_names_the_metric_best_pt_follows_and_both_tokenizers() -> None:
    from seq2seq.tools.info import format_info

    info = {
        "path": "best.pt", "languages": "src -> tgt", "architecture": "GRU", "parameters": 1000,
        "src_vocab_size": 30, "tgt_vocab_size": 50, "shared_vocab": False,
        "tokenizer": {"level": "char", "lowercase": False}, "tgt_tokenizer": {"level": "space", "lowercase": False},
        "step": 40, "epochs_done": 2, "training_seconds": 61.0,
        "precision": {"here": "fp32", "reason": "auto: fp32"}, "config": {"train": {"metric": "cer"}},
        "metric": "cer", "best_val": 10.25, "best_val_bleu": 55.0,
        "scores": {"step": 40, "val_bleu": 55.0, "val_chrf": 70.0, "val_cer": 10.25, "val_loss": 0.5},
    }
    text = format_info(info)
    assert "best val CER  10.25 (BLEU 55.00, chrF 70.00, val loss 0.5000, at step 40)" in text
    assert "tokenizer     source level=char, lowercase=False; target level=space, lowercase=False" in text
    text = format_info({**info, "metric": "bleu", "best_val": 55.0, "tgt_tokenizer": info["tokenizer"]})
    assert "best val BLEU 55.00 (chrF 70.00, val loss 0.5000, at step 40)" in text
    assert "tokenizer     level=char, lowercase=False\n" in text  # one line where both sides agree
