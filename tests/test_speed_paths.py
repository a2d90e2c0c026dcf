"""The optimized code paths compute what the straightforward ones do."""

from __future__ import annotations

import pytest
import torch

from seq2seq.bench import flop_counts
from seq2seq.config import ModelConfig
from seq2seq.data import collate
from seq2seq.model import attend
from tests.conftest import random_examples, tiny_model


def straightforward_bahdanau(model, b):
    """The textbook loop: nn.GRU called once per step on [embedding; context], query projected per step."""
    dec = model.decoder
    enc = model.encode(b.src, b.src_lengths)
    emb = dec.embed(b.tgt_in)
    hidden, outs, contexts = enc.hidden, [], []
    for t in range(b.tgt_in.size(1)):
        context, _ = attend(dec.attention, hidden[-1][:, None, :], enc.keys, enc.states, enc.src_pad_mask)
        out, hidden = dec.rnn(torch.cat([emb[:, t : t + 1], context], dim=-1), hidden)
        outs.append(out)
        contexts.append(context)
    out, context = torch.cat(outs, 1), torch.cat(contexts, 1)
    return model.output(torch.tanh(dec.pre_output(torch.cat([out, context, emb], -1))))


@pytest.mark.parametrize("layers", [1, 2])
def test_optimized_bahdanau_decoder_matches_the_textbook_loop(layers):
    model = tiny_model(0, attention="bahdanau", dec_layers=layers, enc_layers=layers)
    b = collate(random_examples(6, 0))
    with torch.no_grad():
        fast = model(b.src, b.src_lengths, b.tgt_in)
        slow = straightforward_bahdanau(model, b)
    assert torch.allclose(fast, slow, atol=1e-5)


@pytest.mark.parametrize("layers", [1, 2])
def test_optimized_bahdanau_decoder_gradients_match_the_textbook_loop(layers):
    # The loop's weight gradients come from one matmul over all steps (_StepWeights); they must be the ones
    # autograd computes for the textbook loop, for every parameter.
    model = tiny_model(2, attention="bahdanau", dec_layers=layers, enc_layers=layers).double()
    b = collate(random_examples(6, 2))
    grads = []
    for forward in (lambda: model(b.src, b.src_lengths, b.tgt_in), lambda: straightforward_bahdanau(model, b)):
        model.zero_grad()
        (forward().log_softmax(-1)[..., 3] * (b.tgt_out != 0)).sum().backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
    fast, slow = grads
    assert fast.keys() == slow.keys() and "decoder.rnn.weight_hh_l0" in fast and "decoder.attention.query_proj.weight" in fast
    for name in fast:
        assert torch.allclose(fast[name], slow[name], atol=1e-10, rtol=1e-8), name


@pytest.mark.parametrize("attention", ["bahdanau", "luong"])
def test_teacher_forced_pass_matches_step_by_step_decoding(attention):
    model = tiny_model(1, attention=attention, dec_layers=2)
    b = collate(random_examples(5, 1))
    with torch.no_grad():
        full = model(b.src, b.src_lengths, b.tgt_in)
        enc = model.encode(b.src, b.src_lengths)
        hidden, steps = enc.hidden, []
        for t in range(b.tgt_in.size(1)):
            logits, hidden, _ = model.decode_step(b.tgt_in[:, t], enc, hidden)
            steps.append(logits)
    assert torch.allclose(full, torch.stack(steps, 1), atol=1e-5)


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


def test_bf16_training_still_learns():
    import random

    from seq2seq.config import TrainConfig
    from seq2seq.train import train_step

    rng = random.Random(0)
    torch.manual_seed(0)
    model = tiny_model(0, vocab=12, attention="luong", emb_size=32, hidden_size=64).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    t = TrainConfig(label_smoothing=0.0)
    losses = []
    for _ in range(300):
        seqs = [[rng.randrange(4, 12) for _ in range(rng.randint(2, 6))] for _ in range(32)]
        b = collate([(s + [3], s[::-1]) for s in seqs])
        finite, loss_sum, n = train_step(model, model, optimizer, b, t, torch.device("cpu"), "bf16")
        assert finite
        losses.append(float(loss_sum) / n)
    assert losses[0] > 1.5 and sum(losses[-20:]) / 20 < 0.3, (losses[0], losses[-20:])


