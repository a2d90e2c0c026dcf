"""The optimized code paths compute what the straightforward ones do."""

from __future__ import annotations

import itertools

import pytest
import torch

from seq2seq.tools.bench import flop_counts
from seq2seq.config import ModelConfig
from seq2seq.data.batch import collate
from seq2seq.model.fast_bahdanau import bahdanau_steps
from tests.conftest import random_examples, tiny_model


# (decoder layers, bidirectional encoder, tied embeddings): every branch of the fast loop
FAST_CASES = list(itertools.product([1, 2], [True, False], [False, True]))


def _pass(model, b):
    """Teacher-forced pre-output (B, T, O), last hidden (L, B, H), attention (B, T, S) and logits (B, T, V)."""
    enc = model.encode(b.src, b.src_lengths)
    pre, hidden, weights = model.decoder(b.tgt_in, enc, enc.hidden, loop=model.fast_decoder)
    return pre, hidden, weights, model.output(pre)


@pytest.mark.parametrize("layers, bidirectional, tie", FAST_CASES)
def test_fast_bahdanau_loop_matches_the_reference_in_values_and_every_gradient(layers, bidirectional, tie):
    # fp64, so that any difference beyond rounding is a bug. The fast loop's weight gradients come from one
    # matmul over all steps (_StepWeights, _DeferredLinearGrad): a wrong deferred bias or weight gradient fails here.
    model = tiny_model(
        2, attention="bahdanau", dec_layers=layers, enc_layers=layers, bidirectional=bidirectional, tie_embeddings=tie
    ).double().train()  # dropout is 0: train mode only switches the training branches on
    b = collate(random_examples(6, 2))
    outputs, grads = [], []
    for fast in (False, True):
        model.fast_decoder = bahdanau_steps if fast else None
        model.zero_grad()
        out = _pass(model, b)
        (out[-1].log_softmax(-1)[..., 3] * (b.tgt_out != 0)).sum().backward()
        outputs.append(out)
        grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
    for reference, fast in zip(*outputs):
        assert torch.allclose(fast, reference, atol=1e-12, rtol=1e-10)
    reference, fast = grads
    assert reference.keys() == fast.keys() == {n for n, p in model.named_parameters()}  # every parameter has one
    for name in reference:
        assert torch.allclose(fast[name], reference[name], atol=1e-12, rtol=1e-10), name


def test_fast_bahdanau_loop_matches_the_reference_under_bf16_autocast():
    # The one setting `pays` picks it for. bf16 rounds differently on the two paths, hence the loose tolerance.
    model = tiny_model(3, attention="bahdanau").train()
    b = collate(random_examples(5, 3))
    logits, grads = [], []
    for fast in (False, True):
        model.fast_decoder = bahdanau_steps if fast else None
        model.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = model(b.src, b.src_lengths, b.tgt_in)
        out.float().logsumexp(-1).sum().backward()
        logits.append(out.float())
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters()]))
    assert torch.allclose(logits[0], logits[1], atol=0.05)
    assert all(p.grad.dtype == torch.float32 for p in model.parameters())
    assert torch.cosine_similarity(grads[0], grads[1], dim=0) > 0.99


