"""`seq2seq bench`: training and decoding speed, padding, peak memory and MFU on a config's model and data.

FLOPs are counted from the layer sizes (a (m x k) @ (k x n) matmul is 2mkn FLOPs; elementwise work, softmax and
the embedding lookups are not counted). With E embedding, H hidden, D = H x directions encoder output, A = H
attention size, O pre-output size, V target vocabulary, a forward pass costs

    per source token   sum over encoder layers of  dirs * 2 * 3H * (in + H)     (in = E, then D)
                       + 2 * D * A                                            (attention keys, once)
    per target token   bahdanau: 2*3H*(E + D + H) [+ 2*3H*2H per extra layer] + 2*H*A (query)
                                 + 2*O*(H + D + E) (pre-output) + 2*O*V (output)
                       luong:    2*3H*(E + H) [+ 2*3H*2H per extra layer]
                                 + 2*O*(H + D) (pre-output) + 2*O*V (output)
    per (target, source) token pair   2*A (bahdanau energy) or 2*A (luong score), + 2*D (context)
    per sentence       2 * D * layers * H (bridge)

and a training step costs 3x its forward pass (the backward pass is counted as twice the forward).
MFU = counted training FLOPs per second / the device's matmul peak measured in the same run, for the dtype
the matmuls run in (fp32, or bf16 under autocast).
"""

from __future__ import annotations

import dataclasses
import itertools
import resource
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch

from seq2seq.config import Config, DecodeConfig, ModelConfig, TrainConfig
from seq2seq.data.batch import collate, decoder_steps
from seq2seq.data.corpus import Pair, load_corpus
from seq2seq.data.encoding import Encoder, Example
from seq2seq.device import (
    NATIVE_BF16_FEATURES, choose_precision, cpu_capabilities, cpu_has_native_bf16, describe_cpu, keep_freed_memory,
    resolve_device, resolve_precision,
)
from seq2seq.model.network import Seq2Seq, count_parameters
from seq2seq.decode.search import Hypothesis, decode
from seq2seq.decode.torch_backend import TorchBackend
from seq2seq.training.build import build_data, make_optimizer, read_corpora
from seq2seq.training.distributed import DistContext
from seq2seq.runfiles import RunFiles
from seq2seq.training.trainer import train_step


@dataclass(frozen=True)
class FlopCounts:
    """Forward FLOPs, split by what they scale with."""

    per_src_token: float
    per_tgt_token: float
    per_token_pair: float
    per_sentence: float

    def forward(self, src_len: int, tgt_len: int) -> float:
        """Forward FLOPs of one sentence pair with `src_len` source and `tgt_len` target tokens."""
        return (
            self.per_src_token * src_len + self.per_tgt_token * tgt_len
            + self.per_token_pair * src_len * tgt_len + self.per_sentence
        )


def flop_counts(cfg: ModelConfig, tgt_vocab_size: int) -> FlopCounts:
    """Matmul FLOPs of the model's forward pass (see the module docstring for the formula)."""
    E, H = cfg.emb_size, cfg.hidden_size
    dirs = 2 if cfg.bidirectional else 1
    D, A = H * dirs, H
    O = E if cfg.tie_embeddings else H
    V = tgt_vocab_size
    enc = 0.0
    for layer in range(cfg.enc_layers):
        inp = E if layer == 0 else D
        enc += dirs * 2 * 3 * H * (inp + H)
    enc += 2 * D * A
    upper = 2 * 3 * H * 2 * H * (cfg.dec_layers - 1)
    if cfg.attention == "bahdanau":
        dec = 2 * 3 * H * (E + D + H) + upper + 2 * H * A + 2 * O * (H + D + E) + 2 * O * V
    else:
        dec = 2 * 3 * H * (E + H) + upper + 2 * O * (H + D) + 2 * O * V
    pair = 2 * A + 2 * D
    return FlopCounts(float(enc), float(dec), float(pair), float(2 * D * cfg.dec_layers * H))


