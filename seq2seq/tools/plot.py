"""Pictures (the optional `plot` extra, matplotlib): training curves from metrics.jsonl and attention heatmaps, and the
helpers tools/tune_report draws a study's trials.png with.

Figures are drawn off-screen (Agg) and saved at a fixed size: `CURVES_SIZE` inches for curves and
`attention_size(...)` for a heatmap, both at `DPI` dots per inch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from seq2seq.config import config_from_dict, read_yaml
from seq2seq.errors import ConfigError, install_hint
from seq2seq.training.metrics import latest_per_step
from seq2seq.runfiles import RunFiles
from seq2seq.metric import LOWER_IS_BETTER, SELECTABLE, label

IMAGE_SUFFIXES = (".png", ".svg", ".pdf")
DPI = 100
CURVES_SIZE = (11.0, 4.0)  # inches: 1100 x 400 pixels


def pyplot() -> Any:
    """matplotlib.pyplot on the off-screen backend, or a ConfigError that says how to install it."""
    try:
        import matplotlib
    except ImportError:
        raise ConfigError(f"plotting needs matplotlib, which is not installed: {install_hint('plot')}") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def check_image_path(path: Path) -> None:
    if path.suffix.lower() not in IMAGE_SUFFIXES:
        raise ConfigError(f"{path}: expected an image file name ending in {', '.join(IMAGE_SUFFIXES)}")


SCORE_CURVES = (("val_bleu", "val BLEU", "o-"), ("val_chrf", "val chrF", "s--"))  # drawn for every run


def score_curves(metric: str) -> list[tuple[str, str, str]]:
    """The validation scores drawn on the right, (record key, label, style): BLEU and chrF, and `metric`
    (train.metric) where it is exact match or an error rate, what a G2P or transliteration run follows instead."""
    curves = list(SCORE_CURVES)
    if metric in SELECTABLE and f"val_{metric}" not in {key for key, _, _ in SCORE_CURVES}:
        better = " (lower is better)" if metric in LOWER_IS_BETTER else " (100 - word error)" if metric == "exact_match" else ""
        curves.append((f"val_{metric}", f"val {label(metric)}{better}", "^-"))
    return curves


def run_metric(files: RunFiles) -> str:
    """The run's train.metric, read from its config.yaml; `bleu` where it has none or an unreadable one (BLEU and chrF
    are drawn for every run)."""
    try:
        return config_from_dict(read_yaml(files.config)).train.metric if files.config.exists() else "bleu"
    except ConfigError:
        return "bleu"


def plot_curves(records: Sequence[dict[str, Any]], path: Path, title: str, metric: str = "bleu") -> None:
    """Train and validation loss (left) and validation BLEU / chrF, and `metric` where `score_curves` draws it (right),
    against the update step."""
    check_image_path(path)
    plt = pyplot()

    fig, (ax_loss, ax_score) = plt.subplots(1, 2, figsize=CURVES_SIZE, dpi=DPI, sharex=True)
    for key, label, style in (("train_loss", "train loss", "-"), ("val_loss", "val loss", "o-")):
        steps, values = latest_per_step(list(records), key)
        if steps:
            ax_loss.plot(steps, values, style, label=label, markersize=4)
    if all(v > 0 for line in ax_loss.get_lines() for v in line.get_ydata()) and ax_loss.get_lines():
        ax_loss.set_yscale("log")  # the loss falls by orders of magnitude; a linear axis flattens the tail
    ax_loss.set_xlabel("step")
    ax_loss.set_ylabel("loss per target token (log scale)" if ax_loss.get_yscale() == "log" else "loss per target token")
    ax_loss.set_title("loss")
    for key, label, style in score_curves(metric):
        steps, values = latest_per_step(list(records), key)
        if steps:
            ax_score.plot(steps, values, style, label=label, markersize=4)
    ax_score.set_xlabel("step")
    ax_score.set_ylabel("score (0-100)")
    ax_score.set_title("validation")
    last_step = max((r["step"] for r in records), default=1)
    ax_loss.set_xlim(0, max(last_step, 1) * 1.03)
    for ax in (ax_loss, ax_score):
        finish_axis(ax, bool(ax.get_legend_handles_labels()[0]), "no records yet")
    fig.suptitle(title)
    save(fig, path)


def finish_axis(ax: Any, has_data: bool, empty: str) -> None:
    """Integer steps on x, a light grid, and a legend, or `empty` written across an axis with nothing drawn."""
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    if has_data:
        ax.legend()
    else:
        ax.text(0.5, 0.5, empty, ha="center", va="center", transform=ax.transAxes, color="gray")


def save(fig: Any, path: Path) -> None:
    """Write the figure (its folder made if need be) and free it."""
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI)
    pyplot().close(fig)


def attention_size(n_src: int, n_tgt: int) -> tuple[float, float]:
    """Figure size in inches for a heatmap of `n_tgt` rows and `n_src` columns: roomy enough for the labels."""
    return (2.0 + 0.5 * max(n_src, 4), 1.5 + 0.4 * max(n_tgt, 4))


def plot_attention(
    src_tokens: Sequence[str], tgt_tokens: Sequence[str], weights: Sequence[Sequence[float]], path: Path, title: str = ""
) -> None:
    """Heatmap of `weights` (len(tgt_tokens), len(src_tokens)): source tokens along x, target tokens down y."""
    check_image_path(path)
    if len(weights) != len(tgt_tokens) or any(len(row) != len(src_tokens) for row in weights):
        raise ValueError("attention weights must have one row per target token and one column per source token")
    plt = pyplot()
    fig, ax = plt.subplots(figsize=attention_size(len(src_tokens), len(tgt_tokens)), dpi=DPI)
    image = ax.imshow(weights, cmap="Blues", vmin=0.0, vmax=1.0, aspect="auto")
    ax.set_xticks(range(len(src_tokens)), list(src_tokens), rotation=60, ha="right", rotation_mode="anchor")
    ax.set_yticks(range(len(tgt_tokens)), list(tgt_tokens))
    ax.set_xlabel("source")
    ax.set_ylabel("output")
    fig.colorbar(image, ax=ax, fraction=0.04, pad=0.02, label="attention weight")
    if title:
        ax.set_title(title, fontsize=10)
    save(fig, path)
