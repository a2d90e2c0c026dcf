"""The metric table (seq2seq/metric.py): each metric's name, label and direction said once, and the two rates a G2P
user misread under a bare "WER" (issue 32) printed under names of their own."""

from __future__ import annotations

import pytest

from seq2seq import metric
from seq2seq.config import ConfigError, config_from_dict


def test_every_error_rate_is_lower_is_better_ter_included() -> None:
    assert set(metric.LOWER_IS_BETTER) == {"ter", "word_error", "cer", "wer"}
    assert metric.improves(10.0, 12.0, "ter") and not metric.improves(12.0, 10.0, "ter")
    assert metric.improves(60.0, 55.0, "exact_match") and metric.improves(1.0, None, "wer")


def test_train_metric_takes_what_validation_computes() -> None:
    assert metric.SELECTABLE == ("bleu", "chrf", "exact_match", "cer", "wer")
    assert config_from_dict({"train": {"metric": "cer"}}).train.metric == "cer"
    with pytest.raises(ConfigError, match="train.metric"):
        config_from_dict({"train": {"metric": "ter"}})


def test_no_rate_is_printed_as_a_bare_wer() -> None:
    assert metric.label("wer") == "token error" and metric.label("exact_match") == "exact match"
    assert metric.said("exact_match", 65.15) == "exact match 65.15 (word error 34.85)"
    assert metric.said("bleu", 31.234) == "BLEU 31.23"
    lines = metric.rate_lines(65.15, 5.1, 7.88)
    assert lines[0].startswith("exact match  65.15   ") and lines[1].startswith("word error   34.85   ")
    assert lines[2].startswith("CER          5.10   ") and lines[3].startswith("token error  7.88   ")
    assert not any("WER" in line for line in lines)


def test_the_labels_of_info_validation_and_plot_are_the_tables() -> None:
    from seq2seq.tools.plot import score_curves
    from seq2seq.training.validate import metric_label

    assert metric_label is metric.label
    assert ("val_wer", "val token error (lower is better)", "^-") in score_curves("wer")
    assert ("val_exact_match", "val exact match (100 - word error)", "^-") in score_curves("exact_match")
