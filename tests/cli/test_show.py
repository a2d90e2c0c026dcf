"""The terminal heatmap: shades follow the attention weights; numbered columns when the tokens do not fit."""

from __future__ import annotations

from seq2seq.cli.show import SHADES, terminal_heatmap
from seq2seq.data.results import Result


def test_terminal_heatmap_shades_follow_the_weights() -> None:
    attention = [[0.9, 0.05, 0.05], [0.1, 0.6, 0.3], [0.0, 0.3, 0.7]]
    r = Result("a bb", "x y", -1.0, ["x", "y"], ["a", "bb", "<eos>"], attention)
    lines = terminal_heatmap(r, width=80).splitlines()
    header, body = lines[0], lines[1:4]
    assert header.split() == ["a", "bb", "<eos>"]
    assert [line.split()[0] for line in body] == ["x", "y", "<eos>"]
    starts = [header.index(token) for token in ("a", "bb", "<eos>")]
    for line, weights in zip(body, attention):
        shades = [SHADES.index(line[p]) for p in starts]
        darkest = max(range(3), key=lambda j: weights[j])
        assert shades[darkest] == max(shades) and shades[darkest] > 0
        assert all(weights[i] <= weights[j] for i in range(3) for j in range(3) if shades[i] < shades[j])
    assert body[0][starts[0]] == SHADES[-1] and body[0][starts[1]] == " "
    narrow = terminal_heatmap(r._replace(src_tokens=["word"] * 2 + ["<eos>"]), width=12).splitlines()
    assert "1:word  2:word  3:<eos>" in narrow  # numbered columns and a legend when the tokens do not fit
