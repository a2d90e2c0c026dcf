"""The bad-input catalogue: every case exits 2 with ONE line on stderr naming the problem and where, no traceback,
and every file that existed before the command is byte-identical after it (nothing saved is lost or overwritten).

Each case runs `python -m seq2seq ...` in a process of its own, in its own copy of a directory holding a tiny
trained run: forked from one that has imported torch already (tests/forkserver.py; a fresh interpreter would
spend ~2 s importing it), two at a time, in a module fixture.
"""

from __future__ import annotations

import builtins
import hashlib
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, NamedTuple

import pytest
import torch

from tests.conftest import TOY, CliJob, run_cli, run_cli_many

CONFIG = """\
data: {train: toy, valid: val, src_lang: en, tgt_lang: de}
model: {emb_size: 8, hidden_size: 16}
train: {epochs: 1, batch_size: 16, run_dir: run, num_threads: 1}
"""
TRAIN = ["train", "--config", "tiny.yaml", "--quiet"]
FRESH = ["--set", "train.run_dir=fresh"]  # data cases: a new run directory, so the run-dir guard does not answer first
LEXICON = "cat\tK AE1 T\ndog\tD AO1 G\ndog\tD AA1 G\nbee\tB IY1\nowl\tAW1 L\n"  # 4 distinct sources


def write(path: Path, data: str | bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)


def corpus(d: Path, name: str, src: list[str], tgt: list[str]) -> None:
    write(d / f"{name}.en", "".join(s + "\n" for s in src))
    write(d / f"{name}.de", "".join(t + "\n" for t in tgt))


def edit_checkpoint(d: Path, name: str, change: Callable[[dict], None]) -> None:
    state = torch.load(d / "run" / "best.pt", weights_only=True)
    change(state)
    torch.save(state, d / name)


class Payload:
    """Unpickling this creates the file MARKER: code run by merely loading a checkpoint."""

    def __reduce__(self):
        return (builtins.open, ("MARKER", "w"))


def evil_last_pt(d: Path) -> None:
    state = torch.load(d / "run" / "last.pt", weights_only=True)
    torch.save({**state, "extra": Payload()}, d / "run" / "last.pt")


def evil_model(d: Path) -> None:
    state = torch.load(d / "run" / "best.pt", weights_only=True)
    torch.save({**state, "extra": Payload()}, d / "evil.pt")


def rename_vocab_token(d: Path) -> None:
    path = d / "run" / "src_vocab.json"
    write(path, path.read_text(encoding="utf-8").replace('"the"', '"thee"', 1))


def nothing(d: Path) -> None:
    pass


@dataclass(frozen=True)
class Case:
    id: str
    args: list[str]
    expected: tuple[str, ...]  # fragments of the one stderr line: the problem, and where (file:line, dotted key, option)
    setup: Callable[[Path], None] = nothing
    stdin: bytes = b""
    absent: tuple[str, ...] = field(default=())  # files that must not appear


