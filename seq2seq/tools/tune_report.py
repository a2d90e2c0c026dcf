"""What `seq2seq tune` shows at the end: a table of the study's trials (each one's score at each rung) and a plot of
each trial's score by minutes of training."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Sequence

from seq2seq.errors import ConfigError
from seq2seq.metric import LOWER_IS_BETTER
from seq2seq.metric import label as metric_label

log = logging.getLogger("seq2seq")


def score_of(trial: Any) -> float | None:
    """A trial's best validation score: its value, or for a pruned or failed trial the best its run reached."""
    best = trial.user_attrs.get("best")
    return float(best) if isinstance(best, (int, float)) else trial.value


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _stopped(trial: Any, note: str) -> str:
    """The table's last column: when the pruner stopped the trial (and `note`: parked there, or whose run went on),
    or why it has no such time."""
    state = trial.state.name.lower()
    if state == "pruned":
        return f"{trial.user_attrs.get('pruned_at') or 0:.2f} min{note}"
    return "-" if state == "complete" else state


def rung_column(step: int) -> str:
    """A rung's column, from its step (milliseconds of training)."""
    return f"at {step / 60000:.2f} min"


def trials_table(
    trials: Sequence[Any], metric: str, best_number: int | None, rungs: Sequence[int] = (), notes: dict[int, str] | None = None,
) -> str:
    """One row a trial: its number (* the best), settings, its score at each rung (the best it had reached by that
    second of training; `rungs`: their steps, milliseconds), its best score, minutes of training, updates, pruned at."""
    keys = list(dict.fromkeys(key for t in trials for key in t.params))
    short = [key.split(".", 1)[-1] for key in keys]  # hidden_size, not model.hidden_size, where no other key shares it
    names = [s if short.count(s) == 1 else key for s, key in zip(short, keys)]
    head = ["trial", *names, *(rung_column(r) for r in rungs), f"val {metric_label(metric)}", "minutes", "updates", "pruned at"]
    rows = [head]
    for t in trials:
        score, minutes = score_of(t), t.user_attrs.get("minutes")
        at = [t.intermediate_values.get(r) for r in rungs]
        rows.append([
            f"{t.number}{' *' if t.number == best_number else ''}", *(_cell(t.params.get(k)) for k in keys),
            *("-" if v is None else f"{v:.2f}" for v in at),
            "-" if score is None else f"{score:.2f}", "-" if minutes is None else f"{minutes:.2f}",
            _cell(t.user_attrs.get("updates")), _stopped(t, (notes or {}).get(t.number, "")),
        ])
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows)


def plot_study(trials: Sequence[Any], metric: str, path: Path, title: str, rungs: Sequence[int] = ()) -> Path | None:
    """Draw each trial's score by minutes of training into `path` (its best so far at each validation, the same
    seconds for every trial, the rungs marked); without matplotlib (the plot extra), say so and draw nothing."""
    from seq2seq.tools.plot import pyplot

    try:
        pyplot()
    except ConfigError as e:
        log.info("%s skipped: %s", path.name, e)
        return None
    done = [t for t in trials if t.state.name in ("COMPLETE", "PRUNED") and t.intermediate_values]
    best = max((t for t in done if t.state.name == "COMPLETE"), key=lambda t: t.value if metric not in LOWER_IS_BETTER else -t.value, default=None)
    curves = [(t.number, sorted((step / 60000, v) for step, v in t.intermediate_values.items()), t.state.name == "PRUNED") for t in done]
    plot_trial_curves(curves, [r / 60000 for r in rungs], None if best is None else best.number, path, title,
                      f"val {metric_label(metric)}" + (" (100 - word error)" if metric == "exact_match" else ""),
                      metric in LOWER_IS_BETTER)
    return path


def plot_trial_curves(
    curves: Sequence[tuple[int, Sequence[tuple[float, float]], bool]], rungs: Sequence[float], best: int | None,
    path: Path, title: str, label: str, lower_is_better: bool,
) -> None:
    """One line a trial (number, its (minutes, score) points, pruned): completed trials in colour, pruned ones grey
    ending in an x where they were stopped, each ending in its number, the best trial bold, the rungs as dashed
    vertical lines."""
    from seq2seq.tools.plot import DPI, check_image_path, finish_axis, pyplot, save

    check_image_path(path)
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(9.0, 5.0), dpi=DPI)
    for number, points, pruned in curves:
        xs, ys = zip(*points)
        if pruned:
            ax.plot(xs, ys, "-", color="gray", alpha=0.5, linewidth=1)
            ax.plot(xs[-1:], ys[-1:], "x", color="gray")
        else:
            ax.plot(xs, ys, "-o", markersize=3, linewidth=2.5 if number == best else 1.2,
                    label=f"trial {number}" + (" (best)" if number == best else ""))
        ax.annotate(str(number), (xs[-1], ys[-1]), xytext=(4, 0), textcoords="offset points", fontsize=7, va="center")
    for i, minute in enumerate(rungs):
        ax.axvline(minute, linestyle="--", color="black", alpha=0.3, label="rungs" if i == 0 else None)
    ax.set_xlabel("minutes of training")
    ax.set_ylabel(label + (" (lower is better)" if lower_is_better else "") + ", best so far")
    finish_axis(ax, bool(curves), "no trials yet")
    from matplotlib.ticker import AutoLocator

    ax.xaxis.set_major_locator(AutoLocator())  # minutes, not steps: fractions of one too
    ax.set_xlim(left=0)
    ax.set_title(title + ("; pruned trials grey" if any(pruned for _, _, pruned in curves) else ""))
    save(fig, path)