def matmul_peak(device: torch.device, precision: str, seconds: float = 1.0, rounds: int = 3) -> float:
    """Measured FLOP/s of a large square matmul in the dtype the model's matmuls use: the best of `rounds`
    windows of `seconds` / `rounds` each, so a moment of contention on a small machine does not lower it."""
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    n = 4096 if device.type == "cuda" else 2048
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(2):
        torch.mm(a, b)
    _sync(device)
    per_sync = 5 if device.type == "cuda" else 1  # a CPU matmul has finished when it returns
    best = 0.0
    for _ in range(rounds):
        reps, start = 0, time.perf_counter()
        while True:
            for _ in range(per_sync):
                torch.mm(a, b)
            reps += per_sync
            _sync(device)
            elapsed = time.perf_counter() - start
            if elapsed >= seconds / rounds:
                break
        best = max(best, 2 * n**3 * reps / elapsed)
    return best


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def padding_fractions(examples: Sequence[Example], batches: Sequence[Sequence[int]]) -> tuple[float, float]:
    """Fraction of pad positions in the (source, target) tensors of these batches."""
    src_real = src_all = tgt_real = tgt_all = 0
    for batch in batches:
        src = [len(examples[i][0]) for i in batch]
        tgt = [decoder_steps(len(examples[i][1])) for i in batch]
        src_real, src_all = src_real + sum(src), src_all + len(src) * max(src)
        tgt_real, tgt_all = tgt_real + sum(tgt), tgt_all + len(tgt) * max(tgt)
    return 1 - src_real / src_all, 1 - tgt_real / tgt_all


def peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


@dataclass(frozen=True)
class BenchData:
    """What the bench trains and decodes on, built from the config's data as `train` builds it."""

    src_enc: Encoder
    tgt_enc: Encoder
    examples: Sequence[Example]  # the encoded training pairs
    batches: list[list[int]]  # the first epoch's bucketed batches
    eval_pairs: list[Pair]  # the test split, else valid: decoded for the decoding speeds


def bench_data(cfg: Config, device: torch.device) -> BenchData:
    """The training data as `train` builds it (training/build: read_corpora, then build_data's tokenizers,
    vocabularies, length filter, examples and buckets), in a scratch run directory removed afterwards.

    A scratch directory holds no shards, so the bench reads the training text even where `seq2seq preprocess` made
    shards for a run: the vocabularies are built from the same text as the shards' (a run's own are not read)."""
    with tempfile.TemporaryDirectory(prefix="seq2seq-bench-") as scratch:
        files = RunFiles(Path(scratch))
        corpora = read_corpora(cfg, files)
        data = build_data(cfg, files, corpora, DistContext(device=device), progress=False)
    eval_pairs = load_corpus(cfg.data, "test") if cfg.data.test else corpora.valid_pairs.pairs
    return BenchData(data.src_enc, data.tgt_enc, data.examples, data.sampler.batches(0), eval_pairs)