CASES = [
    # -- the config file and --set -------------------------------------------------------------------
    Case("yaml-malformed", [*TRAIN[:2], "bad.yaml"], ("bad.yaml:3: malformed YAML: mapping values are not allowed here",), lambda d: write(d / "bad.yaml", "model:\n  emb_size: 8\n  hidden_size: 16: 3\n")),
    Case("yaml-top-level-list", [*TRAIN[:2], "bad.yaml"], ("bad.yaml: top level: expected a mapping",), lambda d: write(d / "bad.yaml", "- train\n- model\n")),
    Case("yaml-list-for-number", [*TRAIN[:2], "bad.yaml"], ("bad.yaml: train.lr: expected a number, got list",), lambda d: write(d / "bad.yaml", CONFIG.replace("epochs: 1", "epochs: 1, lr: [1, 2]"))),
    Case("yaml-negative-size", [*TRAIN[:2], "bad.yaml"], ("bad.yaml: model.hidden_size: must be >= 1, got -16",), lambda d: write(d / "bad.yaml", CONFIG.replace("hidden_size: 16", "hidden_size: -16"))),
    Case("yaml-unknown-key", [*TRAIN[:2], "bad.yaml"], ("bad.yaml: model.hiden_size: unknown key (did you mean 'hidden_size'?)",), lambda d: write(d / "bad.yaml", CONFIG.replace("hidden_size", "hiden_size"))),
    Case("yaml-unknown-section", [*TRAIN[:2], "bad.yaml"], ("bad.yaml: trian: unknown section (did you mean 'train'?)",), lambda d: write(d / "bad.yaml", CONFIG.replace("train: {", "trian: {"))),
    Case("yaml-bool-for-number", [*TRAIN[:2], "bad.yaml"], ("bad.yaml: train.epochs: expected an integer, got True",), lambda d: write(d / "bad.yaml", CONFIG.replace("epochs: 1", "epochs: yes"))),
    Case("config-missing", ["train", "--config", "nope.yaml"], ("nope.yaml: config file not found",)),
    Case("config-is-directory", ["train", "--config", "run"], ("run: is a directory, expected a YAML config file",)),
    Case("config-not-utf8", [*TRAIN[:2], "bad.yaml"], ("bad.yaml:2:6: not valid UTF-8 (byte 0xff)",), lambda d: write(d / "bad.yaml", b"model:\n  x: \xff\n")),
    Case("config-option-missing", ["train"], ("Missing option '--config'",)),
    Case("set-without-equals", [*TRAIN, "--set", "train.lr"], ("error: --set 'train.lr': expected section.key=value",)),
    Case("set-unknown-key", [*TRAIN, "--set", "train.lrr=3"], ("error: --set train.lrr: unknown key (did you mean 'lr'?)",)),
    Case("set-unknown-section", [*TRAIN, "--set", "trian.lr=3"], ("--set trian.lr: unknown section (did you mean 'train'?)",)),
    Case("set-not-section-key", [*TRAIN, "--set", "lr=0.1"], ("--set 'lr=0.1': the key must be section.key",)),
    Case("set-wrong-type", [*TRAIN, "--set", "train.epochs=many"], ("error: --set train.epochs: expected an integer, got 'many'",)),
    Case("set-bad-choice", [*TRAIN, "--set", "model.attention=dot"], ("model.attention: 'dot' is not one of bahdanau, luong",)),
    Case("set-not-finite", [*TRAIN, "--set", "train.lr=.inf"], ("train.lr: expected a finite number",)),
    Case("set-zero-lr", [*TRAIN, "--set", "train.lr=0"], ("train.lr: must be > 0.0, got 0.0",)),
    # -- corpora ---------------------------------------------------------------------------------------
    Case("corpus-missing", [*TRAIN, *FRESH, "--set", "data.train=nosuch"], ("nosuch.en: file not found",)),
    Case("corpus-empty", [*TRAIN, *FRESH, "--set", "data.train=empty"], ("empty.en + empty.de: corpus is empty",), lambda d: corpus(d, "empty", ["", " "], ["x", ""])),
    Case("corpus-misaligned", [*TRAIN, *FRESH, "--set", "data.train=mis"], ("misaligned corpus: mis.en has 3 lines but mis.de has 2",), lambda d: corpus(d, "mis", ["a", "b", "c"], ["x", "y"])),
    Case("corpus-not-utf8", [*TRAIN, *FRESH, "--set", "data.train=latin"], ("latin.de:3:4: not valid UTF-8 (byte 0xe9)",), lambda d: (corpus(d, "latin", ["a", "b", "c"], ["x", "y", "z"]), write(d / "latin.de", b"x\ny\ncaf\xe9\n"))),
    Case("tsv-without-tab", [*TRAIN, *FRESH, "--set", "data.format=tsv", "--set", "data.train=pairs.tsv"], ("pairs.tsv:2: expected source<TAB>target, found no tab",), lambda d: write(d / "pairs.tsv", "a\tx\nb y\n")),
    # -- the run directory -------------------------------------------------------------------------------
    Case("run-dir-under-a-file", [*TRAIN, "--set", "train.run_dir=toy.en/run"], ("train.run_dir: cannot create toy.en/run (Not a directory)",)),
    Case("run-dir-holds-a-run", TRAIN, ("run already holds a trained run: add --resume to continue it or --overwrite",)),
    Case("run-dir-holds-another-config", [*TRAIN, "--set", "train.run_dir=started", "--set", "data.min_freq=3"], ("started holds vocabularies built with other data settings (data.min_freq differ",), lambda d: (write(d / "started" / "config.yaml", (d / "run" / "config.yaml").read_text()))),
    Case("resume-nothing-to-resume", [*TRAIN, *FRESH, "--resume"], ("fresh/last.pt: nothing to resume (no last.pt in fresh)",)),
    Case("resume-and-overwrite", [*TRAIN, "--resume", "--overwrite"], ("'--resume' / '--overwrite'", "exclude each other")),
    Case("resume-another-config", [*TRAIN, "--resume", "--set", "train.lr=0.5"], ("run/config.yaml: the run in run was trained with another config (train.lr differ)",)),
    Case("resume-truncated-last-pt", [*TRAIN, "--resume"], ("run/last.pt: not a loadable checkpoint: truncated, corrupted or not a PyTorch file",), lambda d: write(d / "run" / "last.pt", (d / "run" / "last.pt").read_bytes()[:5000])),
    Case("resume-pickle-payload", [*TRAIN, "--resume"], ("run/last.pt: not a loadable checkpoint: it holds pickled Python objects",), evil_last_pt, absent=("MARKER",)),
    Case("resume-vocab-edited", [*TRAIN, "--resume"], ("run/last.pt: its src vocab differs from src_vocab.json",), rename_vocab_token),
    # -- checkpoints for translate / eval ----------------------------------------------------------------------
    Case("model-missing", ["translate", "--model", "nosuch", "hi"], ("nosuch: no such model",)),
    Case("model-dir-without-checkpoint", ["translate", "--model", "toydir", "hi"], ("toydir: run directory holds no best.pt or last.pt",), lambda d: (d / "toydir").mkdir()),
    Case("model-truncated", ["translate", "--model", "cut.pt", "hi"], ("cut.pt: not a loadable checkpoint: truncated, corrupted or not a PyTorch file (PytorchStreamReader failed",), lambda d: write(d / "cut.pt", (d / "run" / "best.pt").read_bytes()[:-100])),
    Case("model-format-version", ["translate", "--model", "v9.pt", "hi"], ("v9.pt: checkpoint format version 9, this seq2seq reads version 1",), lambda d: edit_checkpoint(d, "v9.pt", lambda s: s.update(format_version=9))),
    Case("model-vocab-mismatch", ["translate", "--model", "vocab.pt", "hi"], ("vocab.pt: vocabulary of", "does not match weights encoder.embed.weight"), lambda d: edit_checkpoint(d, "vocab.pt", lambda s: s["src_vocab"].append("extra"))),
    Case("model-pickle-payload", ["translate", "--model", "evil.pt", "hi"], ("evil.pt: not a loadable checkpoint: it holds pickled Python objects",), evil_model, absent=("MARKER",)),
    Case("no-model-recorded", ["translate", "hi"], ("no --model given and no trained model recorded in runs/latest: train one first",), lambda d: (d / "runs" / "latest").unlink()),
    # -- command-line options and inputs -------------------------------------------------------------------
    # said as every other error (issue 32): "error: WHERE: WHAT", not typer's "error (seq2seq translate): Invalid value ..."
    Case("beam-zero", ["translate", "--model", "run", "--beam", "0", "hi"], ("error: --beam: must be at least 1",)),
    Case("batch-size-negative", ["translate", "--model", "run", "--batch-size", "-3", "hi"], ("error: --batch-size: must be at least 1",)),
    Case("batch-size-not-a-number", ["eval", "--model", "run", "--batch-size", "lots"], ("error: --batch-size: expected an integer",)),
    Case("unknown-option", ["translate", "--model", "run", "--frobnicate", "hi"], ("error: No such option: --frobnicate (see seq2seq translate --help)",)),
    Case("unknown-command", ["trian", "--config", "tiny.yaml"], ("No such command 'trian'",)),
    Case("input-is-directory", ["translate", "--model", "run", "--input", "run"], ("run: is a directory, expected a text file",)),
    Case("input-not-utf8", ["translate", "--model", "run", "--input", "in.txt"], ("in.txt:2:5: not valid UTF-8 (byte 0xff)",), lambda d: write(d / "in.txt", b"fine\nbad \xff\n")),
    Case("text-and-input", ["translate", "--model", "run", "--input", "toy.en", "hi"], ("error: give TEXT or --input, not both",)),
    Case("eval-unknown-split", ["eval", "--model", "run", "--split", "train"], ("error: --split: 'train' is not one of val, test",)),
    Case("eval-src-without-ref", ["eval", "--model", "run", "--src", "toy.en"], ("error: --src and --ref go together: give both to score a file, or neither to score --split",)),
    Case("eval-misaligned", ["eval", "--model", "run", "--src", "mis.en", "--ref", "mis.de"], ("misaligned corpus: mis.en has 3 lines but mis.de has 2",), lambda d: corpus(d, "mis", ["a", "b", "c"], ["x", "y"])),
    Case("eval-output-is-directory", ["eval", "--model", "run", "--output", "run"], ("error: --output: run is a directory, expected a file name",)),
    Case("eval-output-dir-missing", ["eval", "--model", "run", "--output", "no/such/dir/hyp.txt"], ("error: --output: directory no/such/dir does not exist",)),
    Case("eval-ref-line-count", ["eval", "--model", "run", "--src", "r.en", "--ref", "short.de", "--ref", "r.de"], ("misaligned corpus: r.en has 3 lines but short.de has 2",), lambda d: (corpus(d, "r", ["a", "b", "c"], ["x", "y", "z"]), write(d / "short.de", "x\ny\n"))),
    Case("eval-data-and-src", ["eval", "--model", "run", "--data", "toy.tsv", "--src", "toy.en", "--ref", "toy.de"], ("--data scores a TSV file and --src/--ref parallel files: give one of them",)),
    Case("eval-data-missing", ["eval", "--model", "run", "--data", "nosuch.tsv"], ("nosuch.tsv: file not found",)),
    # -- score: a system's output file against the references -------------------------------------------------
    Case("score-line-count", ["score", "--data", "lex.tsv", "--hyp", "hyp.txt"], ("hyp.txt has 5 lines but lex.tsv has 4 evaluation items",), lambda d: (write(d / "lex.tsv", LEXICON), write(d / "hyp.txt", "a\nb\nc\nd\ne\n"))),
    Case("score-hyp-missing", ["score", "--data", "lex.tsv", "--hyp", "nosuch.txt"], ("nosuch.txt: file not found",), lambda d: write(d / "lex.tsv", LEXICON)),
    Case("score-hyp-not-utf8", ["score", "--data", "lex.tsv", "--hyp", "hyp.txt"], ("hyp.txt:3:3: not valid UTF-8 (byte 0xe9)",), lambda d: (write(d / "lex.tsv", LEXICON), write(d / "hyp.txt", b"a\nb\nca\xe9\nd\n"))),
    Case("score-data-missing", ["score", "--data", "nosuch.tsv", "--hyp", "toy.de"], ("nosuch.tsv: file not found",)),
    Case("score-data-empty", ["score", "--data", "empty.tsv", "--hyp", "toy.de"], ("empty.tsv: corpus is empty",), lambda d: write(d / "empty.tsv", "")),
    Case("score-data-not-utf8", ["score", "--data", "lex.tsv", "--hyp", "toy.de"], ("lex.tsv:2:4: not valid UTF-8 (byte 0xe9)",), lambda d: write(d / "lex.tsv", b"a\tb\ncaf\xe9\tx\n")),
    Case("score-ref-line-count", ["score", "--src", "r.en", "--ref", "r.de", "--ref", "short.de", "--hyp", "r.de"], ("misaligned corpus: r.en has 3 lines but short.de has 2",), lambda d: (corpus(d, "r", ["a", "b", "c"], ["x", "y", "z"]), write(d / "short.de", "x\ny\n"))),
    Case("score-src-without-ref", ["score", "--src", "toy.en", "--hyp", "toy.de"], ("--src and --ref go together",)),
    Case("score-no-references", ["score", "--hyp", "toy.de"], ("nothing to score against: give --data FILE.tsv or --src FILE --ref FILE",)),
    # -- split -----------------------------------------------------------------------------------------------
    Case("split-fraction-over-1", ["split", "lex.tsv", "--valid", "1.5", "--test", "1"], ("--valid: the fraction 1.5 is not between 0 and 1",), lambda d: write(d / "lex.tsv", LEXICON)),
    Case("split-fraction-zero", ["split", "lex.tsv", "--valid", "1", "--test", "0.0"], ("--test: the fraction 0.0 is not between 0 and 1",), lambda d: write(d / "lex.tsv", LEXICON)),
    Case("split-takes-every-source", ["split", "lex.tsv", "--valid", "2", "--test", "0.5"], ("--valid and --test take 2 + 2 of the file's 4 distinct sources: none would be left for training",), lambda d: write(d / "lex.tsv", LEXICON)),
    Case("split-missing-file", ["split", "nosuch.tsv", "--valid", "1", "--test", "1"], ("nosuch.tsv: file not found",)),
    Case("split-line-without-tab", ["split", "lex.tsv", "--valid", "1", "--test", "1"], ("lex.tsv:3: expected source<TAB>target, found no tab",), lambda d: write(d / "lex.tsv", "a\tb\nc\td\ne f\n")),
    Case("split-not-utf8", ["split", "lex.tsv", "--valid", "1", "--test", "1"], ("lex.tsv:2:4: not valid UTF-8 (byte 0xe9)",), lambda d: write(d / "lex.tsv", b"a\tb\ncaf\xe9\tx\n")),
    Case("split-output-exists", ["split", "lex.tsv", "--valid", "1", "--test", "1"], ("val.tsv exists: add --overwrite to replace it",), lambda d: (write(d / "lex.tsv", LEXICON), write(d / "val.tsv", "kept\tas is\n"))),
    Case("nbest-above-beam", ["translate", "--model", "run", "--beam", "2", "--nbest", "3", "hi"], ("error: --nbest 3 needs --beam 3 or more",)),
    Case("nbest-with-attention", ["translate", "--model", "run", "--nbest", "2", "--attention", "-", "hi"], ("error: --attention shows one translation per input; leave out --nbest",)),
]


