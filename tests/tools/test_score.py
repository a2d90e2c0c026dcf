"""`seq2seq score`: any system's output file scored with eval's metrics and items, without a model and without torch;
on eval's own --output file it gives eval's numbers exactly."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from seq2seq.config import config_from_dict
from seq2seq.data.references import group_references
from seq2seq.tools.score import score_outputs
from tests.conftest import ROOT, invoke, strict_json, train_here

# 4 items: dog has two pronunciations, and its second line comes after bee's (items in first-seen order).
LEXICON = "cat\tK AE1 T\ndog\tD AO1 G\nbee\tB IY1\ndog\tD AA1 G\nowl\tAW1 L\n"
METRICS = ("bleu", "chrf", "ter", "exact_match", "cer", "wer", "n_sentences", "references", "signatures")


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_items_are_the_distinct_sources_in_first_seen_order_and_any_reference_counts() -> None:
    items = group_references([tuple(line.split("\t")) for line in LEXICON.splitlines()])
    right = score_outputs(["K AE1 T", "D AA1 G", "B IY1", "AW1 L"], items)  # dog's second pronunciation
    assert (right.exact_match, right.cer, right.wer, right.n_sentences, right.references) == (100.0, 0.0, 0.0, 4, 2)
    shuffled = score_outputs(["D AA1 G", "K AE1 T", "B IY1", "AW1 L"], items)  # cat and dog swapped: two wrong
    assert shuffled.exact_match == 50.0 and shuffled.wer > 0


def test_score_prints_eval_s_lines_and_json(tmp_path: Path, capsys, monkeypatch) -> None:
    data, hyp = write(tmp_path / "test.tsv", LEXICON), write(tmp_path / "hyp.txt", "K AE1 T\nD AO1 G\nB IY\nAW1 L\n")
    code, out, err = invoke(capsys, monkeypatch, "score", "--data", str(data), "--hyp", str(hyp), "--json")
    assert code == 0, err
    report = strict_json(out)
    assert (report["exact_match"], report["word_error"], report["n_sentences"], report["references"]) == (75.0, 25.0, 4, 2)
    assert report["wer"] == pytest.approx(100 * 1 / 10)  # B IY for B IY1: one substitution in 3 + 3 + 2 + 2 tokens
    assert report["signatures"]["bleu"].startswith("nrefs:var|")  # sacreBLEU saw the varying number of references
    code, out, err = invoke(capsys, monkeypatch, "score", "--data", str(data), "--hyp", str(hyp))
    assert code == 0, err
    assert "exact match  75.00   " in out and "word error   25.00   " in out and f"token error  {report['wer']:.2f}   " in out


def test_score_needs_no_torch(tmp_path: Path) -> None:
    blocker = tmp_path / "no_torch" / "torch"
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text('raise ModuleNotFoundError("torch is blocked here", name="torch")\n', encoding="utf-8")
    data, hyp = write(tmp_path / "test.tsv", LEXICON), write(tmp_path / "hyp.txt", "K AE1 T\nD AO1 G\nB IY1\nAW1 L\n")
    env = {**os.environ, "PYTHONPATH": f"{blocker.parent}{os.pathsep}{ROOT}"}
    proc = subprocess.run(
        [sys.executable, "-m", "seq2seq", "score", "--data", str(data), "--hyp", str(hyp), "--json"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["exact_match"] == 100.0


SYMBOLS = {"a": "AH1", "b": "B", "c": "K", "d": "D", "e": "IY0", "f": "F"}


@pytest.fixture(scope="module")
def g2p_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A few steps of characters -> symbols: a model whose outputs are partly right, so every metric is in play."""
    import random

    rng = random.Random(4)
    words = ["".join(rng.choice(list(SYMBOLS)) for _ in range(rng.randint(2, 5))) for _ in range(200)]
    work = tmp_path_factory.mktemp("score_g2p")
    write(work / "train.tsv", "".join(f"{w}\t{' '.join(SYMBOLS[c] for c in w)}\n" for w in words))
    cfg = config_from_dict({
        "data": {"train": str(work / "train.tsv"), "valid": str(work / "train.tsv"), "format": "tsv", "src_level": "char", "tgt_level": "space"},
        "model": {"emb_size": 16, "hidden_size": 24, "attention": "luong", "dropout": 0.0},
        "train": {"batch_size": 20, "max_steps": 30, "valid_every": 30, "lr": 0.02, "seed": 3, "run_dir": str(work / "run"), "num_threads": 1},
        "decode": {"batch_size": 64, "max_len_b": 4},
    })
    train_here(cfg, work / "run", work)
    return work / "run" / "best.pt"


def test_score_on_eval_s_output_gives_eval_s_numbers_exactly(g2p_model: Path, tmp_path: Path, capsys, monkeypatch) -> None:
    """A TSV file with several pronunciations per word, and parallel files with two reference files."""
    words = ["bad", "face", "cab", "dead", "fee", "bead", "ace", "deaf"]
    lines = [f"{w}\t{' '.join(SYMBOLS[c] for c in w)}" for w in words] + ["bad\tB AH1 T", "fee\tF IY1", "cab\tK AE1 B"]
    data = write(tmp_path / "test.tsv", "\n".join(lines) + "\n")
    src = write(tmp_path / "test.src", "".join(w + "\n" for w in words))
    ref1 = write(tmp_path / "test.ref1", "".join(" ".join(SYMBOLS[c] for c in w) + "\n" for w in words))
    ref2 = write(tmp_path / "test.ref2", "".join(" ".join(SYMBOLS[c] for c in w[::-1]) + "\n" for w in words))
    for refs in (["--data", str(data)], ["--src", str(src), "--ref", str(ref1), "--ref", str(ref2)]):
        hyp = tmp_path / "hyp.txt"
        code, out, err = invoke(capsys, monkeypatch, "eval", "--model", str(g2p_model), *refs, "--beam", "2", "--json", "-q", "-o", str(hyp))
        assert code == 0, err
        expected = {key: strict_json(out)[key] for key in METRICS}
        assert 0 < expected["exact_match"] < 100 and expected["references"] == 2, expected  # partly right; several references
        code, out, err = invoke(capsys, monkeypatch, "score", *refs, "--hyp", str(hyp), "--json")
        assert code == 0, err
        assert {key: strict_json(out)[key] for key in METRICS} == expected