def run_bench(
    cfg: Config, *, steps: int, warmup: int, decode_sentences: int, beam_size: int = 5, decode_warmup: int = 64,
    decode_model: str | Path | None = None,
) -> dict[str, Any]:
    """Measure everything `seq2seq bench` prints; returns one flat dict. `steps`, `warmup` and `decode_sentences`
    have their defaults in the command line (`seq2seq bench --help`) and only there.

    Decoding speed depends on how long the outputs are, so a model trained for a few steps (which rarely says
    <eos>) decodes slower than a trained one: `decode_model` (a run directory or checkpoint) decodes with that
    trained model and its own tokenizer instead, in the same precision.
    """
    t = cfg.train
    if t.num_threads:
        torch.set_num_threads(t.num_threads)
    device = resolve_device(t.device)
    if device.type == "cpu":
        keep_freed_memory()
    precision = resolve_precision(t.precision, device)
    hardware = hardware_report(device, t.precision)
    if device.type == "cpu" and precision == "bf16" and not cpu_has_native_bf16():
        # An emulated bf16 kernel takes about a minute per training step of the reference model: say so, measure nothing in it.
        return {**hardware, "skipped": f"bf16 is emulated on this CPU ({describe_cpu()}): nothing measured in bf16; use precision auto or fp32"}
    torch.manual_seed(t.seed)
    data = bench_data(cfg, device)
    src_vocab, tgt_vocab, examples, batches = data.src_enc.vocab, data.tgt_enc.vocab, data.examples, data.batches
    src_pad, tgt_pad = padding_fractions(examples, batches)

    model = Seq2Seq(cfg.model, len(src_vocab), len(tgt_vocab)).to(device)  # its Bahdanau loop as train's (model.bahdanau_loop)
    flops = flop_counts(cfg.model, len(tgt_vocab))
    tokens_per_s, sentences_per_s, train_flops_per_s = _train_speeds(model, examples, batches, t, device, precision, steps, warmup, flops)

    parameters = count_parameters(model)
    model.eval()
    eval_texts = [s for s, _ in data.eval_pairs[:decode_sentences]]
    sources = [data.src_enc.source_ids(s) for s in eval_texts]
    decode_precision = precision
    if decode_model is not None:
        from seq2seq.decode.translator import Translator

        trained = Translator.load(decode_model, device=str(device), precision=precision, quantize=cfg.decode.quantize)
        model, sources = trained.backend.model.eval(), [s.ids for s in trained.sources(eval_texts)]
        decode_precision = trained.precision
    elif cfg.decode.quantize != "none":
        from seq2seq.model.quantize import quantize_for_decoding

        model, decode_precision = quantize_for_decoding(model, cfg.decode.quantize, device), "fp32"
    greedy, beam = dataclasses.replace(cfg.decode, beam_size=1), dataclasses.replace(cfg.decode, beam_size=beam_size)
    results = _decode_speeds(model, sources, greedy, device, decode_precision, decode_warmup, "greedy")
    results |= _decode_speeds(model, sources, beam, device, decode_precision, 0, f"beam{beam_size}")
    results["decode_quantize"] = cfg.decode.quantize
    peak = matmul_peak(device, precision)
    mean = lambda xs: sum(xs) / len(xs)  # noqa: E731
    return {
        **hardware,
        "attention": cfg.model.attention,
        "parameters": parameters,
        "src_vocab": len(src_vocab),
        "tgt_vocab": len(tgt_vocab),
        "train_steps": steps,
        "train_tokens_per_s": tokens_per_s,
        "train_sentences_per_s": sentences_per_s,
        "src_padding_fraction": src_pad,
        "tgt_padding_fraction": tgt_pad,
        "mean_batch_sentences": mean([len(b) for b in batches]),
        "forward_mflop_per_tgt_token": flops.per_tgt_token / 1e6,
        "forward_mflop_per_src_token": flops.per_src_token / 1e6,
        "train_gflop_per_s": train_flops_per_s / 1e9,
        "matmul_peak_gflop_per_s": peak / 1e9,
        "mfu": train_flops_per_s / peak,
        "decode_sentences": len(sources),
        "decode_model": None if decode_model is None else str(decode_model),
        **results,
        "peak_rss_mb": peak_rss_bytes() / 2**20,
        "cuda_max_allocated_mb": torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None,
    }


def hardware_report(device: torch.device, configured: str) -> dict[str, Any]:
    """The device, the CPU's capabilities, and the precision `configured` and `auto` stand for on it, with why."""
    choice = choose_precision(configured, device)
    caps = cpu_capabilities()
    return {
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else caps["cpu_name"],
        "threads": torch.get_num_threads(),
        "cpu": caps["cpu_name"],
        "cpu_capability": caps["capability"],
        "cpu_native_bf16": cpu_has_native_bf16(caps),
        "cpu_bf16_features": {f: caps[f] for f in NATIVE_BF16_FEATURES},
        "precision_configured": configured,
        "precision": choice.precision,
        "precision_reason": choice.reason,
        "auto_precision": choose_precision("auto", device).precision,
    }


