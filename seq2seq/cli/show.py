"""How `translate` shows attention: a heatmap of shaded blocks in the terminal, or one image per input."""

from __future__ import annotations

import shutil
from pathlib import Path

from seq2seq.data.results import Result, display_token

_LABEL_WIDTH = 12  # longest row label of the terminal heatmap
_MAX_COLUMN = 8  # widest source column of the terminal heatmap

SHADES = " ░▒▓█"  # attention weight 0 .. 1 in five steps


def attention_image_path(base: Path, index: int, count: int) -> Path:
    """Where the attention of input `index` (from 0) of `count` is drawn: `base` itself for one input, else BASE-i.EXT."""
    return base if count == 1 else base.with_name(f"{base.stem}-{index + 1}{base.suffix}")


def save_attention_plot(result: Result, path: Path) -> None:
    """Draw the attention of `result` into the image `path` (needs the plot extra), titled `input → output`."""
    from seq2seq.tools.plot import plot_attention

    title = f"{result.input}  \u2192  {result.output}"
    plot_attention(
        [display_token(x) for x in result.src_tokens], [display_token(x) for x in result.attention_rows], result.attention, path,
        title if len(title) <= 90 else title[:89] + "\u2026",
    )


def _shade(weight: float) -> str:
    return SHADES[min(int(weight * len(SHADES)), len(SHADES) - 1)]


def terminal_heatmap(result: Result, width: int | None = None) -> str:
    """The attention of `result` as rows of shaded blocks: a row per target token, a column per source token.

    Columns are as wide as their source token (up to 8 characters); when that does not fit in `width`
    (default: the terminal's), columns shrink to two characters, numbered, with a legend of the tokens.
    """
    if not result.attention:
        return ""
    width = width or shutil.get_terminal_size((100, 24)).columns
    rows = [display_token(t) for t in result.attention_rows]
    cols = [display_token(t) for t in result.src_tokens]
    label = min(max(len(r) for r in rows), _LABEL_WIDTH)
    widths = [min(max(len(c), 2), _MAX_COLUMN) for c in cols]
    legend = ""
    if label + 1 + sum(w + 1 for w in widths) > width:
        widths = [2] * len(cols)
        legend = "  ".join(f"{i}:{c}" for i, c in enumerate(cols, start=1))
        cols = [str(i)[-2:] for i in range(1, len(cols) + 1)]
    lines = [" " * label + " " + " ".join(c[:w].ljust(w) for c, w in zip(cols, widths))]
    for name, weights in zip(rows, result.attention):
        cells = " ".join(_shade(x) * w for x, w in zip(weights, widths))
        lines.append(f"{name[:label].rjust(label)} {cells}")
    if legend:
        lines.append(legend)
    lines.append(f"{' ' * label} weight: {' '.join(f'{s}{s}={i / len(SHADES):.1f}+' for i, s in enumerate(SHADES) if i)}")
    return "\n".join(lines)

