"""Before/after timings of the training step's optimizations, on the same real batches.

Times one training step (forward under the precision's autocast, masked loss, backward, clipping, Adam) on
the same length-bucketed Multi30k batches of configs/bench_reference.yaml, on the CPU, for:

  keys-per-step    the Bahdanau loop as tutorials write it: every step projects the attention keys, runs the GRU
                   on [embedding; context] and the pre-output and output layers on its own, then one loss
  output-per-step  the same, attention keys projected once per batch
  reference        seq2seq.model.network's decoder, model.bahdanau_loop reference: keys projected once, pre-output
                   and output layers (and the loss) once over all steps
  fast             seq2seq.model.fast_bahdanau's loop, model.bahdanau_loop fast: the GRU written out,
                   the embeddings' input projection for all steps at once, the query fused into the recurrent
                   matmul, loop weights cast once with their gradients from one matmul over all steps
  no-buckets       the loop `Seq2Seq.uses_fast_bahdanau` picks (bahdanau_loop auto), on random (unbucketed) batches of
                   128 sentences, as Joey NMT batches

and the padding fraction of both batchings. All but `fast` run the reference's modules (`attend`, `run_gru`)
with the encoder, dropout and loss of the package. Prints ms per batch and target tokens/s; also `--json`.

Usage: python scripts/ablate_speed.py --data ../shared/data/multi30k [--precision bf16] [--batches 12]
       [--variants reference,fast]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import random
import time
from pathlib import Path

import torch

from seq2seq.tools.bench import padding_fractions
from seq2seq.config import TrainConfig, load_config
from seq2seq.data.batch import BucketSampler, collate, example_lengths
from seq2seq.data.encoding import Encoder, encode_pairs
from seq2seq.data.vocab import build_vocabs
from seq2seq.data.corpus import load_corpus
from seq2seq.device import autocast, resolve_device
from seq2seq.model.loss import masked_nll
from seq2seq.model.network import Seq2Seq, attend, run_gru
from seq2seq.data.tokenizer import Tokenizer
from seq2seq.training.trainer import train_step

ROOT = Path(__file__).resolve().parent.parent
VARIANTS = ("keys-per-step", "output-per-step", "reference", "fast", "no-buckets")


def per_step_logits(model: Seq2Seq, b, keys_per_step: bool) -> torch.Tensor:
    """Teacher-forced logits (B, T, V) with the pre-output and output layers run at every step (and, with
    `keys_per_step`, the attention keys projected at every step): the reference loop with those two
    optimizations undone; same function as model(...)."""
    dec = model.decoder
    enc = model.encode(b.src, b.src_lengths)
    emb = dec.dropout(dec.embed(b.tgt_in))  # (B, T, E)
    hidden, logits = enc.hidden, []
    for t in range(b.tgt_in.size(1)):
        keys = dec.attention.project_keys(enc.states) if keys_per_step else enc.keys  # (B, S, A)
        context, _ = attend(dec.attention, hidden[-1][:, None], keys, enc.states, enc.src_pad_mask)  # (B, 1, D)
        out, hidden = run_gru(dec.rnn, torch.cat([emb[:, t : t + 1], context], dim=-1), hidden)  # (B, 1, H)
        logits.append(model.output(dec._pre_output(dec.hidden_dropout(out), context, emb[:, t : t + 1])))  # (B, 1, V)
    return torch.cat(logits, 1)


def per_step_train_step(model, optimizer, b, t: TrainConfig, device, precision, keys_per_step: bool) -> None:
    with autocast(device, precision):
        logits = per_step_logits(model, b, keys_per_step)
    loss_sum, n = masked_nll(logits, b.tgt_out, t.label_smoothing)
    optimizer.zero_grad(set_to_none=True)
    (loss_sum / n).backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), t.clip_grad)
    optimizer.step()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=ROOT / "data" / "multi30k", help="Folder with Multi30k train.de/train.en")
    parser.add_argument("--precision", choices=["fp32", "bf16"], default="bf16")
    parser.add_argument("--batches", type=int, default=12, help="Timed batches per variant (after 2 untimed)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--variants", default=",".join(VARIANTS), help=f"Comma-separated subset of {', '.join(VARIANTS)}")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    variants = args.variants.split(",")
    if unknown := set(variants) - set(VARIANTS):
        parser.error(f"unknown variants {sorted(unknown)}; choose from {', '.join(VARIANTS)}")

    torch.set_num_threads(args.threads)
    cfg = load_config(ROOT / "configs" / "bench_reference.yaml", [f"data.train={args.data / 'train'}", f"train.precision={args.precision}"])
    d, t = cfg.data, cfg.train
    device = resolve_device("cpu")
    pairs = load_corpus(d, "train")
    tok = Tokenizer(level=d.level, lowercase=d.lowercase)
    src_vocab, tgt_vocab = build_vocabs(pairs, tok, d.min_freq, d.max_size, d.shared_vocab, tgt_tokenizer=tok)
    examples = encode_pairs(pairs, Encoder(tok, src_vocab), Encoder(tok, tgt_vocab), max_len=d.max_len)
    bucketed = BucketSampler(*example_lengths(examples), batch_size=t.batch_size, max_tokens=t.max_tokens, seed=0).batches(0)
    order = list(range(len(examples)))
    random.Random(0).shuffle(order)
    unbucketed = [order[i : i + t.batch_size] for i in range(0, len(order), t.batch_size)]
    n = args.batches + 2

    def run(name: str, batches, step, loop: str = "reference") -> dict:
        torch.manual_seed(0)
        model = Seq2Seq(dataclasses.replace(cfg.model, bahdanau_loop=loop), len(src_vocab), len(tgt_vocab)).train()
        optimizer = torch.optim.Adam(model.parameters(), lr=t.lr)
        tensors = [collate([examples[i] for i in batch]) for batch in batches[:n]]
        for b in tensors[:2]:
            step(model, optimizer, b)
        tokens, start = 0, time.perf_counter()
        for b in tensors[2:]:
            step(model, optimizer, b)
            tokens += int((b.tgt_out != 0).sum())
        elapsed = time.perf_counter() - start
        return {"variant": name, "ms_per_batch": 1000 * elapsed / args.batches, "tokens_per_s": tokens / elapsed,
                "tokens_per_batch": tokens / args.batches}

    ours = lambda m, o, b: train_step(m, m, o, b, t, device, args.precision)  # noqa: E731
    per_step = lambda keys: lambda m, o, b: per_step_train_step(m, o, b, t, device, args.precision, keys)  # noqa: E731
    plans = {
        "keys-per-step": lambda: run("keys-per-step", bucketed, per_step(True)),
        "output-per-step": lambda: run("output-per-step", bucketed, per_step(False)),
        "reference": lambda: run("reference", bucketed, ours),
        "fast": lambda: run("fast", bucketed, ours, loop="fast"),
        "no-buckets": lambda: run("no-buckets", unbucketed, ours, loop="auto"),
    }
    rows = [plans[name]() for name in variants]
    padding = {
        "bucketed": padding_fractions(examples, bucketed), "no-buckets": padding_fractions(examples, unbucketed),
    }
    if args.json:
        print(json.dumps({"precision": args.precision, "rows": rows, "padding_src_tgt": padding}))
        return
    print(f"{args.precision}, {args.threads} threads, {args.batches} batches per variant")
    for r in rows:
        print(f"{r['variant']:16s} {r['ms_per_batch']:8.1f} ms/batch {r['tokens_per_s']:8.0f} target tokens/s ({r['tokens_per_batch']:.0f} per batch)")
    for name, (src, tgt) in padding.items():
        print(f"padding {name}: source {src:.1%}, target {tgt:.1%}")


if __name__ == "__main__":
    main()
