"""scripts/compare_g2p.py's Phonetisaurus half, with a stand-in for Phonetisaurus that answers as 0.3.0 does (one
`word p h o n` line per word, sorted by word, nothing for a word it cannot pronounce): its lines go back into the
test's item order before `seq2seq score` sees them."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

SCRIPT = ROOT / "scripts" / "compare_g2p.py"
WIKIPRON = ROOT.parent / "shared" / "data" / "wikipron" / "deu_latn_broad_filtered.tsv"


def load_script():
    spec = importlib.util.spec_from_file_location("compare_g2p", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up while being made
    spec.loader.exec_module(module)
    return module


def test_predictions_go_back_into_item_order_and_a_missing_word_is_an_empty_line() -> None:
    compare = load_script()
    predicted = "Aal aː l\nQ\tk  uː\nZug t s uː k\n"  # sorted, a tab and doubled spaces, no line for Bär
    hyps, missing = compare.predictions_in_item_order(predicted, ["Zug", "Bär", "Aal", "Q"])
    assert hyps == ["t s uː k", "", "aː l", "k uː"] and missing == 1


# Answers each word with the first pronunciation FAKE_LEXICON gives it, in reverse alphabetical order, and leaves
# out the first word it reads: right answers in the wrong order, and one missing.
FAKE = """#!{python}
import os, sys
args = sys.argv[1:]
model = args[args.index("--model") + 1]
if args[0] == "train":
    open(model, "w").write("fst")
    sys.exit(0)
first = {{}}
for line in open(os.environ["FAKE_LEXICON"], encoding="utf-8"):
    word, pron = line.rstrip("\\n").split("\\t")
    first.setdefault(word, pron)
words = [w.strip() for w in sys.stdin.read().splitlines()]
for word in sorted(words[1:], reverse=True):
    print(word, first[word])
"""


@pytest.mark.skipif(not WIKIPRON.exists(), reason="needs ../shared/data/wikipron's German list")
def test_the_phonetisaurus_half_scores_its_answers_in_the_test_s_order(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    fake = venv / "bin" / "phonetisaurus"
    fake.write_text(FAKE.format(python=sys.executable), encoding="utf-8")
    fake.chmod(0o755)
    seq2seq = tmp_path / "seq2seq"
    seq2seq.write_text(f'#!/bin/sh\nPYTHONPATH="{ROOT}" exec "{sys.executable}" -m seq2seq "$@"\n', encoding="utf-8")
    seq2seq.chmod(0o755)
    data, out = tmp_path / "data", tmp_path / "out"
    env = {**os.environ, "PHONETISAURUS_VENV": str(venv), "SEQ2SEQ": str(seq2seq), "WIKIPRON_TSV": str(WIKIPRON),
           "FAKE_LEXICON": str(data / "test.tsv"), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--only", "phonetisaurus", "--data", str(data), "--out", str(out)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    (row,) = json.loads((out / "compare.json").read_text(encoding="utf-8"))["rows"]
    assert row["details"]["words"] == 4000 and row["details"]["no_pronunciation"] == 1
    assert row["exact_match"] == pytest.approx(100 * 3999 / 4000)  # every word but the left-out one is right
    assert row["word_error"] == pytest.approx(100 / 4000)
    assert "| Phonetisaurus 0.3.0, `phonetisaurus train` defaults |" in proc.stdout
