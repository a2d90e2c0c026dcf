"""Throughput and latency of `seq2seq serve` on loopback, against `seq2seq translate --input` on the same sentences.

Starts the server on a free 127.0.0.1 port, then for each number of concurrent clients (default 1, 8, 32)
sends the sentences of --input, one sentence per POST /translate, each client waiting for its answer before
sending the next (one keep-alive connection per client). Each round is bounded by --limit sentences and
--time-limit seconds. Then times `seq2seq translate --input` on the same sentences, once as it is and once on
a single line (its start-up: imports and model loading), and compares.

Reports a markdown table: clients, sentences, sentences/s, p50 and p99 latency (ms), errors (answers that were
not 200; must be 0), mismatches (outputs that differ from `translate --input`; must be 0), decoding batches,
and the server's resident memory (VmRSS) before and after the round. `--json` prints one JSON object instead.

Usage: python scripts/bench_serve.py --model runs/demo --input data/toy/test.en [--clients 1 8 32] [--limit 200]
       [--beam 1] [--max-batch 64] [--threads 1] [--time-limit 60] [--json]
"""

from __future__ import annotations

import argparse
import http.client
import json
import math
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def server_env(threads: int | None) -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
    if threads is not None:
        env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    return env


class ServerProcess:
    """`seq2seq serve --port 0` in a subprocess; the port is read from its first line on stderr."""

    def __init__(self, args: argparse.Namespace) -> None:
        command = [sys.executable, "-m", "seq2seq", "serve", "--model", args.model, "--host", "127.0.0.1", "--port", "0"]
        command += _decode_options(args) + (["--max-batch", str(args.max_batch)] if args.max_batch else [])
        self.proc = subprocess.Popen(command, env=server_env(args.threads), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self.log: list[str] = []
        self.port = 0
        ready = threading.Event()
        threading.Thread(target=self._read, args=(ready,), daemon=True).start()
        if not ready.wait(120) or not self.port:
            self.proc.kill()
            sys.exit("the server did not start:\n" + "\n".join(self.log[-20:]))

    def _read(self, ready: threading.Event) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            if not re.match(r"(GET|POST) ", line):  # keep the log short: no line per request
                self.log.append(line.rstrip("\n"))
            found = re.search(r" on http://127\.0\.0\.1:(\d+)/", line)
            if found and not self.port:
                self.port = int(found.group(1))
                ready.set()
        ready.set()

    def rss_mib(self) -> float:
        """The server's resident memory from /proc/PID/status (VmRSS), in MiB; NaN where /proc has none."""
        try:
            status = Path(f"/proc/{self.proc.pid}/status").read_text()
        except OSError:
            return math.nan
        found = re.search(r"^VmRSS:\s+(\d+) kB", status, re.MULTILINE)
        return int(found.group(1)) / 1024 if found else math.nan

    def health(self) -> dict[str, Any]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        conn.request("GET", "/health")
        answer = json.loads(conn.getresponse().read())
        conn.close()
        return answer

    def warm_up(self, text: str) -> None:
        """One translation: the first decoding pays for lazy initialisation, which no round should measure."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
        conn.request("POST", "/translate", body=json.dumps({"text": [text]}), headers={"Content-Type": "application/json"})
        conn.getresponse().read()
        conn.close()

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(120)


def _decode_options(args: argparse.Namespace) -> list[str]:
    return ["--beam", str(args.beam)] if args.beam else []


def _client(port: int, jobs: list[tuple[int, str]], lock: threading.Lock, deadline: float, beam: int | None, out: dict[str, Any]) -> None:
    """Take sentences off `jobs` until it is empty or `deadline` passes; record each latency, output and error."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    while time.monotonic() < deadline:
        with lock:
            if not jobs:
                break
            i, text = jobs.pop()
        body = json.dumps({"text": [text], **({"beam": beam} if beam else {})})
        start = time.perf_counter()
        try:
            conn.request("POST", "/translate", body=body, headers={"Content-Type": "application/json"})
            response = conn.getresponse()
            payload = response.read()
            ok = response.status == 200
        except (OSError, http.client.HTTPException):
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
            ok, payload = False, b""
        with lock:
            out["latencies"].append(time.perf_counter() - start)
            if ok:
                out["outputs"][i] = json.loads(payload)["translations"][0]["output"]
            else:
                out["errors"] += 1
    conn.close()


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..1) of `values`."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)] if ordered else math.nan


