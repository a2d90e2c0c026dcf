"""A validation metric (BLEU by default, `--metric`) per minute and per target token for recipe settings: run each,
then tabulate and plot.

Each setting is a name and `--set` overrides of the recipe; each runs `seq2seq train` for `--minutes` in a fresh
process through scripts/rss_of_training.py (which records its peak RSS), one after the other, never two at once
(they would share the cores). Then, from each run's metrics.jsonl: updates, target tokens, the greedy validation
BLEU of the last validation at or before each of `--at` minutes, the best, and the peak RSS; and a PNG of
validation BLEU against minutes and against target tokens trained on. Selection is on validation only: the
test set is scored later, once, for the recipe chosen (`seq2seq eval --split test`).

Usage:
  python scripts/recipe_sweep.py --config configs/multi30k_de_en.yaml --minutes 10 --out runs/sweep \
      --setting base= --setting lr2="train.lr=0.002" --setting tied="model.tie_embeddings=true,model.dropout=0.2"
  python scripts/recipe_sweep.py --out runs/sweep --report-only     (tabulate runs already made)
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


LOWER_IS_BETTER = ("cer", "wer")  # as seq2seq's train.metric: error rates are better lower


def metric_at(validations: list[dict], key: str, minutes: float) -> float | None:
    """Greedy `key` (val_bleu, ...) of the last validation that ended at or before `minutes` of training."""
    seen = [v[key] for v in validations if v["elapsed"] <= minutes * 60 + 1]
    return seen[-1] if seen else None


def summarize(run: Path, at: list[float], metric: str = "bleu") -> dict:
    key = f"val_{metric}"
    records = read_jsonl(run / "metrics.jsonl")
    validations = [r for r in records if key in r]
    steps = max(r["step"] for r in records)
    best = min if metric in LOWER_IS_BETTER else max
    row = {"setting": run.name, "updates": steps, "tgt_tokens": max(r.get("tgt_tokens", 0) for r in records),
           f"best_{key}": best((v[key] for v in validations), default=None)}
    for m in at:
        row[f"{key}_{m:g}min"] = metric_at(validations, key, m)
    rss = run / "rss.json"
    row["peak_rss_mb"] = json.loads(rss.read_text())["peak_rss_mb"] if rss.exists() else None
    return row


def plot(runs: list[Path], out: Path, metric: str = "bleu") -> None:
    key = f"val_{metric}"
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (by_time, by_tokens) = plt.subplots(1, 2, figsize=(11, 4))
    for run in runs:
        v = [r for r in read_jsonl(run / "metrics.jsonl") if key in r]
        by_time.plot([r["elapsed"] / 60 for r in v], [r[key] for r in v], marker=".", label=run.name)
        by_tokens.plot([r.get("tgt_tokens", 0) / 1e6 for r in v], [r[key] for r in v], marker=".", label=run.name)
    by_time.set(xlabel="minutes of training", ylabel=f"{key} (greedy)")
    by_tokens.set(xlabel="target tokens trained on (millions)", ylabel=f"{key} (greedy)")
    for ax in (by_time, by_tokens):
        ax.grid(alpha=0.3)
    by_time.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=100)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="configs/multi30k_de_en.yaml")
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--setting", action="append", default=[], help="NAME=KEY=VALUE,KEY=VALUE (NAME= for the recipe as is)")
    parser.add_argument("--set", action="append", default=[], help="an override for every setting")
    parser.add_argument("--env", action="append", default=[], help="NAME=VALUE for every run (e.g. ATEN_CPU_CAPABILITY=avx2)")
    parser.add_argument("--at", default="10,30", help="minutes at which to read the validation metric")
    parser.add_argument("--metric", default="bleu", help="the validation metric to tabulate: bleu, chrf, exact_match, cer, wer")
    parser.add_argument("--out", type=Path, required=True, help="folder of the runs (one run directory per setting)")
    parser.add_argument("--report-only", action="store_true")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    for item in [] if args.report_only else args.setting:
        name, _, sets = item.partition("=")
        run = args.out / name
        overrides = [s for s in sets.split(",") if s] + args.set + [f"train.max_time={args.minutes:g}", f"train.run_dir={run}"]
        command = [sys.executable, str(ROOT / "scripts" / "rss_of_training.py"), "--config", args.config, "--every", "5"]
        command += [x for s in overrides for x in ("--set", s)] + [x for e in args.env for x in ("--env", e)]
        print(f"== {name}: {' '.join(overrides)}", flush=True)
        proc = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
        summary = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else "{}"
        (run / "rss.json").write_text(summary + "\n", encoding="utf-8")
        print(summary, flush=True)
        if proc.returncode:
            print(proc.stderr[-2000:], file=sys.stderr)
    runs = sorted(p.parent for p in args.out.glob("*/metrics.jsonl"))
    at = [float(x) for x in args.at.split(",")]
    rows = [summarize(r, at, args.metric) for r in runs]
    key = f"val_{args.metric}"
    cols = ["setting", "updates", "tgt_tokens", *[f"{key}_{m:g}min" for m in at], f"best_{key}", "peak_rss_mb"]
    print("| " + " | ".join(cols) + " |\n|" + "---|" * len(cols))
    for row in rows:
        print("| " + " | ".join("—" if row[c] is None else f"{row[c]:.2f}" if isinstance(row[c], float) else f"{row[c]:,}"
                                  if isinstance(row[c], int) else str(row[c]) for c in cols) + " |")
    (args.out / "summary.json").write_text(json.dumps(rows, indent=1) + "\n", encoding="utf-8")
    if runs:
        plot(runs, args.out / f"{key}.png", args.metric)
        print(f"plot: {args.out / f'{key}.png'}")


if __name__ == "__main__":
    main()
