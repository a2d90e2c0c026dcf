"""`bench`: the FLOP count matches a hand count, a run reports every field (and the machine as it is), nothing is
measured in emulated bf16, and decoding is measured with a trained model when given one."""

from __future__ import annotations

import torch

from seq2seq import device
from seq2seq.config import ModelConfig, load_config
from seq2seq.tools.bench import flop_counts, format_table, run_bench
from tests.conftest import ROOT, TOY


def test_flop_count_matches_a_hand_count():
    # E=2, H=3, bidirectional (D=6), A=3, O=3, V=5, one layer each.
    cfg = ModelConfig(emb_size=2, hidden_size=3, attention="bahdanau", bidirectional=True)
    f = flop_counts(cfg, 5)
    # encoder: 2 directions * 2 * 3H * (E + H) = 2 * 2 * 9 * 5 = 180; keys: 2 * D * A = 36
    assert f.per_src_token == 180 + 36
    # GRU: 2 * 9 * (2 + 6 + 3) = 198; query: 2*3*3 = 18; pre-output: 2*3*(3+6+2) = 66; output: 2*3*5 = 30
    assert f.per_tgt_token == 198 + 18 + 66 + 30
    assert f.per_token_pair == 2 * 3 + 2 * 6
    assert f.per_sentence == 2 * 6 * 1 * 3
    luong = flop_counts(ModelConfig(emb_size=2, hidden_size=3, attention="luong", bidirectional=False, tie_embeddings=True), 5)
    # GRU 2*9*(2+3) = 90; pre-output (O = E = 2): 2*2*(3+3) = 24; output 2*2*5 = 20; keys 2*3*3 = 18; encoder 90
    assert (luong.per_tgt_token, luong.per_src_token) == (90 + 24 + 20, 90 + 18)


def test_bench_runs_on_the_toy_config_and_reports_every_field(tmp_path):
    overrides = [f"data.{k}={TOY / v}" for k, v in (("train", "train"), ("valid", "val"), ("test", "test"))]
    cfg = load_config(ROOT / "configs" / "demo.yaml", overrides + ["train.max_tokens=600", "train.precision=auto"])
    result = run_bench(cfg, steps=3, warmup=1, decode_sentences=40, decode_warmup=4)
    for key in (
        "train_tokens_per_s", "train_sentences_per_s", "src_padding_fraction", "tgt_padding_fraction", "mfu",
        "matmul_peak_gflop_per_s", "greedy_sentences_per_s", "greedy_tokens_per_s", "beam5_sentences_per_s", "peak_rss_mb",
    ):
        assert isinstance(result[key], float) and result[key] >= 0, key
    assert result["train_tokens_per_s"] > 0 and 0 < result["mfu"] < 1.5
    assert result["tgt_padding_fraction"] < 0.10
    # the machine as the kernel and torch describe it, read here without seq2seq's code
    flags = set(next((ln.split(":", 1)[1].split() for ln in open("/proc/cpuinfo") if ln.startswith("flags")), []))
    native = {"avx512_bf16": "avx512_bf16" in flags, "amx_bf16": "amx_bf16" in flags}
    assert result["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    if flags:  # a Linux CPU that lists its flags
        assert result["cpu_bf16_features"] == native
        assert result["auto_precision"] == ("bf16" if any(native.values()) else "fp32")
    assert result["precision_configured"] == "auto" and result["precision"] == result["auto_precision"]
    assert result["precision_reason"].startswith("auto: ") and result["cpu"] in result["precision_reason"]
    table = format_table(result)
    for label in ("CPU", "auto picks", "training tokens/s", "padding", "MFU", "greedy decoding", "beam-5 decoding", "peak memory"):
        assert label in table


def test_bench_measures_nothing_in_emulated_bf16(monkeypatch):
    monkeypatch.setattr(device, "cpu_capabilities", lambda: {"cpu_name": "Some AVX2 CPU", "capability": "AVX2", "avx512_bf16": False, "amx_bf16": False})
    monkeypatch.setattr("seq2seq.tools.bench.cpu_capabilities", device.cpu_capabilities)
    device._warn_emulated_bf16.cache_clear()
    overrides = [f"data.{k}={TOY / v}" for k, v in (("train", "train"), ("valid", "val"), ("test", "test"))]
    cfg = load_config(ROOT / "configs" / "demo.yaml", overrides + ["train.precision=bf16", "train.device=cpu"])
    result = run_bench(cfg, steps=3, warmup=1, decode_sentences=10)
    assert "emulated" in result["skipped"] and "train_tokens_per_s" not in result
    assert result["precision"] == "bf16" and result["auto_precision"] == "fp32" and result["cpu_native_bf16"] is False
    assert "skipped" in format_table(result) and "auto picks fp32" in format_table(result)
    device._warn_emulated_bf16.cache_clear()


def test_bench_decodes_with_a_trained_model_when_given_one(tiny_run):
    cfg = load_config(tiny_run / "tiny.yaml", ["train.max_tokens=600"])
    result = run_bench(cfg, steps=2, warmup=0, decode_sentences=30, decode_warmup=2, decode_model=tiny_run / "runs" / "tiny")
    assert result["decode_model"] == str(tiny_run / "runs" / "tiny") and result["decode_sentences"] == 30
    assert result["greedy_sentences_per_s"] > 0 and result["beam5_sentences_per_s"] > 0
    assert "model " + str(tiny_run / "runs" / "tiny") in format_table(result)


def test_bench_builds_the_data_as_train_does_and_leaves_nothing_behind(tiny_run, tmp_path, monkeypatch):
    """bench_data runs the trainer's build_data: the vocabularies the run wrote, the trainer's length filter."""
    import tempfile

    from seq2seq.data.vocab import Vocab
    from seq2seq.tools.bench import bench_data

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # the scratch run directory goes here, then away
    cfg = load_config(tiny_run / "tiny.yaml", ["data.max_len=6"])
    data = bench_data(cfg, torch.device("cpu"))
    run = tiny_run / "runs" / "tiny"
    assert data.src_enc.vocab.itos == Vocab.load(run / "src_vocab.json").itos
    assert data.tgt_enc.vocab.itos == Vocab.load(run / "tgt_vocab.json").itos
    assert data.examples and all(len(s) - 1 <= 6 and len(t) <= 6 for s, t in data.examples)
    assert sorted(i for b in data.batches for i in b) == list(range(len(data.examples)))
    assert list(tmp_path.iterdir()) == []
    assert len(data.eval_pairs) == 120  # no test split: the validation sentences
