"""scripts/g2p_errors.py: the folds of transcription conventions, and the table it prints for two systems."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT

SCRIPT = ROOT / "scripts" / "g2p_errors.py"


def load_script():
    spec = importlib.util.spec_from_file_location("g2p_errors", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_folds_drop_tie_bars_glottal_stops_and_write_syllabic_consonants_as_schwa() -> None:
    fold = load_script().fold
    assert fold("ʔ a n t͡s uː k") == "a n t s uː k"
    assert fold("b aː d n̩") == "b aː d ə n" and fold("h a n d l̩") == "h a n d ə l"
    assert fold("a ʔ a") == "a a" and fold("a ɪ̯") == "a ɪ̯"  # a non-syllabic mark (U+032F) is a pronunciation, kept


def test_word_errors_by_group_folded_and_the_oracle(tmp_path: Path) -> None:
    test = tmp_path / "test.tsv"
    test.write_text("Zug\tt͡s uː k\nZug\tt s uː k\nAal\taː l\nBadeanzugsverkäufer\tb aː d ə n\n", encoding="utf-8")
    (tmp_path / "a.hyp").write_text("t s uː k\naː l l\nb aː d ə n\n", encoding="utf-8")  # right, wrong, right
    (tmp_path / "b.hyp").write_text("t͡s uː k\naː\nb aː d n̩\n", encoding="utf-8")  # right, wrong, right only folded
    proc = subprocess.run([sys.executable, str(SCRIPT), "--test", str(test), "--hyp", f"a={tmp_path / 'a.hyp'}",
                           "--hyp", f"b={tmp_path / 'b.hyp'}"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert "| all words | 3 | 33.33 | 33.33 | 66.67 | 33.33 |" in lines
    assert "| several pronunciations | 1 | 0.00 | 0.00 | 0.00 | 0.00 |" in lines
    assert "| 16+ letters | 1 | 0.00 | 0.00 | 100.00 | 0.00 |" in lines and "| 8-11 letters | 0 | - | - | - | - |" in lines
    assert lines[-1] == "neither system right (the oracle's word error): 33.33"


def test_a_short_hypothesis_file_is_refused(tmp_path: Path) -> None:
    test = tmp_path / "test.tsv"
    test.write_text("a\tb\nc\td\n", encoding="utf-8")
    (tmp_path / "h").write_text("b", encoding="utf-8")
    proc = subprocess.run([sys.executable, str(SCRIPT), "--test", str(test), "--hyp", f"x={tmp_path / 'h'}"], capture_output=True, text=True)
    assert proc.returncode == 2 and "1 lines for 2 test words" in proc.stderr


def test_decode_sweep_gives_evals_word_error_per_setting(tiny_run: Path) -> None:
    import json

    from tests.conftest import run_cli, toy_pairs

    pairs = toy_pairs("val", 40)
    data = tiny_run / "items.tsv"
    data.write_text("".join(f"{s}\t{t}\n" for s, t in pairs) + f"{pairs[0][0]}\tanother reference\n", encoding="utf-8")
    model = str(tiny_run / "runs" / "tiny")
    from seq2seq.config import load_config

    alpha = load_config(tiny_run / "runs" / "tiny" / "config.yaml").decode.length_penalty  # eval's, which has no option for it
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "decode_sweep.py"), "--model", model, "--data", str(data),
                           "--setting", "1:1", "--setting", f"3:{alpha}"], capture_output=True, text=True, cwd=tiny_run)
    assert proc.returncode == 0, proc.stderr
    rows = [line.split(" | ") for line in proc.stdout.splitlines()[2:]]
    assert [(r[0], r[1]) for r in rows] == [("| 1", "1"), ("| 3", f"{alpha:g}")]
    for beam, row in zip((1, 3), rows):
        scored = json.loads(run_cli("eval", "--model", model, "--data", str(data), "--beam", str(beam), "--precision", "fp32", "--json", cwd=tiny_run).stdout)
        assert row[2] == f"{scored['word_error']:.2f}"  # the same items, references and decoding as eval (fp32 both)
