"""German pronunciation side by side (issue 35 §1): Phonetisaurus 0.3.0 (the joint n-gram WFST every G2P paper
reports) against ours at several minutes of training, on the same split of WikiPron's German list, scored the same
way: both outputs go through `seq2seq score` against the test file, several pronunciations per word counted right.

What it runs, one command after the other (never two at once: they would share the cores and each time the other):
  1. scripts/download_wikipron.sh DATA      (skips what is there; WIKIPRON_TSV=/path/to/the/list works offline)
  2. Phonetisaurus, in a venv of its own outside the checkout (PHONETISAURUS_VENV, default ../peers/phonetisaurus-venv
     beside the checkout; made with `pip install phonetisaurus==0.3.0` when missing):
       phonetisaurus train --model OUT/phonetisaurus/model.fst DATA/train.tsv        (timed)
       phonetisaurus predict --model OUT/phonetisaurus/model.fst < words.txt         (timed; the test's distinct words)
     its `word p h o n e s` lines put back into the test's item order (a word it gave nothing for: an empty line),
     then `seq2seq score --data DATA/test.tsv --hyp OUT/phonetisaurus/test.hyp --json`
  3. ours, for each seed and each of --minutes: `seq2seq train --config configs/g2p_de.yaml --set train.max_time=M
     --set train.seed=S` into OUT/ours-Mmin-seedS (the data paths set to DATA), `seq2seq eval --data DATA/test.tsv
     --beam 5 --output RUN/test.beam5.hyp` (timed) and `seq2seq score` on that file, as for Phonetisaurus.
Then one table: system, training s, word error (100 - exact match), PER (edits per reference phoneme: score's
`wer`, the closest pronunciation per word), decode s; and OUT/compare.json with every figure and the CPU.

Times are wall-clock seconds of each command as a user runs it, start-up included (Phonetisaurus's Python wrapper
and its binaries; torch's import and the model's load for eval, whose time also holds the test loss, a
teacher-forced pass). Ours's training s is the run's own clock (`info --json` training_seconds of last.pt: what
train.max_time counts, validations included), its wall time beside it in compare.json.

Usage:
  python scripts/compare_g2p.py                                  (Phonetisaurus, then ours at 2 4 8 16 minutes, seed 1)
  python scripts/compare_g2p.py --minutes 8 --seeds 1 2
  python scripts/compare_g2p.py --only phonetisaurus
  WIKIPRON_TSV=/path/deu_latn_broad_filtered.tsv python scripts/compare_g2p.py --data /elsewhere/wikipron-de
Run it on a quiet machine: every time here is a measurement.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # seq2seq's own item rules, from this checkout (torch-free)

from seq2seq.config import DataConfig  # noqa: E402
from seq2seq.data.references import read_tsv_references  # noqa: E402

PHONETISAURUS = "phonetisaurus==0.3.0"
DEFAULT_VENV = ROOT.parent / "peers" / "phonetisaurus-venv"


@dataclass
class Row:
    system: str
    training_s: float | None  # the system's training time (ours: the run's own clock)
    word_error: float  # 100 - exact match
    per: float  # score's wer: edits per reference phoneme
    decode_s: float | None
    exact_match: float
    cer: float
    details: dict = field(default_factory=dict)


class Failed(Exception):
    """A step failed: its message is the one line printed."""


def seq2seq_command() -> list[str]:
    """$SEQ2SEQ, else the checkout's .venv/bin/seq2seq, else the one on the PATH (as download_wikipron.sh finds it)."""
    if os.environ.get("SEQ2SEQ"):
        return [os.environ["SEQ2SEQ"]]
    venv = ROOT / ".venv" / "bin" / "seq2seq"
    if venv.exists():
        return [str(venv)]
    found = shutil.which("seq2seq")
    if found:
        return [found]
    raise Failed("no seq2seq command: set SEQ2SEQ=/path/to/seq2seq or run the README's quick start")