def test_bench_runs_on_the_toy_config_and_reports_every_field(tmp_path):
    from seq2seq.bench import format_table, run_bench
    from seq2seq.config import load_config
    from tests.conftest import ROOT, TOY

    overrides = [f"data.{k}={TOY / v}" for k, v in (("train", "train"), ("valid", "val"), ("test", "test"))]
    cfg = load_config(ROOT / "configs" / "demo.yaml", overrides + ["train.max_tokens=600"])
    result = run_bench(cfg, steps=3, warmup=1, decode_sentences=40, decode_warmup=4)
    for key in (
        "train_tokens_per_s", "train_sentences_per_s", "src_padding_fraction", "tgt_padding_fraction", "mfu",
        "matmul_peak_gflop_per_s", "greedy_sentences_per_s", "greedy_tokens_per_s", "beam5_sentences_per_s", "peak_rss_mb",
    ):
        assert isinstance(result[key], float) and result[key] >= 0, key
    assert result["train_tokens_per_s"] > 0 and 0 < result["mfu"] < 1.5
    assert result["tgt_padding_fraction"] < 0.10
    from seq2seq.device import choose_precision, cpu_capabilities

    caps = cpu_capabilities()
    assert result["cpu"] == caps["cpu_name"] and result["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert result["cpu_bf16_features"] == {"avx512_bf16": caps["avx512_bf16"], "amx_bf16": caps["amx_bf16"]}
    assert result["auto_precision"] == choose_precision("auto", torch.device("cpu")).precision
    assert result["precision_configured"] == "auto" and result["precision"] == result["auto_precision"]
    assert result["precision_reason"].startswith("auto: ") and caps["cpu_name"] in result["precision_reason"]
    table = format_table(result)
    for label in ("CPU", "auto picks", "training tokens/s", "padding", "MFU", "greedy decoding", "beam-5 decoding", "peak memory"):
        assert label in table


def test_bench_measures_nothing_in_emulated_bf16(monkeypatch):
    from seq2seq import device
    from seq2seq.bench import format_table, run_bench
    from seq2seq.config import load_config
    from tests.conftest import ROOT, TOY

    monkeypatch.setattr(device, "cpu_capabilities", lambda: {"cpu_name": "Some AVX2 CPU", "capability": "AVX2", "avx512_bf16": False, "amx_bf16": False})
    monkeypatch.setattr("seq2seq.bench.cpu_capabilities", device.cpu_capabilities)
    device._warn_emulated_bf16.cache_clear()
    overrides = [f"data.{k}={TOY / v}" for k, v in (("train", "train"), ("valid", "val"), ("test", "test"))]
    cfg = load_config(ROOT / "configs" / "demo.yaml", overrides + ["train.precision=bf16", "train.device=cpu"])
    result = run_bench(cfg, steps=3, warmup=1)
    assert "emulated" in result["skipped"] and "train_tokens_per_s" not in result
    assert result["precision"] == "bf16" and result["auto_precision"] == "fp32" and result["cpu_native_bf16"] is False
    assert "skipped" in format_table(result) and "auto picks fp32" in format_table(result)
    device._warn_emulated_bf16.cache_clear()


def test_bench_decodes_with_a_trained_model_when_given_one(tiny_run):
    from seq2seq.bench import format_table, run_bench
    from seq2seq.config import load_config

    cfg = load_config(tiny_run / "tiny.yaml", ["train.max_tokens=600"])
    result = run_bench(cfg, steps=2, warmup=0, decode_sentences=30, decode_warmup=2, decode_model=tiny_run / "runs" / "tiny")
    assert result["decode_model"] == str(tiny_run / "runs" / "tiny") and result["decode_sentences"] == 30
    assert result["greedy_sentences_per_s"] > 0 and result["beam5_sentences_per_s"] > 0
    assert "model " + str(tiny_run / "runs" / "tiny") in format_table(result)


def test_fast_cpu_dropout_keeps_the_rate_and_the_expectation():
    from seq2seq.model import Dropout

    drop = Dropout(0.3)
    x = torch.ones(400, 1000)
    torch.manual_seed(0)
    y = drop(x)
    assert abs((y == 0).float().mean().item() - 0.3) < 0.005  # 400k draws: the std of the rate is 0.0007
    assert abs(y.mean().item() - 1.0) < 0.01
    assert torch.unique(y).tolist() == [0.0, pytest.approx(1 / 0.7, rel=1e-4)]
    torch.manual_seed(0)
    assert torch.equal(drop(x), y)  # seeded like the rest of torch
    x.requires_grad_(True)
    drop(x).sum().backward()
    assert torch.unique(x.grad).tolist() == [0.0, pytest.approx(1 / 0.7, rel=1e-4)]
    drop.eval()
    assert torch.equal(drop(x), x)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16])
@pytest.mark.parametrize("eps", [0.0, 0.1])
def test_fused_masked_loss_matches_cross_entropy(dtype, eps):
    import torch.nn.functional as F

    from seq2seq.loss import masked_nll

    gen = torch.Generator().manual_seed(3)
    logits = (3 * torch.randn(3, 5, 11, generator=gen)).to(dtype).requires_grad_(True)
    before = logits.detach().clone()
    tgt = torch.randint(1, 11, (3, 5), generator=gen)
    tgt[0, 3:], tgt[2, 1:] = 0, 0  # pads
    fused, n = masked_nll(logits, tgt, eps)
    (g_fused,) = torch.autograd.grad(0.7 * fused, logits)
    ref_in = logits if dtype != torch.bfloat16 else logits.float()
    ref = F.cross_entropy(ref_in.reshape(-1, 11), tgt.reshape(-1), ignore_index=0, reduction="sum", label_smoothing=eps)
    (g_ref,) = torch.autograd.grad(0.7 * ref, logits)
    assert n == 9 and fused.dtype == ref.dtype
    assert torch.allclose(fused, ref, rtol=1e-6) and torch.equal(logits.detach(), before)
    assert g_fused.dtype == dtype and torch.allclose(g_fused.double(), g_ref.double(), atol=1e-6)
    assert g_fused[2, 1:].abs().sum() == 0  # nothing reaches a pad
