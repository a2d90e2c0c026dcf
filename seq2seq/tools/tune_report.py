"""What `seq2seq tune` shows at the end: a table of the study's trials and a plot of the metric by trial."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Sequence

from seq2seq.errors import ConfigError
from seq2seq.training.schedule import LOWER_IS_BETTER
from seq2seq.training.validate import metric_label

log = logging.getLogger("seq2seq")


def score_of(trial: Any) -> float | None:
    """A trial's best validation score: its value, or for a pruned or failed trial the best its run reached."""
    best = trial.user_attrs.get("best")
    return float(best) if isinstance(best, (int, float)) else trial.value


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _stopped(trial: Any) -> str:
    """The table's last column: when the pruner stopped the trial, or why it has no such time."""
    state = trial.state.name.lower()
    if state == "pruned":
        return f"{trial.user_attrs.get('pruned_at') or 0:.2f} min"
    return "-" if state == "complete" else state


def trials_table(trials: Sequence[Any], metric: str, best_number: int | None) -> str:
    """One row a trial: its number (* the best), settings, best score, minutes of training, updates, pruned at."""
    keys = list(dict.fromkeys(key for t in trials for key in t.params))
    short = [key.split(".", 1)[-1] for key in keys]  # hidden_size, not model.hidden_size, where no other key shares it
    names = [s if short.count(s) == 1 else key for s, key in zip(short, keys)]
    head = ["trial", *names, f"val {metric_label(metric)}", "minutes", "updates", "pruned at"]
    rows = [head]
    for t in trials:
        score, minutes = score_of(t), t.user_attrs.get("minutes")
        rows.append([
            f"{t.number}{' *' if t.number == best_number else ''}", *(_cell(t.params.get(k)) for k in keys),
            "-" if score is None else f"{score:.2f}", "-" if minutes is None else f"{minutes:.2f}",
            _cell(t.user_attrs.get("updates")), _stopped(t),
        ])
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows)


def plot_study(trials: Sequence[Any], metric: str, path: Path, title: str) -> Path | None:
    """Draw the metric by trial into `path`; without matplotlib (the plot extra), say so and draw nothing."""
    from seq2seq.tools.plot import plot_trials, pyplot

    try:
        pyplot()
    except ConfigError as e:
        log.info("%s skipped: %s", path.name, e)
        return None
    points = [(t.number, score_of(t), t.state.name == "PRUNED") for t in trials if t.state.name in ("COMPLETE", "PRUNED")]
    plot_trials([(n, s, pruned) for n, s, pruned in points if s is not None], path, title, f"val {metric_label(metric)}", metric in LOWER_IS_BETTER)
    return path
