"""Decoding speed and BLEU of a trained model on a test set: greedy and beam, fp32 and int8, by batch size.

For each quantization (`--quantize none,int8`), autocast precision of the unquantized weights (`--precisions
auto`: the model's train.precision as decoding resolves it; `fp32,bf16` to compare), decoding batch size
(`--batch-sizes 16,64,128,256,1000`) and beam (`--beams 1,5`), decodes the source file once (its first `--limit`
lines) after a short warm-up and prints sentences/s, output tokens/s and sacreBLEU against the reference, as a
Markdown table (and `--json` lines). What `decode.quantize`, `decode.batch_size` and the precision of decoding
should be on a machine comes from here.

Usage: python scripts/bench_decode.py --model runs/multi30k_de_en --src data/multi30k/test_2016_flickr.de
       --ref data/multi30k/test_2016_flickr.en [--threads N] [--precisions fp32,bf16] [--limit 200]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import torch

from seq2seq.data.corpus import read_lines
from seq2seq.device import describe_cpu
from seq2seq.decode.evaluate import bleu_chrf_ter
from seq2seq.decode.search import decode
from seq2seq.decode.translator import Translator


def measure(t: Translator, sources: list[list[int]], refs: list[str], beam: int, batch: int) -> dict:
    cfg = dataclasses.replace(t.cfg.decode, beam_size=beam, batch_size=batch)
    decode(t.backend, sources[: min(64, len(sources))], cfg)  # warm-up
    start = time.perf_counter()
    nbests = decode(t.backend, sources, cfg)
    seconds = time.perf_counter() - start
    outputs = [t.detokenize(n[0].ids) for n in nbests]
    bleu = bleu_chrf_ter(outputs, refs)[0]
    tokens = sum(len(n[0].ids) + 1 for n in nbests)
    return {"beam": beam, "batch": batch, "sentences_per_s": len(sources) / seconds, "tokens_per_s": tokens / seconds, "bleu": bleu}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True)
    parser.add_argument("--src", required=True, type=Path)
    parser.add_argument("--ref", required=True, type=Path)
    parser.add_argument("--quantize", default="none,int8")
    parser.add_argument("--batch-sizes", default="16,64,128,256,1000")
    parser.add_argument("--beams", default="1,5")
    parser.add_argument("--precisions", default="auto", help="of the unquantized model: auto, fp32, bf16 (comma-separated)")
    parser.add_argument("--limit", type=int, default=None, help="decode only the first N lines")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    texts, refs = read_lines(args.src)[: args.limit], read_lines(args.ref)[: args.limit]
    print(f"{describe_cpu()}; torch {torch.__version__}, {torch.get_num_threads()} threads; {len(texts)} sentences", flush=True)
    rows = []
    variants = [(q, p) for q in args.quantize.split(",") for p in (args.precisions.split(",") if q == "none" else ["auto"])]
    for quantize, precision in variants:
        t = Translator.load(args.model, device="cpu", quantize=quantize, precision=None if precision == "auto" else precision)
        sources = [s.ids for s in t.sources(texts)]
        for beam in map(int, args.beams.split(",")):
            for batch in map(int, args.batch_sizes.split(",")):
                row = {"quantize": quantize, "precision": t.precision, **measure(t, sources, refs, beam, batch)}
                rows.append(row)
                print(json.dumps(row) if args.json else
                      f"  {quantize:>4} {t.precision} beam {beam} batch {batch:>4}: {row['sentences_per_s']:7.1f} sentences/s, "
                      f"{row['tokens_per_s']:7.0f} tokens/s, BLEU {row['bleu']:.2f}", flush=True)
    print("\n| weights | precision | beam | batch | sentences/s | tokens/s | BLEU |\n|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['quantize']} | {r['precision']} | {r['beam']} | {r['batch']} | {r['sentences_per_s']:,.0f} | {r['tokens_per_s']:,.0f} | {r['bleu']:.2f} |")


if __name__ == "__main__":
    main()