class Outcome(NamedTuple):
    returncode: int
    stderr: str
    changed: list[str]  # files that existed before and differ (or vanished) after
    appeared: list[str]


def snapshot(directory: Path) -> dict[str, str]:
    return {
        str(p.relative_to(directory)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(directory.rglob("*")) if p.is_file()
    }


def cli(args: list[str], cwd: Path, stdin: bytes = b"") -> subprocess.CompletedProcess:
    return run_cli(*args, cwd=cwd, stdin=stdin, timeout=300)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory holding the tiny corpora, tiny.yaml and run/, a model trained on them (runs/latest names it)."""
    base = tmp_path_factory.mktemp("trained")
    for lang in ("en", "de"):
        lines = (TOY / f"train.{lang}").read_text(encoding="utf-8").splitlines(keepends=True)
        write(base / f"toy.{lang}", "".join(lines[:200]))
        write(base / f"val.{lang}", "".join(lines[200:220]))
    write(base / "tiny.yaml", CONFIG)
    proc = cli(TRAIN, base)
    assert proc.returncode == 0, proc.stderr
    assert (base / "run" / "best.pt").exists() and (base / "runs" / "latest").exists()
    return base


@pytest.fixture(scope="module")
def outcomes(trained: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Outcome]:
    """Run every case in its own copy of the trained directory."""
    works, befores = [], []
    for case in CASES:
        work = tmp_path_factory.mktemp(case.id)
        shutil.copytree(trained, work, dirs_exist_ok=True)
        (work / "runs" / "latest").write_text(str(work / "run") + "\n")
        case.setup(work)
        works.append(work)
        befores.append(snapshot(work))
    procs = run_cli_many([CliJob(tuple(c.args), w, c.stdin, 300) for c, w in zip(CASES, works)], workers=2)
    out = {}
    for case, work, before, proc in zip(CASES, works, befores, procs):
        after = snapshot(work)
        changed = [name for name, digest in before.items() if after.get(name) != digest]
        appeared = [name for name in after if name not in before]
        out[case.id] = Outcome(proc.returncode, proc.stderr, changed, appeared)
    return out


def test_there_are_at_least_thirty_distinct_cases():
    assert len({c.id for c in CASES}) == len(CASES) >= 30


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_gives_one_line_exit_2_and_loses_nothing(case: Case, outcomes: dict[str, Outcome]):
    outcome = outcomes[case.id]
    assert outcome.returncode == 2, outcome.stderr
    assert "Traceback" not in outcome.stderr
    lines = outcome.stderr.splitlines()
    assert len(lines) == 1 and outcome.stderr.endswith("\n"), outcome.stderr
    assert lines[0].startswith("error"), lines[0]
    for fragment in case.expected:
        assert fragment in lines[0], lines[0]
    assert outcome.changed == [], f"modified or removed: {outcome.changed}"
    for name in case.absent:
        assert name not in outcome.appeared


def test_translate_keeps_every_line_whatever_it_holds(trained: Path):
    """N lines in, N lines out through the real CLI: empty, blank, line-breaking controls, CRLF, a huge line."""
    lines = ["the man", "", "   ", "a\x0bb\x0cc", "x\x1cy\x1dz\x1e", "one\u2028two\u2029three", "mid\rline", "\x85", "\t",
             "tab\tin", "\x00nul", "the " * 400, "end"]
    data = ("".join(s + "\n" for s in lines[:-1]) + lines[-1] + "\r\n").encode("utf-8")
    proc = cli(["translate", "--model", "run"], trained, data)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert out.endswith("\n") and out.count("\n") == len(lines)
    outputs = out.split("\n")[:-1]
    assert [o == "" for o in outputs[1:3]] == [True, True] and outputs[0] and outputs[-1]
    assert proc.stderr.splitlines() == [
        "warning: 1 input line(s) longer than decode.max_src_len=250 tokens were truncated (line 12)",
        # control characters and NUL are no words of the vocabulary (data/report.unknown_warning)
        "warning: most tokens of 7 input line(s) are unknown to the model's source vocabulary (line 4, 5, 6, 7, 10, ...): "
        "is the input written and tokenized as in training?",
    ]
