"""fp32 and bf16 matmul speed on this CPU, and the precision `auto` picks here.

    python scripts/matmul_peak.py [--size 1024] [--seconds 1.5]
    ONEDNN_MAX_CPU_ISA=AVX2 python scripts/matmul_peak.py   # what a capped oneDNN gives

Prints GFLOP/s per dtype (2·n³ per product, repeated for --seconds) and `choose_precision('auto', cpu)`.
"""

from __future__ import annotations

import argparse
import time

import torch

from seq2seq.device import choose_precision


def gflops(n: int, dtype: torch.dtype, seconds: float) -> float:
    a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
    a @ b  # the first call picks and caches the kernel
    start, count = time.perf_counter(), 0
    while time.perf_counter() - start < seconds:
        a @ b
        count += 1
    return 2 * n**3 * count / (time.perf_counter() - start) / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--seconds", type=float, default=1.5)
    args = parser.parse_args()
    for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        print(f"{name}: {gflops(args.size, dtype, args.seconds):.1f} GFLOP/s ({args.size}² matmul)")
    choice = choose_precision("auto", torch.device("cpu"))
    print(f"auto -> {choice.precision}: {choice.reason}")


if __name__ == "__main__":
    main()
