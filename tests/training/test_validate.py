"""Validation during training scores as `eval` does: TSV lines that share a source are one item with several
references, so train.metric and best.pt follow the same numbers."""

from __future__ import annotations

from pathlib import Path

import pytest

from seq2seq.config import config_from_dict
from seq2seq.data.references import group_references, one_reference_each
from seq2seq.data.report import degeneration_warning
from seq2seq.decode.torch_backend import open_checkpoint
from seq2seq.decode.translator import Translator
from seq2seq.training.build import read_corpora
from seq2seq.runfiles import RunFiles
from seq2seq.training.validate import degeneration, metric_value, validation_scores
from tests.decode.test_evaluate import PAIRS, toy_checkpoint


def test_validation_scores_an_item_right_when_it_matches_any_of_its_references() -> None:
    t = Translator.of([open_checkpoint(toy_checkpoint(), "cpu", "fp32", "none")])
    pairs = PAIRS[:6]
    outputs = t.translate([s for s, _ in pairs], beam_size=1)
    assert all(o != ref for o, (_, ref) in zip(outputs, pairs))  # a random model
    lines = [pair for (s, ref), o in zip(pairs, outputs) for pair in ((s, ref), (s, o))]

    grouped = validation_scores(t.backend.model, group_references(lines), t.src, t.tgt, t.backend.device, "fp32", t.cfg.decode, False)
    assert metric_value(grouped, "exact_match") == pytest.approx(100.0) and metric_value(grouped, "cer") == pytest.approx(0.0)
    assert grouped.n_sentences == len(pairs) and grouped.references == 2 and grouped.hypotheses == outputs
    ungrouped = validation_scores(t.backend.model, one_reference_each(lines), t.src, t.tgt, t.backend.device, "fp32", t.cfg.decode, False)
    assert metric_value(ungrouped, "exact_match") == pytest.approx(50.0) and ungrouped.n_sentences == 2 * len(pairs)
    assert (grouped.loss, grouped.n_tokens) == (ungrouped.loss, ungrouped.n_tokens)  # the loss: every pair, grouped or not
    # the degeneration warning reads one output per item against the item's first reference
    assert degeneration(grouped, group_references(lines)) == degeneration_warning(outputs, [ref for _, ref in pairs])


def test_a_runs_validation_data_is_grouped_by_source_for_tsv_only(tmp_path: Path) -> None:
    (tmp_path / "train.tsv").write_text("cat\tK AE1 T\ndog\tD AO1 G\n", encoding="utf-8")
    (tmp_path / "val.tsv").write_text("dog\tD AO1 G\ncat\tK AE1 T\ndog\tD AA1 G\n", encoding="utf-8")
    data = {"train": str(tmp_path / "train.tsv"), "valid": str(tmp_path / "val.tsv"), "format": "tsv"}
    cfg = config_from_dict({"data": data, "train": {"run_dir": str(tmp_path / "run")}})
    valid = read_corpora(cfg, RunFiles(tmp_path / "run")).valid_pairs
    assert [item.refs for item in valid.items] == [("D AO1 G", "D AA1 G"), ("K AE1 T",)] and len(valid.pairs) == 3