def run_round(server: ServerProcess, sentences: list[str], reference: list[str], clients: int, args: argparse.Namespace) -> dict[str, Any]:
    """All of `sentences` (or as many as fit in --time-limit) from `clients` concurrent clients."""
    jobs = list(enumerate(sentences))[::-1]  # pop() takes them in file order
    out: dict[str, Any] = {"latencies": [], "outputs": {}, "errors": 0}
    lock = threading.Lock()
    rss_start, batches_start = server.rss_mib(), server.health()["batches_decoded"]
    deadline = time.monotonic() + args.time_limit
    threads = [threading.Thread(target=_client, args=(server.port, jobs, lock, deadline, args.beam, out)) for _ in range(clients)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    done = len(out["latencies"])
    return {
        "clients": clients,
        "sentences": done,
        "sentences_per_s": done / wall,
        "p50_ms": percentile(out["latencies"], 0.50) * 1000,
        "p99_ms": percentile(out["latencies"], 0.99) * 1000,
        "errors": out["errors"],
        "mismatches": sum(out["outputs"][i] != reference[i] for i in out["outputs"]),
        "batches": server.health()["batches_decoded"] - batches_start,
        "rss_start_mib": rss_start,
        "rss_end_mib": server.rss_mib(),
    }


def time_translate(sentences: list[str], args: argparse.Namespace) -> tuple[list[str], float, float]:
    """Outputs and wall seconds of `seq2seq translate --input` on `sentences`, and its wall seconds on one line."""
    with tempfile.TemporaryDirectory(prefix="bench-serve-") as tmp:
        seconds = []
        for name, lines in (("all.txt", sentences), ("one.txt", sentences[:1])):
            path = Path(tmp) / name
            path.write_text("".join(s + "\n" for s in lines), encoding="utf-8")
            command = [sys.executable, "-m", "seq2seq", "translate", "--model", args.model, "--input", str(path), "--quiet"]
            start = time.perf_counter()
            proc = subprocess.run(command + _decode_options(args), env=server_env(args.threads), capture_output=True, text=True, timeout=3600)
            seconds.append(time.perf_counter() - start)
            if proc.returncode != 0:
                sys.exit(f"translate failed: {proc.stderr.strip()}")
            if name == "all.txt":
                outputs = proc.stdout.split("\n")[: len(sentences)]
    return outputs, seconds[0], seconds[1]


def markdown(rounds: list[dict[str, Any]], file_s: float, startup_s: float, n: int) -> str:
    head = "| clients | sentences | sentences/s | p50 ms | p99 ms | errors | mismatches | batches | RSS start MiB | RSS end MiB |"
    lines = [head, "|" + "---:|" * (head.count("|") - 1)]
    for r in rounds:
        lines.append(
            f"| {r['clients']} | {r['sentences']} | {r['sentences_per_s']:.1f} | {r['p50_ms']:.1f} | {r['p99_ms']:.1f} | {r['errors']} "
            f"| {r['mismatches']} | {r['batches']} | {r['rss_start_mib']:.0f} | {r['rss_end_mib']:.0f} |"
        )
    decode_s = file_s - startup_s
    separable = decode_s >= 0.25 * file_s  # else start-up noise swamps the decoding time
    without = f"{n / decode_s:.1f} sentences/s without it" if separable else "too few sentences to time the decoding alone"
    lines += [
        "",
        f"`seq2seq translate --input` on the same {n} sentences: {file_s:.2f} s wall ({n / file_s:.1f} sentences/s), "
        f"of which about {startup_s:.2f} s is start-up (the same command on one line): {without}.",
        "",
        "| clients | server / file throughput | server / file without its start-up |",
        "|---:|---:|---:|",
    ]
    for r in rounds:
        ratio = f"{r['sentences_per_s'] / (n / decode_s):.2f}" if separable else "n/a"
        lines.append(f"| {r['clients']} | {r['sentences_per_s'] / (n / file_s):.2f} | {ratio} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="run directory or .pt checkpoint")
    parser.add_argument("--input", required=True, type=Path, help="sentences, one per line")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 8, 32], help="concurrent clients per round")
    parser.add_argument("--limit", type=int, default=None, help="use the first N sentences of --input [default: all]")
    parser.add_argument("--beam", type=int, default=None, help="beam size [default: the model's decode.beam_size]")
    parser.add_argument("--max-batch", type=int, default=None, help="the server's --max-batch")
    parser.add_argument("--threads", type=int, default=None, help="OMP/MKL threads of the server and of translate")
    parser.add_argument("--time-limit", type=float, default=60.0, help="seconds per round at most")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the tables")
    args = parser.parse_args()

    sentences = [line for line in args.input.read_text(encoding="utf-8").splitlines() if line.strip()][: args.limit]
    if not sentences:
        sys.exit(f"{args.input}: no sentences")
    reference, file_s, startup_s = time_translate(sentences, args)
    server = ServerProcess(args)
    try:
        server.warm_up(sentences[0])
        rounds = [run_round(server, sentences, reference, clients, args) for clients in args.clients]
    finally:
        code = server.stop()
    if code != 0:
        print(f"warning: the server exited with {code}", file=sys.stderr)
    if args.json:
        print(json.dumps({"rounds": rounds, "file_s": file_s, "startup_s": startup_s, "sentences": len(sentences)}))
    else:
        print(markdown(rounds, file_s, startup_s, len(sentences)))


if __name__ == "__main__":
    main()