def test_step_weights_equal_per_step_linear_layers_and_refuse_misuse():
    from seq2seq.model.fast_bahdanau import _StepWeights

    gen = torch.Generator().manual_seed(0)
    T, B = 4, 3
    bias = torch.randn(5, dtype=torch.float64, generator=gen).requires_grad_(True)
    w1 = torch.randn(5, 2, dtype=torch.float64, generator=gen).requires_grad_(True)
    w2 = torch.randn(3, 2, dtype=torch.float64, generator=gen).requires_grad_(True)  # stacked below w1, no bias
    xs = torch.randn(T, B, 2, dtype=torch.float64, generator=gen).requires_grad_(True)
    g = torch.randn(T, B, 8, dtype=torch.float64, generator=gen)
    with _StepWeights(T, B, bias, w1, w2, dtype=torch.float64) as linear:
        ys = torch.stack([linear(t, xs[t]) for t in range(T)])  # (T, B, 8)
    fast = torch.autograd.grad(ys, (bias, w1, w2, xs), g)
    reference = torch.cat([torch.nn.functional.linear(xs, w1, bias), xs @ w2.t()], dim=-1)  # (T, B, 8)
    assert torch.allclose(ys, reference)
    for a, r in zip(fast, torch.autograd.grad(reference, (bias, w1, w2, xs), g)):
        assert torch.allclose(a, r, atol=1e-12)
    early = _StepWeights(T, B, bias, w1, dtype=torch.float64)  # backward before the block ended: an error, not a wrong gradient
    with pytest.raises(RuntimeError, match="before the step loop"):
        torch.stack([early(t, xs[t]) for t in range(T)]).sum().backward()
    with pytest.raises(AssertionError, match="out of order"), _StepWeights(T, B, bias, w1, dtype=torch.float64) as linear:
        linear(1, xs[1])
    with pytest.raises(AssertionError, match="3 of 4 steps"), _StepWeights(T, B, bias, w1, dtype=torch.float64) as linear:
        [linear(t, xs[t]) for t in range(3)]


def test_the_fast_loop_is_chosen_only_where_it_was_measured_to_pay():
    from seq2seq.model import fast_bahdanau as fast_decoder

    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert fast_decoder.pays(cpu, "fp32") and fast_decoder.pays(cpu, "bf16")
    assert not fast_decoder.pays(cuda, "bf16") and not fast_decoder.pays(cuda, "fp32")


@pytest.mark.parametrize("attention, fast", [("bahdanau", False), ("bahdanau", True), ("luong", False)])
def test_teacher_forced_pass_matches_step_by_step_decoding(attention, fast):
    model = tiny_model(1, attention=attention, dec_layers=2)
    model.fast_decoder = bahdanau_steps if fast else None
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
    from seq2seq.training.trainer import train_step

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
    from seq2seq.tools.bench import format_table, run_bench
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
    from seq2seq.tools.bench import format_table, run_bench
    from seq2seq.config import load_config
    from tests.conftest import ROOT, TOY

    monkeypatch.setattr(device, "cpu_capabilities", lambda: {"cpu_name": "Some AVX2 CPU", "capability": "AVX2", "avx512_bf16": False, "amx_bf16": False})
    monkeypatch.setattr("seq2seq.tools.bench.cpu_capabilities", device.cpu_capabilities)
    device._warn_emulated_bf16.cache_clear()
    overrides = [f"data.{k}={TOY / v}" for k, v in (("train", "train"), ("valid", "val"), ("test", "test"))]
    cfg = load_config(ROOT / "configs" / "demo.yaml", overrides + ["train.precision=bf16", "train.device=cpu"])
    result = run_bench(cfg, steps=3, warmup=1)
    assert "emulated" in result["skipped"] and "train_tokens_per_s" not in result
    assert result["precision"] == "bf16" and result["auto_precision"] == "fp32" and result["cpu_native_bf16"] is False
    assert "skipped" in format_table(result) and "auto picks fp32" in format_table(result)
    device._warn_emulated_bf16.cache_clear()


def test_bench_decodes_with_a_trained_model_when_given_one(tiny_run):
    from seq2seq.tools.bench import format_table, run_bench
    from seq2seq.config import load_config

    cfg = load_config(tiny_run / "tiny.yaml", ["train.max_tokens=600"])
    result = run_bench(cfg, steps=2, warmup=0, decode_sentences=30, decode_warmup=2, decode_model=tiny_run / "runs" / "tiny")
    assert result["decode_model"] == str(tiny_run / "runs" / "tiny") and result["decode_sentences"] == 30
    assert result["greedy_sentences_per_s"] > 0 and result["beam5_sentences_per_s"] > 0
    assert "model " + str(tiny_run / "runs" / "tiny") in format_table(result)


def test_fast_cpu_dropout_keeps_the_rate_and_the_expectation():
    from seq2seq.model.network import Dropout

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

    from seq2seq.model.loss import masked_nll

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