def run(cmd: list[str], log: Path, stdin: Path | None = None, stdout: Path | None = None, env: dict | None = None) -> tuple[float, float, str]:
    """Run `cmd` to its end, stderr (and stdout unless `stdout` names a file) into `log`; returns (wall s, CPU s of
    the command and its children, stdout when not written to a file). A failure is one line naming the log."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    with open(log, "w", encoding="utf-8") as err, \
            open(stdin, "rb") if stdin else open(os.devnull, "rb") as inp, \
            open(stdout, "wb") if stdout else open(os.devnull, "wb") as out_file:
        proc = subprocess.run(cmd, stdin=inp, stdout=out_file if stdout else subprocess.PIPE, stderr=err, env=env)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if proc.returncode != 0:
        tail = log.read_text(encoding="utf-8", errors="replace").strip().splitlines()[-1:] or ["(no output)"]
        raise Failed(f"{' '.join(cmd[:3])} ... exited {proc.returncode}: {tail[0]} (log: {log})")
    return wall, cpu, (proc.stdout or b"").decode("utf-8") if not stdout else ""


def prepare_data(data: Path, log_dir: Path) -> None:
    """scripts/download_wikipron.sh DATA: the list (downloaded, or WIKIPRON_TSV's copy) and its split by word."""
    env = {**os.environ, "SEQ2SEQ": seq2seq_command()[0]}
    run(["bash", str(ROOT / "scripts" / "download_wikipron.sh"), str(data)], log_dir / "download.log", env=env)
    for name in ("train.tsv", "val.tsv", "test.tsv"):
        if not (data / name).is_file():
            raise Failed(f"{data / name}: missing after scripts/download_wikipron.sh {data}")


def phonetisaurus_bin(venv: Path, log_dir: Path) -> Path:
    """The venv's phonetisaurus, installed (pip install phonetisaurus==0.3.0) when the venv lacks it."""
    exe = venv / "bin" / "phonetisaurus"
    if not exe.exists():
        print(f"making {venv} ({PHONETISAURUS})", file=sys.stderr)
        python = shutil.which("python3") or sys.executable
        run([python, "-m", "venv", str(venv)], log_dir / "venv.log")
        run([str(venv / "bin" / "pip"), "install", "-q", PHONETISAURUS], log_dir / "pip.log")
    return exe


def test_words(test: Path) -> list[str]:
    """The test's evaluation items' sources, in eval's order (data/references: distinct words, first-seen order)."""
    return [item.src for item in read_tsv_references(test, DataConfig()).items]


def predictions_in_item_order(predicted: str, words: list[str]) -> tuple[list[str], int]:
    """Phonetisaurus's `word p h o n e s` lines (one per word with --nbest 1; phonemes space-separated) -> one line
    per test word in `words`' order, and how many words it gave no pronunciation (their lines are empty: wrong)."""
    first: dict[str, str] = {}
    for line in predicted.splitlines():
        word, _, phonemes = line.strip().replace("\t", " ").partition(" ")
        if word and word not in first:
            first[word] = " ".join(phonemes.split())
    return [first.get(word, "") for word in words], sum(word not in first for word in words)


def score(hyp: Path, test: Path, log: Path) -> dict:
    """`seq2seq score --data TEST --hyp HYP --json`."""
    _, _, out = run([*seq2seq_command(), "score", "--data", str(test), "--hyp", str(hyp), "--json"], log)
    return json.loads(out)


def phonetisaurus_row(data: Path, out: Path, venv: Path) -> Row:
    work = out / "phonetisaurus"
    work.mkdir(parents=True, exist_ok=True)
    exe = phonetisaurus_bin(venv, work)
    model = work / "model.fst"
    print(f"phonetisaurus train on {data / 'train.tsv'}", file=sys.stderr)
    train_s, train_cpu, _ = run([str(exe), "train", "--model", str(model), str(data / "train.tsv")], work / "train.log")
    words = test_words(data / "test.tsv")
    (work / "words.txt").write_text("".join(w + "\n" for w in words), encoding="utf-8")
    print(f"phonetisaurus predict {len(words)} words", file=sys.stderr)
    env = {**os.environ, "PYTHONIOENCODING": "utf-8"}  # its wrapper prints the words: UTF-8 whatever the locale
    decode_s, decode_cpu, _ = run(
        [str(exe), "predict", "--model", str(model)], work / "predict.log", stdin=work / "words.txt", stdout=work / "predict.txt", env=env
    )
    hyps, missing = predictions_in_item_order((work / "predict.txt").read_text(encoding="utf-8"), words)
    (work / "test.hyp").write_text("".join(h + "\n" for h in hyps), encoding="utf-8")
    s = score(work / "test.hyp", data / "test.tsv", work / "score.log")
    return Row(
        "Phonetisaurus 0.3.0, `phonetisaurus train` defaults", train_s, s["word_error"], s["wer"], decode_s, s["exact_match"], s["cer"],
        {"train_cpu_s": train_cpu, "decode_cpu_s": decode_cpu, "words": len(words), "no_pronunciation": missing, "scores": s},
    )


def ours_row(data: Path, out: Path, config: Path, minutes: float, seed: int, beam: int) -> Row:
    run_dir = out / f"ours-{minutes:g}min-seed{seed}"
    run_dir.mkdir(parents=True, exist_ok=True)
    logs = out / "logs"
    name = run_dir.name
    sets = {
        "train.max_time": f"{minutes:g}", "train.seed": str(seed), "train.run_dir": str(run_dir),
        "data.train": str(data / "train.tsv"), "data.valid": str(data / "val.tsv"), "data.test": str(data / "test.tsv"),
    }
    cmd = [*seq2seq_command(), "train", "--config", str(config), "--overwrite", "--quiet"]
    for key, value in sets.items():
        cmd += ["--set", f"{key}={value}"]
    print(f"ours: {minutes:g} minutes, seed {seed} -> {run_dir}", file=sys.stderr)
    train_wall, _, _ = run(cmd, logs / f"{name}.train.log")
    _, _, info = run([*seq2seq_command(), "info", "--model", str(run_dir / "last.pt"), "--json"], logs / f"{name}.info.log")
    info = json.loads(info)
    hyp = run_dir / f"test.beam{beam}.hyp"
    decode_s, _, evaluated = run(
        [*seq2seq_command(), "eval", "--model", str(run_dir), "--data", str(data / "test.tsv"), "--beam", str(beam),
         "--output", str(hyp), "--json", "--quiet"],
        logs / f"{name}.eval.log",
    )
    evaluated = json.loads(evaluated)
    s = score(hyp, data / "test.tsv", logs / f"{name}.score.log")
    if (s["exact_match"], s["wer"]) != (evaluated["exact_match"], evaluated["wer"]):  # one scorer: they must agree
        raise Failed(f"{hyp}: score says {s['exact_match']} / {s['wer']}, eval {evaluated['exact_match']} / {evaluated['wer']}")
    updates = info.get("step")
    return Row(
        f"ours, {minutes:g} min, seed {seed}, {updates:,} updates, beam {beam}", info.get("training_seconds"), s["word_error"], s["wer"],
        decode_s, s["exact_match"], s["cer"], {"train_wall_s": train_wall, "updates": updates, "run_dir": str(run_dir), "scores": s},
    )


def cpu_description() -> dict:
    """The CPU the times were measured on: model, logical CPUs, and the vector flags that decide kernels."""
    model, flags = platform.processor(), []
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and not model:
                model = line.split(":", 1)[1].strip()
            if line.startswith("flags"):
                flags = line.split(":", 1)[1].split()
                break
    except OSError:
        pass
    vector = [f for f in flags if f.startswith(("avx", "amx", "fma", "sse4"))]
    return {"model": model, "cpus": os.cpu_count(), "vector_flags": vector}


def table(rows: list[Row]) -> str:
    def num(x: float | None, fmt: str = ".1f") -> str:
        return "—" if x is None else format(x, fmt)

    lines = ["| system | training s | word error | PER | decode s |", "|---|---|---|---|---|"]
    lines += [f"| {r.system} | {num(r.training_s, '.0f')} | {r.word_error:.2f} | {r.per:.2f} | {num(r.decode_s)} |" for r in rows]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path(os.environ.get("G2P_DATA", "data/wikipron/de")),
                        help="where the split is (or goes): DIR/{train,val,test}.tsv [default: $G2P_DATA or data/wikipron/de]")
    parser.add_argument("--out", type=Path, default=Path("runs/compare_g2p"), help="models, outputs, logs, compare.json")
    parser.add_argument("--config", type=Path, default=ROOT / "configs" / "g2p_de.yaml")
    parser.add_argument("--minutes", type=float, nargs="+", default=[2, 4, 8, 16], help="ours's train.max_time values")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1], help="ours's train.seed values")
    parser.add_argument("--beam", type=int, default=5)
    parser.add_argument("--only", choices=("phonetisaurus", "ours"), help="run one half only")
    args = parser.parse_args()
    venv = Path(os.environ.get("PHONETISAURUS_VENV", DEFAULT_VENV))
    (args.out / "logs").mkdir(parents=True, exist_ok=True)
    try:
        prepare_data(args.data, args.out / "logs")
        rows = []
        if args.only != "ours":
            rows.append(phonetisaurus_row(args.data, args.out, venv))
        if args.only != "phonetisaurus":
            rows += [ours_row(args.data, args.out, args.config, m, s, args.beam) for s in args.seeds for m in args.minutes]
    except Failed as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    report = {"cpu": cpu_description(), "data": str(args.data), "rows": [asdict(r) for r in rows]}
    (args.out / "compare.json").write_text(json.dumps(report, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    cpu = report["cpu"]
    print(f"{cpu['model']}, {cpu['cpus']} CPUs, flags {' '.join(cpu['vector_flags']) or 'none of avx/amx/fma/sse4'}")
    print(f"test: {args.data / 'test.tsv'}, {rows[0].details['scores']['n_sentences']} words; word error = 100 - exact match, "
          "PER = edits per reference phoneme (the closest pronunciation)")
    print(table(rows))
    print(f"all figures: {args.out / 'compare.json'}")


if __name__ == "__main__":
    main()