def _train_speeds(
    model: Seq2Seq, examples: Sequence[Example], batches: Sequence[Sequence[int]], t: TrainConfig, device: torch.device,
    precision: str, steps: int, warmup: int, flops: FlopCounts,
) -> tuple[float, float, float]:
    """(real target tokens/s, sentences/s, counted FLOP/s) of `steps` training steps, after `warmup` untimed ones."""
    optimizer = make_optimizer(model, t)  # the training loop's own optimizer and step: the bench measures what train runs
    model.train()
    cycle = itertools.cycle(batches)
    for _ in range(warmup):
        train_step(model, model, optimizer, collate([examples[i] for i in next(cycle)]).to(device), t, device, precision)
    _sync(device)
    tokens = sentences = 0
    train_flops = 0.0
    start = time.perf_counter()
    for _ in range(steps):
        index = next(cycle)
        batch = collate([examples[i] for i in index]).to(device)
        _, _, n = train_step(model, model, optimizer, batch, t, device, precision)
        tokens += n
        sentences += len(index)
        train_flops += 3 * sum(flops.forward(len(examples[i][0]), decoder_steps(len(examples[i][1]))) for i in index)
    _sync(device)
    elapsed = time.perf_counter() - start
    return tokens / elapsed, sentences / elapsed, train_flops / elapsed


def _decode_speeds(
    model: Seq2Seq, sources: list[list[int]], decode_cfg: DecodeConfig, device: torch.device, precision: str, warmup: int,
    name: str,
) -> dict[str, float]:
    """Sentences/s and output tokens/s (<eos> included) of decoding `sources` as `decode_cfg` says, after decoding
    the first `warmup` of them untimed."""
    backend = TorchBackend(model, device, precision)  # each call under the precision's autocast
    if warmup:
        decode(backend, sources[:warmup], decode_cfg)
    _sync(device)
    start = time.perf_counter()
    hyps: list[Hypothesis] = [nbest[0] for nbest in decode(backend, sources, decode_cfg)]
    _sync(device)
    elapsed = time.perf_counter() - start
    out_tokens = sum(len(h.ids) + 1 for h in hyps)
    return {f"{name}_sentences_per_s": len(sources) / elapsed, f"{name}_tokens_per_s": out_tokens / elapsed}


def format_table(r: dict[str, Any]) -> str:
    def num(value: Any, fmt: str) -> str:
        return "n/a" if value is None else format(value, fmt)

    head = [
        ("device", f"{r['device_name']} ({r['threads']} threads)"),
        ("CPU", f"{r['cpu']}: torch kernels {r['cpu_capability']}, "
         + ", ".join(f"{f} {'yes' if v else 'no'}" for f, v in r["cpu_bf16_features"].items())),
        ("precision", f"{r['precision']} ({r['precision_reason']}); auto picks {r['auto_precision']} here"),
    ]
    if "skipped" in r:
        head.append(("skipped", r["skipped"]))
        return _align(head)
    rows = head + [
        ("model", f"{r['attention']}, {r['parameters']:,} parameters, vocab {r['src_vocab']:,} / {r['tgt_vocab']:,}"),
        ("training tokens/s", f"{r['train_tokens_per_s']:,.0f}  (real target tokens; {r['train_steps']} steps)"),
        ("training sentences/s", f"{r['train_sentences_per_s']:,.1f}"),
        ("padding", f"source {r['src_padding_fraction']:.1%}, target {r['tgt_padding_fraction']:.1%}  ({r['mean_batch_sentences']:.0f} sentences/batch)"),
        ("FLOPs", f"{r['forward_mflop_per_tgt_token']:.1f} MFLOP fwd per target token, {r['forward_mflop_per_src_token']:.1f} per source token"),
        ("MFU", f"{r['mfu']:.1%}  ({r['train_gflop_per_s']:.0f} of {r['matmul_peak_gflop_per_s']:.0f} GFLOP/s matmul peak)"),
        ("greedy decoding", f"{num(r['greedy_sentences_per_s'], ',.0f')} sentences/s, {num(r['greedy_tokens_per_s'], ',.0f')} tokens/s  ({r['decode_sentences']} sentences, "
         + (f"model {r['decode_model']}" if r.get("decode_model") else "the model trained above")
         + (f", {r['decode_quantize']} weights)" if r.get("decode_quantize", "none") != "none" else ")")),
        ("beam-5 decoding", f"{num(r.get('beam5_sentences_per_s'), ',.0f')} sentences/s"),
        ("peak memory", f"RSS {r['peak_rss_mb']:,.0f} MB" + (f", CUDA {r['cuda_max_allocated_mb']:,.0f} MB" if r["cuda_max_allocated_mb"] is not None else "")),
    ]
    return _align(rows)


def _align(rows: list[tuple[str, str]]) -> str:
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)
