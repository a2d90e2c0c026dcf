"""The metrics, each said once: its name (the key of train.metric, metrics.jsonl's `val_<name>` and `eval --json`),
the label logs, tables and plots print, and whether lower is better. Base layer, no torch: config, the schedule,
validation, info, plot, tune and the scorer all read this table, so a metric's name and direction cannot drift.

Two rates are easy to misread, so they are never printed under a bare "WER" (issue 32): `wer`, the edit distance per
reference whitespace token, is the token error rate (a phoneme in a G2P lexicon, a word in text), and `word_error`,
100 - exact match, is the share of items that are no reference at all: the word error rate of G2P papers
(SIGMORPHON, Yoyodyne), the sentence error rate of translation.
"""

from __future__ import annotations

from typing import NamedTuple


class Metric(NamedTuple):
    name: str  # the key: train.metric, val_<name> in metrics.jsonl, eval --json
    label: str  # what the log, tables and plots print
    lower_is_better: bool
    meaning: str  # one phrase for eval's output and the docs
    selectable: bool = True  # can be train.metric (what validation computes)


METRICS: dict[str, Metric] = {m.name: m for m in (
    Metric("bleu", "BLEU", False, "sacreBLEU"),
    Metric("chrf", "chrF", False, "sacreBLEU chrF"),
    Metric("ter", "TER", True, "sacreBLEU translation edit rate", selectable=False),
    Metric("exact_match", "exact match", False, "% of outputs equal to a reference"),
    Metric("word_error", "word error", True, "100 - exact match: % of outputs that are no reference", selectable=False),
    Metric("cer", "CER", True, "% edit distance per reference character, the closest reference"),
    Metric("wer", "token error", True, "% edit distance per reference token (a phoneme in G2P, a word in text), the closest reference"),
)}
SELECTABLE = tuple(name for name, m in METRICS.items() if m.selectable)  # train.metric's choices
LOWER_IS_BETTER = tuple(name for name, m in METRICS.items() if m.lower_is_better)


def label(metric: str) -> str:
    """How the log and the CLI name a metric: `bleu` -> `BLEU`, `wer` -> `token error`."""
    return METRICS[metric].label if metric in METRICS else metric


def word_error(exact_match: float) -> float:
    """Word error (G2P's word error rate, translation's sentence error rate): 100 - exact match."""
    return 100.0 - exact_match


def said(metric: str, value: float) -> str:
    """`metric` and its value as a log line says it; exact match with the word error beside it
    ("exact match 65.15 (word error 34.85)"), which is how G2P users read it."""
    text = f"{label(metric)} {value:.2f}"
    return text + f" (word error {word_error(value):.2f})" if metric == "exact_match" else text


def improves(score: float, best: float | None, metric: str) -> bool:
    """Is `score` better than `best` (None: nothing yet, so yes) for `metric`?"""
    if best is None:
        return True
    return score < best if metric in LOWER_IS_BETTER else score > best


def rate_lines(exact_match: float, cer: float, wer: float) -> list[str]:
    """eval's and score's lines for the rates, each named so that no one reads one rate for another."""
    return [
        f"exact match  {exact_match:.2f}   ({METRICS['exact_match'].meaning})",
        f"word error   {word_error(exact_match):.2f}   ({METRICS['word_error'].meaning})",
        f"CER          {cer:.2f}   ({METRICS['cer'].meaning})",
        f"token error  {wer:.2f}   ({METRICS['wer'].meaning}; JSON key wer)",
    ]
