"""Resident memory of a real `seq2seq train` run, sampled from outside: what a user's run holds, validations included.

Starts `seq2seq train --config CONFIG --overwrite --quiet [--set ...]` in a fresh process, reads its VmRSS and
VmHWM (the peak) from /proc every `--every` seconds until it exits, and prints one JSON line per sample
({"t_s", "rss_mb", "peak_mb"}) and a summary: the peak, when it was reached, and the RSS after each quarter of
the run. Environment variables given with --env (e.g. --env MALLOC_ARENA_MAX=1) are set for the child only.

Usage: python scripts/rss_of_training.py --config configs/multi30k_de_en.yaml --set train.max_time=10
       [--set train.run_dir=runs/rss] [--env NAME=VALUE] [--every 2] [--out samples.jsonl]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def status_mb(pid: int) -> tuple[float, float] | None:
    """(VmRSS, VmHWM) of process `pid` in MB, or None once it has gone."""
    try:
        text = Path(f"/proc/{pid}/status").read_text(encoding="ascii")
    except (FileNotFoundError, ProcessLookupError):
        return None
    values = {}
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(rest.split()[0]) / 1024
    if "VmRSS" not in values:  # a zombie: exited, not yet reaped
        return None
    return values["VmRSS"], values.get("VmHWM", values["VmRSS"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True)
    parser.add_argument("--set", action="append", default=[], help="a config override, as seq2seq train's --set")
    parser.add_argument("--env", action="append", default=[], help="NAME=VALUE for the training process")
    parser.add_argument("--every", type=float, default=2.0, help="seconds between samples")
    parser.add_argument("--out", type=Path, help="also write the samples here, one JSON object per line")
    args = parser.parse_args()
    env = dict(os.environ)
    for item in args.env:
        name, _, value = item.partition("=")
        env[name] = value
    command = [sys.executable, "-m", "seq2seq", "train", "--config", args.config, "--overwrite", "--quiet"]
    for item in args.set:
        command += ["--set", item]
    print("# " + " ".join(command) + "".join(f"  [{e}]" for e in args.env), flush=True)
    start = time.perf_counter()
    samples: list[dict[str, float]] = []
    with subprocess.Popen(command, env=env, cwd=ROOT) as proc:
        while proc.poll() is None:
            got = status_mb(proc.pid)
            if got is not None:
                samples.append({"t_s": round(time.perf_counter() - start, 1), "rss_mb": round(got[0]), "peak_mb": round(got[1])})
                print(json.dumps(samples[-1]), flush=True)
            time.sleep(args.every)
    if args.out:
        args.out.write_text("".join(json.dumps(s) + "\n" for s in samples), encoding="utf-8")
    if not samples:
        sys.exit(f"no samples: the run exited with {proc.returncode}")
    peak = max(samples, key=lambda s: s["peak_mb"])
    at_peak = next(s for s in samples if s["peak_mb"] == peak["peak_mb"])
    quarters = [samples[min(len(samples) - 1, int(len(samples) * q / 4))]["rss_mb"] for q in (1, 2, 3, 4)]
    print(json.dumps({
        "exit": proc.returncode, "seconds": round(time.perf_counter() - start), "peak_rss_mb": peak["peak_mb"],
        "peak_first_reached_s": at_peak["t_s"], "rss_at_quarters_mb": quarters, "env": args.env, "set": args.set,
    }), flush=True)
    sys.exit(proc.returncode)


if __name__ == "__main__":
    main()
