"""User experience: metrics and TensorBoard, plots, translate (JSON, attention, interactive), info, the Python
API, progress bars, help and the generated config reference."""

from __future__ import annotations

import importlib.util
import json
import os
import pty
import runpy
import select
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import seq2seq
from seq2seq.cli.app import main
from seq2seq.config import SECTIONS, Config, load_config
from seq2seq.errors import ConfigError
from seq2seq.training.metrics import MetricsLogger, read_metrics
from seq2seq.cli.show import SHADES, terminal_heatmap
from seq2seq.decode.results import Result

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
TOY = ROOT / "data" / "toy"


def _installed(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


HAS_MATPLOTLIB = _installed("matplotlib")
HAS_TENSORBOARD = _installed("tensorboard")
needs_matplotlib = pytest.mark.skipif(not HAS_MATPLOTLIB, reason="matplotlib (the `plot` extra) is not installed")
needs_tensorboard = pytest.mark.skipif(not HAS_TENSORBOARD, reason="tensorboard (the `tensorboard` extra) is not installed")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
EPOCHS = 2


def png_size(path: Path) -> tuple[int, int]:
    """Width and height from the IHDR chunk, after checking the PNG signature."""
    head = path.read_bytes()[:24]
    assert head[:8] == PNG_SIGNATURE, f"{path} is not a PNG"
    assert head[12:16] == b"IHDR"
    width, height = struct.unpack(">II", head[16:24])
    return width, height


def _write(directory: Path, name: str, lines_en: list[str], lines_de: list[str]) -> str:
    (directory / f"{name}.en").write_text("".join(s + "\n" for s in lines_en), encoding="utf-8")
    (directory / f"{name}.de").write_text("".join(s + "\n" for s in lines_de), encoding="utf-8")
    return str(directory / name)


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny model trained through the Python API (seq2seq.train with a dict); returns its run directory."""
    work = tmp_path_factory.mktemp("ux")
    en = (TOY / "train.en").read_text(encoding="utf-8").splitlines()[:200]
    de = (TOY / "train.de").read_text(encoding="utf-8").splitlines()[:200]
    config = {
        "data": {"train": _write(work, "train", en, de), "valid": _write(work, "val", en[:20], de[:20]), "src_lang": "en", "tgt_lang": "de"},
        "model": {"emb_size": 16, "hidden_size": 24, "dropout": 0.0, "attention": "luong"},
        "train": {"batch_size": 20, "epochs": EPOCHS, "lr": 0.01, "log_every": 3, "tensorboard": HAS_TENSORBOARD,
                  "num_threads": 1},  # one thread: several on a busy CPU are many times slower
    }
    cwd = os.getcwd()
    os.chdir(work)  # training records runs/latest in the working directory
    try:
        result = seq2seq.train(config, work / "run", quiet=True)
    finally:
        os.chdir(cwd)
    assert result.run_dir == work / "run"
    assert result.progress.epoch == EPOCHS
    return result.run_dir


def cli(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, *args: str) -> tuple[int, str, str]:
    """Run the console entry point in-process; returns exit code, stdout, stderr."""
    monkeypatch.setattr(sys, "argv", ["seq2seq", *args])
    with pytest.raises(SystemExit) as exit_info:
        main()
    out, err = capsys.readouterr()
    return exit_info.value.code, out, err


def subprocess_cli(*args: str, cwd: Path, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "seq2seq", *args], cwd=cwd, input=stdin, capture_output=True, text=True, env=ENV, timeout=120
    )


# --- metrics ----------------------------------------------------------------------------------------------


def test_metrics_jsonl_holds_train_and_validation_records(run: Path) -> None:
    records = read_metrics(run / "metrics.jsonl")
    train = [r for r in records if "train_loss" in r]
    val = [r for r in records if "val_loss" in r]
    assert train and len(val) == EPOCHS
    for r in train:
        assert {"step", "epoch", "train_loss", "lr", "tokens_per_s", "elapsed"} <= r.keys()
        assert r["step"] % 3 == 0 and r["tokens_per_s"] > 0 and r["lr"] == pytest.approx(0.01)
    for r in val:
        assert {"step", "epoch", "val_loss", "val_ppl", "val_bleu", "val_chrf", "elapsed"} <= r.keys()
        assert r["val_ppl"] == pytest.approx(torch.tensor(r["val_loss"]).exp().item(), rel=1e-5)
    # the validation after epoch k says epoch k, not k + 1
    assert [r["epoch"] for r in val] == list(range(1, EPOCHS + 1))
    steps = [r["step"] for r in records]
    assert steps == sorted(steps)
    assert [r["elapsed"] for r in records] == sorted(r["elapsed"] for r in records)


def test_metrics_logger_purges_records_after_the_resume_step(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    logger = MetricsLogger(path)
    for step in (10, 20, 30):
        logger.log({"step": step, "train_loss": 1.0 / step})
    logger.close()
    resumed = MetricsLogger(path, purge_step=20)
    resumed.log({"step": 25, "train_loss": 0.5})
    assert [r["step"] for r in read_metrics(path)] == [10, 20, 25]


def test_read_metrics_skips_a_torn_last_line_but_not_a_bad_middle_line(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 1, "train_loss": 2.0}\n{"step": 2, "tra', encoding="utf-8")
    assert [r["step"] for r in read_metrics(path)] == [1]
    path.write_text('{"step": 1\n{"step": 2, "train_loss": 2.0}\n', encoding="utf-8")
    with pytest.raises(seq2seq.errors.DataError, match=r"metrics.jsonl:1"):
        read_metrics(path)


@needs_tensorboard
def test_tensorboard_events_read_back(run: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run / "tensorboard"))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {"train/loss", "train/lr", "train/tokens_per_s", "val/loss", "val/bleu", "val/chrf", "val/ppl"} <= tags
    records = read_metrics(run / "metrics.jsonl")
    expected = [(r["step"], r["val_bleu"]) for r in records if "val_bleu" in r]
    got = [(e.step, e.value) for e in events.Scalars("val/bleu")]
    assert [s for s, _ in got] == [s for s, _ in expected]
    assert [v for _, v in got] == pytest.approx([v for _, v in expected], rel=1e-5)


def test_tensorboard_without_the_extra_says_how_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # makes the import fail
    with pytest.raises(ConfigError, match=r"train\.tensorboard.*pip install 'seq2seq\[tensorboard\]'"):
        MetricsLogger(tmp_path / "metrics.jsonl", tmp_path / "tb")


# --- plots --------------------------------------------------------------------------------------------------


@needs_matplotlib
def test_plot_curves_writes_a_png_of_the_expected_size(run: Path, tmp_path: Path, capsys, monkeypatch) -> None:
    from seq2seq.tools.plot import CURVES_SIZE, DPI

    out = tmp_path / "curves.png"
    code, stdout, stderr = cli(capsys, monkeypatch, "plot", "curves", "--model", str(run), "-o", str(out))
    assert code == 0, stderr
    assert png_size(out) == (round(CURVES_SIZE[0] * DPI), round(CURVES_SIZE[1] * DPI))
    assert stdout == ""  # the path is reported on stderr
    # without -o: into the run directory; a .pt file names its run directory too
    code, _, stderr = cli(capsys, monkeypatch, "plot", "curves", "--model", str(run / "best.pt"))
    assert code == 0, stderr
    assert png_size(run / "curves.png")[0] > 0


def test_plot_curves_without_metrics_is_a_one_line_error(tmp_path: Path, capsys, monkeypatch) -> None:
    code, _, stderr = cli(capsys, monkeypatch, "plot", "curves", "--model", str(tmp_path))
    assert code == 2
    assert "metrics.jsonl" in stderr and len(stderr.strip().splitlines()) == 1


@needs_matplotlib
def test_attention_png_has_tokens_sized_axes(run: Path, tmp_path: Path, capsys, monkeypatch) -> None:
    from seq2seq.tools.plot import DPI, attention_size

    out = tmp_path / "a.png"
    code, stdout, stderr = cli(
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
    code, stdout, stderr = cli(
        capsys, monkeypatch, "translate", "I love you", "A dog does not watch my bears and my cats .", "--model", str(run),
        "--attention", str(out),
    )
    assert code == 0, stderr
    assert len(stdout.splitlines()) == 2
    assert png_size(tmp_path / "a-2.png")[0] > png_size(tmp_path / "a-1.png")[0]


def test_pictures_without_matplotlib_say_how_to_install(run: Path, tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # makes the import fail
    for args in (("translate", "I love you", "--attention", str(tmp_path / "a.png")), ("plot", "curves", "-o", str(tmp_path / "c.png"))):
        code, stdout, stderr = cli(capsys, monkeypatch, *args, "--model", str(run))
        assert code == 2 and stdout == ""
        assert stderr.count("\n") == 1 and "pip install 'seq2seq[plot]'" in stderr
    assert not (tmp_path / "a.png").exists() and not (tmp_path / "c.png").exists()


def test_attention_needs_an_image_name(capsys, monkeypatch) -> None:
    code, _, stderr = cli(capsys, monkeypatch, "translate", "--attention", "I love you")
    assert code == 2 and ".png" in stderr


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


# --- translate ----------------------------------------------------------------------------------------------


def test_piped_translate_prints_only_translations_and_json_lines_parse(run: Path, tmp_path: Path) -> None:
    lines = ["I love you", "", "A bear hears the horses."]
    expected = seq2seq.Translator.load(run).translate(lines)
    plain = subprocess_cli("translate", "--model", str(run), cwd=tmp_path, stdin="\n".join(lines) + "\n")
    assert plain.returncode == 0, plain.stderr
    assert plain.stdout.split("\n") == expected + [""]
    as_json = subprocess_cli("translate", "--model", str(run), "--json", cwd=tmp_path, stdin="\n".join(lines) + "\n")
    assert as_json.returncode == 0, as_json.stderr
    objects = [json.loads(line) for line in as_json.stdout.splitlines()]
    assert [o["input"] for o in objects] == lines
    assert [o["output"] for o in objects] == expected
    assert all(isinstance(o["score"], float) and o["score"] <= 0 and isinstance(o["tokens"], list) for o in objects)
    assert "attention" not in objects[0]
    assert objects[1] == {"input": "", "output": "", "score": 0.0, "tokens": []}


def test_json_attention_rows_are_distributions_over_the_source(run: Path, capsys, monkeypatch) -> None:
    code, stdout, stderr = cli(capsys, monkeypatch, "translate", "A bear hears the horses.", "--model", str(run), "--json", "--attention", "-")
    assert code == 0, stderr
    obj = json.loads(stdout)
    assert obj["src_tokens"][-1] == "<eos>"
    for row in obj["attention"]:
        assert len(row) == len(obj["src_tokens"])
        assert sum(row) == pytest.approx(1.0, abs=1e-3)
    assert "\u2588" not in stderr  # with --json the attention is in the JSON, not drawn


def test_terminal_attention_goes_to_stderr(run: Path, capsys, monkeypatch) -> None:
    code, stdout, stderr = cli(capsys, monkeypatch, "translate", "I love you", "--model", str(run), "--attention", "-")
    assert code == 0
    assert len(stdout.splitlines()) == 1
    assert stderr.splitlines()[0].split() == ["I", "love", "you", "<eos>"]


def test_interactive_prompt_in_a_pseudo_terminal(run: Path, tmp_path: Path) -> None:
    expected = seq2seq.Translator.load(run).translate(["I love you"])[0]
    master, slave = pty.openpty()
    env = {**ENV, "HOME": str(tmp_path), "TERM": "dumb"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "seq2seq", "translate", "--model", str(run)],
        stdin=slave, stdout=slave, stderr=slave, cwd=tmp_path, env=env, close_fds=True,
    )
    os.close(slave)
    seen = b""

    def read_until(marker: bytes, timeout: float = 60.0) -> None:
        nonlocal seen
        deadline = time.monotonic() + timeout
        while marker not in seen:
            ready, _, _ = select.select([master], [], [], max(deadline - time.monotonic(), 0))
            if not ready:
                raise AssertionError(f"no {marker!r} in the terminal output: {seen!r}")
            try:
                seen += os.read(master, 4096)
            except OSError:  # the child closed the terminal
                raise AssertionError(f"no {marker!r} in the terminal output: {seen!r}") from None

    try:
        read_until(b":q or Ctrl-D quits")
        read_until(b"> ")
        os.write(master, b"I love you\n")
        read_until(expected.encode("utf-8") + b"\r\n")
        os.write(master, b":q\n")
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
    assert (tmp_path / ".seq2seq_history").read_text(encoding="utf-8").split() == ["I", "love", "you"]  # not ":q"


def test_prompt_loop_quits_on_end_of_input_and_survives_ctrl_c(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    from seq2seq.cli.interactive import prompt_loop

    feed = iter(["one", "", KeyboardInterrupt(), "  two  ", EOFError(), "never"])

    def fake_input(prompt: str = "") -> str:
        item = next(feed)
        if isinstance(item, BaseException):
            raise item
        return item

    monkeypatch.setattr("builtins.input", fake_input)
    handled: list[str] = []
    prompt_loop(handled.append, "banner", history_file=None)
    assert handled == ["one", "two"]
    assert next(feed) == "never"


# --- info, API, progress ------------------------------------------------------------------------------------


def test_info_describes_the_checkpoint(run: Path, capsys, monkeypatch) -> None:
    from seq2seq.model.network import count_parameters

    t = seq2seq.Translator.load(run)
    code, stdout, stderr = cli(capsys, monkeypatch, "info", "--model", str(run), "--json")
    assert code == 0, stderr
    info = json.loads(stdout)
    assert info["parameters"] == count_parameters(t.model)
    assert (info["src_vocab_size"], info["tgt_vocab_size"]) == (len(t.src.vocab), len(t.tgt.vocab))
    val = [r for r in read_metrics(run / "metrics.jsonl") if "val_bleu" in r]
    assert info["best_val_bleu"] == pytest.approx(max(r["val_bleu"] for r in val))
    assert info["step"] == val[-1]["step"] and info["training_seconds"] > 0
    assert info["config"]["model"]["hidden_size"] == 24
    code, text, _ = cli(capsys, monkeypatch, "info", "--model", str(run))
    assert code == 0
    assert f"{info['parameters']:,}" in text and "hidden_size: 24" in text and "luong attention" in text
    from seq2seq.device import choose_precision

    here = choose_precision(info["config"]["train"]["precision"], torch.device("cpu"))
    assert info["precision"] == {"configured": info["config"]["train"]["precision"], "here": here.precision, "reason": here.reason}
    assert f"precision     {here.precision} here ({here.reason})" in text


def test_python_api_translates(run: Path) -> None:
    from seq2seq import Translator

    t = Translator.load(run)
    out = t.translate(["I love you", ""])
    assert len(out) == 2 and isinstance(out[0], str) and out[1] == ""
    assert out[0] == t.detokenize(t.hypotheses(["I love you"])[0].ids)


def test_import_seq2seq_is_light_and_train_is_callable_either_way() -> None:
    code = (
        "import sys, seq2seq; assert 'torch' not in sys.modules, 'torch imported'; "
        "import seq2seq.training.trainer; assert callable(seq2seq.train); assert seq2seq.train is seq2seq.api.train; from seq2seq import Translator; print(Translator.__name__)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=ENV, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "Translator"


def test_api_accepts_a_config_a_dict_or_a_yaml_path(tmp_path: Path) -> None:
    from seq2seq.api import as_config

    path = tmp_path / "c.yaml"
    path.write_text("model:\n  hidden_size: 8\n", encoding="utf-8")
    from_path = as_config(path, ["train.lr=0.5"])
    assert from_path == load_config(path, ["train.lr=0.5"])
    assert as_config({"model": {"hidden_size": 8}}, ["train.lr=0.5"]) == from_path
    assert as_config(from_path) == from_path and isinstance(from_path, Config)
    with pytest.raises(ConfigError, match="hiden_size"):
        as_config({"model": {"hiden_size": 8}})
    with pytest.raises(ConfigError, match="expected a Config"):
        as_config(42)  # type: ignore[arg-type]


def test_progress_bars_go_to_stderr_and_quiet_turns_them_off(run: Path, capsys) -> None:
    from dataclasses import replace

    from seq2seq.decode.search import decode

    t = seq2seq.Translator.load(run)
    sources = t.encode_sources(["I love you"] * 5)
    cfg = replace(t.cfg.decode, batch_size=2)
    quiet = decode(t.model, sources, cfg, t.device, progress=False)
    out, err = capsys.readouterr()
    assert out == "" and err == ""
    loud = decode(t.model, sources, cfg, t.device, progress=True)
    out, err = capsys.readouterr()
    assert out == "" and "decoding" in err and "/5 " in err
    assert [n[0].ids for n in quiet] == [n[0].ids for n in loud]


# --- help, completion, config reference ---------------------------------------------------------------------


def _commands(group, path: tuple[str, ...] = ()):  # noqa: ANN001, ANN202 (click objects)
    for name, command in group.commands.items():
        yield path + (name,), command
        if hasattr(command, "commands"):
            yield from _commands(command, path + (name,))


def test_every_command_help_shows_an_example(capsys, monkeypatch) -> None:
    import typer.main

    from seq2seq.cli.app import app

    commands = list(_commands(typer.main.get_command(app)))
    assert {("translate",), ("info",), ("plot",), ("plot", "curves")} <= {p for p, _ in commands}
    for path, _ in commands:
        code, stdout, _ = cli(capsys, monkeypatch, *path, "--help")
        assert code == 0
        assert "Example" in stdout, f"seq2seq {' '.join(path)} --help shows no example"


def test_shell_completion_completes_commands_and_options(tmp_path: Path) -> None:
    env = {**ENV, "_SEQ2SEQ_COMPLETE": "complete_bash", "COMP_WORDS": "seq2seq tr", "COMP_CWORD": "1"}
    code = "import sys; sys.argv = ['seq2seq']; from seq2seq.cli.app import main; main()"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert set(proc.stdout.split()) == {"train", "translate"}
    script = subprocess.run(
        [sys.executable, "-c", "import sys; sys.argv = ['seq2seq', '--show-completion', 'bash']; from seq2seq.cli.app import main; main()"],
        capture_output=True, text=True, env=ENV, timeout=60,
    )
    assert script.returncode == 0 and "_SEQ2SEQ_COMPLETE=complete_bash" in script.stdout


def test_docs_config_reference_matches_the_dataclasses() -> None:
    script = runpy.run_path(str(ROOT / "scripts" / "config_reference.py"), run_name="config_reference")
    generated = script["render"]()
    reference = (ROOT / "docs" / "config-reference.md").read_text(encoding="utf-8")
    assert script["readme_section"](reference).strip() == generated.strip(), (
        "docs/config-reference.md is stale: python scripts/config_reference.py --write docs/config-reference.md"
    )
    for name, cls in SECTIONS.items():
        for f in cls.__dataclass_fields__.values():
            assert f"| `{name}.{f.name}` |" in generated


def test_readme_python_api_example_runs_as_written_twice(tmp_path: Path) -> None:
    """The README's Python example, run where the quick start ran (runs/demo exists) and then again."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Python API", 1)[1]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    assert "overwrite=True" in code and 'configs/demo.yaml' in code
    (tmp_path / "configs").symlink_to(ROOT / "configs")
    (tmp_path / "data").symlink_to(ROOT / "data")
    (tmp_path / "runs" / "demo").mkdir(parents=True)
    (tmp_path / "runs" / "demo" / "best.pt").write_bytes(b"the quick start's model")
    script = code + "\nprint(repr(t.translate(['I love you'])[0]))\n"
    for _ in range(2):
        proc = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, env=ENV, timeout=300)
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.strip().startswith("'")
    assert (tmp_path / "runs" / "demo" / "best.pt").read_bytes() == b"the quick start's model"
