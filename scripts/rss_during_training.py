"""Resident memory while training on real, varying batches: with torch's default CPU kernel caches and with ours.

Trains N steps of a config's model (default: the de->en recipe, configs/multi30k_de_en.yaml) on its
length-bucketed Multi30k batches (every batch a new shape, as in a real run) through the trainer's own
`train_step`, and prints the process's RSS every K steps. Each setting runs in a fresh process, because torch
reads the cache variables once (seq2seq/__init__.py sets them when the user has not):

  torch-default   oneDNN's and ideep's own defaults: ONEDNN_PRIMITIVE_CACHE_CAPACITY=1024, LRU_CACHE_CAPACITY=1024
  ideep-default   the package's oneDNN cap, ideep's default computation cache (LRU_CACHE_CAPACITY=1024)
  package         what `import seq2seq` sets when the user has set nothing (seq2seq.ONEDNN_CACHE_CAPACITY,
                  seq2seq.IDEEP_CACHE_CAPACITY)
  glibc-default   the package's caps, but glibc's own malloc thresholds (device.keep_freed_memory not called)
  cache-1, cache-0  ONEDNN_PRIMITIVE_CACHE_CAPACITY=1 / 0 (one cached primitive / none)

The model is built as the trainer builds it (its Bahdanau loop: `Seq2Seq.uses_fast_bahdanau`).

Usage: python scripts/rss_during_training.py --data ../shared/data/multi30k [--steps 200] [--every 20]
       [--set train.precision=bf16] [--settings torch-default,ideep-default,package]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CACHE_VARIABLES = ("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "DNNL_PRIMITIVE_CACHE_CAPACITY", "LRU_CACHE_CAPACITY")
SETTINGS: dict[str, dict[str, str]] = {  # the variables each setting sets; the package sets the others
    "torch-default": {"ONEDNN_PRIMITIVE_CACHE_CAPACITY": "1024", "LRU_CACHE_CAPACITY": "1024"},
    "ideep-default": {"LRU_CACHE_CAPACITY": "1024"},
    "package": {},
    "glibc-default": {},
    "cache-1": {"ONEDNN_PRIMITIVE_CACHE_CAPACITY": "1"},
    "cache-0": {"ONEDNN_PRIMITIVE_CACHE_CAPACITY": "0"},
}


def rss_mb() -> float:
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def child(args: argparse.Namespace) -> None:
    """Train `args.steps` steps, printing one JSON line {"step", "rss_mb", "s_per_step"} every `args.every`."""
    import torch

    from seq2seq.config import load_config
    from seq2seq.data.batch import BucketSampler, collate, example_lengths
    from seq2seq.data.encoding import Encoder, encode_pairs
    from seq2seq.data.vocab import build_vocabs
    from seq2seq.data.corpus import load_corpus
    from seq2seq.device import keep_freed_memory, resolve_device, resolve_precision
    from seq2seq.model.network import Seq2Seq
    from seq2seq.data.subword import train_tokenizers
    from seq2seq.data.tokenizer import SUBWORD_LEVELS, Tokenizer
    from seq2seq.training.trainer import make_optimizer, train_step

    data = Path(args.data)
    sets = [f"data.train={data / 'train'}", f"data.valid={data / 'val'}", *args.set]
    cfg = load_config(args.config, sets)
    d, t = cfg.data, cfg.train
    device = resolve_device(t.device)
    if device.type == "cpu" and not args.glibc_default:
        keep_freed_memory()
    precision = resolve_precision(t.precision, device)
    torch.manual_seed(t.seed)
    pairs = load_corpus(d, "train")
    if d.level in SUBWORD_LEVELS:
        src_tok, tgt_tok = train_tokenizers(d, pairs)
    else:
        src_tok = tgt_tok = Tokenizer(level=d.level, lowercase=d.lowercase)
    src_vocab, tgt_vocab = build_vocabs(pairs, src_tok, d.min_freq, d.max_size, d.shared_vocab, tgt_tokenizer=tgt_tok)
    examples = encode_pairs(pairs, Encoder(src_tok, src_vocab), Encoder(tgt_tok, tgt_vocab), max_len=d.max_len)
    batches = BucketSampler(*example_lengths(examples), batch_size=t.batch_size, max_tokens=t.max_tokens, seed=t.seed).batches(0)
    model = Seq2Seq(cfg.model, len(src_vocab), len(tgt_vocab)).to(device).train()  # its Bahdanau loop as the trainer's
    optimizer = make_optimizer(model, t)
    print(json.dumps({"step": 0, "rss_mb": rss_mb(), "precision": precision,
                      "cache": os.environ.get("ONEDNN_PRIMITIVE_CACHE_CAPACITY"),
                      "ideep": os.environ.get("LRU_CACHE_CAPACITY")}), flush=True)
    start = time.perf_counter()
    for step, index in enumerate(itertools.islice(itertools.cycle(batches), args.steps), start=1):
        train_step(model, model, optimizer, collate([examples[i] for i in index]).to(device), t, device, precision)
        if step % args.every == 0:
            print(json.dumps({"step": step, "rss_mb": rss_mb(), "s_per_step": (time.perf_counter() - start) / step}), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="folder with train.de/train.en (Multi30k)")
    parser.add_argument("--config", default=str(ROOT / "configs" / "multi30k_de_en.yaml"))
    parser.add_argument("--set", action="append", default=[], help="a config override, as seq2seq's --set")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--every", type=int, default=20)
    parser.add_argument("--settings", default="torch-default,ideep-default,package", help=f"comma-separated, of {', '.join(SETTINGS)}")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--glibc-default", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    rows = {}
    for name in args.settings.split(","):
        env = {k: v for k, v in os.environ.items() if k not in CACHE_VARIABLES}
        env.update(SETTINGS[name])
        env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
        command = [sys.executable, __file__, "--child", "--data", args.data, "--config", args.config,
                   "--steps", str(args.steps), "--every", str(args.every), *[x for s in args.set for x in ("--set", s)]]
        command += ["--glibc-default"] if name == "glibc-default" else []
        print(f"== {name}", flush=True)
        lines = []
        with subprocess.Popen(command, env=env, stdout=subprocess.PIPE, text=True) as proc:
            assert proc.stdout is not None
            for line in proc.stdout:
                record = json.loads(line)
                lines.append(record)
                print(f"  step {record['step']:>5}  RSS {record['rss_mb']:8.0f} MB"
                      + (f"  {record['s_per_step']:.3f} s/step" if "s_per_step" in record else
                         f"  (precision {record['precision']}, ONEDNN_PRIMITIVE_CACHE_CAPACITY={record['cache']}, "
                         f"LRU_CACHE_CAPACITY={record['ideep']})"), flush=True)
        if proc.returncode:
            sys.exit(proc.returncode)
        rows[name] = lines
    print("\n| setting | RSS at step 0 | RSS at the end | peak RSS | s/step |\n|---|---|---|---|---|")
    for name, lines in rows.items():
        peak = max(r["rss_mb"] for r in lines)
        print(f"| {name} | {lines[0]['rss_mb']:.0f} MB | {lines[-1]['rss_mb']:.0f} MB | {peak:.0f} MB | {lines[-1].get('s_per_step', float('nan')):.3f} |")


if __name__ == "__main__":
    main()
