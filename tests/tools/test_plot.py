"""Pictures: training curves and attention heatmaps as PNGs of the expected size, and one-line errors without
metrics or without matplotlib."""

from __future__ import annotations

import json
import struct
import sys
from pathlib import Path

import pytest

from tests.conftest import invoke, needs_matplotlib

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def run(api_run: Path) -> Path:
    return api_run


def png_size(path: Path) -> tuple[int, int]:
    """Width and height from the IHDR chunk, after checking the PNG signature."""
    head = path.read_bytes()[:24]
    assert head[:8] == PNG_SIGNATURE, f"{path} is not a PNG"
    assert head[12:16] == b"IHDR"
    width, height = struct.unpack(">II", head[16:24])
    return width, height


@needs_matplotlib
def test_plot_curves_writes_a_png_of_the_expected_size(run: Path, tmp_path: Path, capsys, monkeypatch) -> None:
    from seq2seq.tools.plot import CURVES_SIZE, DPI

    out = tmp_path / "curves.png"
    code, stdout, stderr = invoke(capsys, monkeypatch, "plot", "curves", "--model", str(run), "-o", str(out))
    assert code == 0, stderr
    assert png_size(out) == (round(CURVES_SIZE[0] * DPI), round(CURVES_SIZE[1] * DPI))
    assert stdout == ""  # the path is reported on stderr
    # without -o: into the run directory; a .pt file names its run directory too
    code, _, stderr = invoke(capsys, monkeypatch, "plot", "curves", "--model", str(run / "best.pt"))
    assert code == 0, stderr
    assert png_size(run / "curves.png")[0] > 0


def test_plot_curves_without_metrics_is_a_one_line_error(tmp_path: Path, capsys, monkeypatch) -> None:
    code, _, stderr = invoke(capsys, monkeypatch, "plot", "curves", "--model", str(tmp_path))
    assert code == 2
    assert "metrics.jsonl" in stderr and len(stderr.strip().splitlines()) == 1


@needs_matplotlib
def test_attention_png_has_tokens_sized_axes(run: Path, tmp_path: Path, capsys, monkeypatch) -> None:
    from seq2seq.tools.plot import DPI, attention_size

    out = tmp_path / "a.png"
    code, stdout, stderr = invoke(
        capsys, monkeypatch, "translate", "I love you", "--model", str(run), "--attention", str(out), "--json"
    )
    assert code == 0, stderr
    obj = json.loads(stdout)
    assert obj["src_tokens"] == ["I", "love", "you", "<eos>"]
    rows = len(obj["attention"])
    assert rows in (len(obj["tokens"]), len(obj["tokens"]) + 1)
    width, height = attention_size(len(obj["src_tokens"]), rows)
    assert png_size(out) == (round(width * DPI), round(height * DPI))

    # several inputs: one numbered image each; a longer sentence gives a wider image
    code, stdout, stderr = invoke(
        capsys, monkeypatch, "translate", "I love you", "A dog does not watch my bears and my cats .", "--model", str(run),
        "--attention", str(out),
    )
    assert code == 0, stderr
    assert len(stdout.splitlines()) == 2
    assert png_size(tmp_path / "a-2.png")[0] > png_size(tmp_path / "a-1.png")[0]


def test_pictures_without_matplotlib_say_how_to_install(run: Path, tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # makes the import fail
    for args in (("translate", "I love you", "--attention", str(tmp_path / "a.png")), ("plot", "curves", "-o", str(tmp_path / "c.png"))):
        code, stdout, stderr = invoke(capsys, monkeypatch, *args, "--model", str(run))
        assert code == 2 and stdout == ""
        assert stderr.count("\n") == 1 and "matplotlib" in stderr and "pip install -e '.[plot]'" in stderr
    assert not (tmp_path / "a.png").exists() and not (tmp_path / "c.png").exists()


def test_attention_needs_an_image_name(capsys, monkeypatch) -> None:
    code, _, stderr = invoke(capsys, monkeypatch, "translate", "--attention", "I love you")
    assert code == 2 and ".png" in stderr


def fake_run(directory: Path, metric: str | None) -> Path:
    """A run directory with a config (train.metric = `metric`; None: no config.yaml) and two records."""
    directory.mkdir()
    if metric is not None:
        (directory / "config.yaml").write_text(f"train:\n  metric: {metric}\n", encoding="utf-8")
    records = [{"step": 1, "train_loss": 3.0},
               {"step": 2, "val_loss": 2.0, "val_bleu": 1.0, "val_chrf": 9.0, "val_exact_match": 4.0, "val_cer": 60.0, "val_wer": 80.0}]
    (directory / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return directory


@needs_matplotlib
@pytest.mark.parametrize(
    "metric, drawn", [("cer", "val CER"), ("exact_match", "val exact match"), ("wer", "val token error"), ("chrf", None), (None, None)]
)
def test_plot_curves_draws_the_runs_metric_beside_bleu_and_chrf(
    tmp_path: Path, capsys, monkeypatch, metric: str | None, drawn: str | None
) -> None:
    """A G2P or transliteration run follows exact match or an error rate (train.metric): its curve is drawn too. The
    SVG names each legend entry in a comment."""
    run = fake_run(tmp_path / "run", metric)
    out = tmp_path / "curves.svg"
    code, _, stderr = invoke(capsys, monkeypatch, "plot", "curves", "--model", str(run), "-o", str(out))
    assert code == 0, stderr
    svg = out.read_text(encoding="utf-8")
    assert "<!-- val BLEU -->" in svg and "<!-- val chrF -->" in svg
    labels = {name for name in ("val CER", "val exact match", "val token error") if f"<!-- {name}" in svg}
    assert labels == ({drawn} if drawn else set())
