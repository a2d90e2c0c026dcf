"""torch against the ONNX export (`seq2seq export`), fp32 and int8, greedy and beam 5, on one model and test file.

Batch 1: each sentence decoded alone, latency p50 / p99 (ms) and sentences/s. Batch 128: sentences/s over the file.
With --ref, BLEU of beam 5 at batch 128 (sacreBLEU). fp32 outputs of torch and the export are compared (must match).
All in one process and sitting; onnxruntime's spinning is off because torch lives beside it.

Usage: python scripts/bench_export.py --model runs/multi30k_de_en --input data/multi30k/test_2016_flickr.de
           [--ref data/multi30k/test_2016_flickr.en] [--limit-b1 300] [--threads N] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path


def _percentile(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


def measure(translate, lines: list[str], limit_b1: int, beam: int) -> dict:  # noqa: ANN001 (texts, batch, beam -> outputs)
    latencies = []
    for line in lines[:limit_b1]:
        start = time.perf_counter()
        translate([line], 1, beam)
        latencies.append((time.perf_counter() - start) * 1000)
    start = time.perf_counter()
    outputs = translate(lines, 128, beam)
    seconds = time.perf_counter() - start
    return {
        "b1_p50_ms": _percentile(latencies, 0.5), "b1_p99_ms": _percentile(latencies, 0.99),
        "b1_sent_s": 1000 * len(latencies) / sum(latencies), "b128_sent_s": len(lines) / seconds, "outputs": outputs,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="run directory or .pt checkpoint")
    parser.add_argument("--input", required=True, help="source sentences, one per line")
    parser.add_argument("--ref", default=None, help="references, for BLEU (beam 5)")
    parser.add_argument("--limit-b1", type=int, default=300, help="sentences timed one at a time")
    parser.add_argument("--threads", type=int, default=None, help="torch and onnxruntime threads [default: their own]")
    parser.add_argument("--json", default=None, help="also write the results to this JSON file")
    args = parser.parse_args()

    import torch

    from seq2seq.decode.translator import open_model
    from seq2seq.model.checkpoint import Checkpoint, resolve_model_path
    from seq2seq.model.export import export_checkpoint

    if args.threads:
        torch.set_num_threads(args.threads)
    lines = Path(args.input).read_text(encoding="utf-8").splitlines()
    path = resolve_model_path(args.model)
    ckpt = Checkpoint.read(path)
    paths = {
        "torch fp32": open_model(path, device="cpu", precision="fp32"),
        "torch int8": open_model(path, device="cpu", precision="fp32", quantize="int8"),
    }
    tmp = tempfile.TemporaryDirectory(prefix="bench-export-")
    for quantize in ("none", "int8"):
        out = Path(tmp.name) / quantize
        export_checkpoint(ckpt, out, quantize)
        paths[f"export {'fp32' if quantize == 'none' else 'int8'}"] = open_model(out, threads=args.threads or 0)
    results: dict[str, dict] = {}
    for name, t in paths.items():
        for beam in (1, 5):
            r = measure(lambda texts, batch, k, t=t: t.translate(texts, batch_size=batch, beam_size=k), lines, args.limit_b1, beam)
            results[f"{name} beam {beam}"] = r
            print(f"{name:11} beam {beam}: b1 p50 {r['b1_p50_ms']:.1f} ms p99 {r['b1_p99_ms']:.1f} ms ({r['b1_sent_s']:.1f}/s), "
                  f"b128 {r['b128_sent_s']:.1f} sent/s", file=sys.stderr, flush=True)
    if args.ref:
        import sacrebleu

        refs = Path(args.ref).read_text(encoding="utf-8").splitlines()
        for name in paths:
            results[f"{name} beam 5"]["bleu"] = sacrebleu.corpus_bleu(results[f"{name} beam 5"]["outputs"], [refs]).score
    for beam in (1, 5):
        a, b = results[f"torch fp32 beam {beam}"]["outputs"], results[f"export fp32 beam {beam}"]["outputs"]
        results[f"export fp32 beam {beam}"]["mismatches_vs_torch"] = sum(x != y for x, y in zip(a, b))
    print("| path | beam | b1 p50 / p99 ms | b1 sent/s | b128 sent/s | BLEU | fp32 mismatches |")
    print("|---|---|---|---|---|---|---|")
    for key, r in results.items():
        name, beam = key.rsplit(" beam ", 1)
        bleu = f"{r['bleu']:.2f}" if "bleu" in r else ""
        print(f"| {name} | {beam} | {r['b1_p50_ms']:.1f} / {r['b1_p99_ms']:.1f} | {r['b1_sent_s']:.1f} | {r['b128_sent_s']:.1f} "
              f"| {bleu} | {r.get('mismatches_vs_torch', '')} |")
    report = {key: {k: v for k, v in r.items() if k != "outputs"} for key, r in results.items()}
    report["setup"] = {"model": args.model, "input": args.input, "sentences": len(lines), "threads": args.threads,
                       "torch": torch.__version__}
    print(json.dumps(report))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
