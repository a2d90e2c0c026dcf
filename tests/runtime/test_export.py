"""`seq2seq export` and translating with the export where torch cannot be imported: the same lines as the checkpoint,
greedy and beam 5 (n-best, length penalty, min / max length), scores within 1e-4; bad exports are one line, exit 2."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from seq2seq.model.export_format import DECODER_FILE, ENCODER_FILE, MANIFEST, OPSET
from tests.conftest import ROOT, run_cli, toy_pairs
from tests.runtime.conftest import run_without_torch

INPUTS = [s for s, _ in toy_pairs("val", 12)] + ["", "a much longer sentence than any the graphs were traced with , " * 3]


def _write_inputs(tmp_path: Path) -> Path:
    path = tmp_path / "in.txt"
    path.write_text("".join(line + "\n" for line in INPUTS), encoding="utf-8")
    return path


def test_export_writes_graphs_and_a_json_that_describes_them(exported: Path, export_run: Path) -> None:
    manifest = json.loads((exported / MANIFEST).read_text(encoding="utf-8"))
    assert manifest["opset"] == OPSET and manifest["quantize"] == "none"
    assert (exported / ENCODER_FILE).is_file() and (exported / DECODER_FILE).is_file()
    assert manifest["config"]["decode"]["beam_size"] == 5 and manifest["config"]["decode"]["length_penalty"] == 0.6
    assert manifest["tokenizer"]["src"] == {"level": "word", "lowercase": False, "sp_model": None}
    assert manifest["src_vocab"][:4] == ["<pad>", "<unk>", "<bos>", "<eos>"] and len(manifest["tgt_vocab"]) > 10
    assert manifest["model"]["checkpoint"] == str(export_run / "best.pt") and manifest["model"]["parameters"] > 0


@pytest.mark.parametrize("extra", [[], ["--beam", "1"], ["--nbest", "3", "--json"], ["--json", "--beam", "3", "--batch-size", "2"]],
                         ids=["beam5-default", "greedy", "nbest3", "json-beam3-batch2"])
def test_the_export_translates_as_the_checkpoint_without_torch(
    extra: list[str], exported: Path, export_run: Path, no_torch_env: dict, tmp_path: Path
) -> None:
    inputs = _write_inputs(tmp_path)
    theirs = run_cli("translate", "--model", str(export_run), "--input", str(inputs), "--quiet", *extra, cwd=tmp_path)
    ours = run_without_torch(no_torch_env, "-m", "seq2seq", "translate", "--model", str(exported), "--input", str(inputs), "--quiet", *extra)
    assert theirs.returncode == 0, theirs.stderr
    assert ours.returncode == 0, ours.stderr
    if "--json" not in extra:
        if "--nbest" not in extra:
            assert ours.stdout == theirs.stdout
        return
    for mine, ref in zip(ours.stdout.splitlines(), theirs.stdout.splitlines()):
        a, b = json.loads(mine), json.loads(ref)
        items = zip(a["nbest"], b["nbest"]) if "nbest" in b else [(a, b)]
        for x, y in items:
            assert x["output"] == y["output"]
            assert abs(x["score"] - y["score"]) < 1e-4
    assert len(ours.stdout.splitlines()) == len(theirs.stdout.splitlines())


def test_nothing_of_the_export_path_imports_torch(no_torch_env: dict) -> None:
    code = (
        "import sys\n"
        "try:\n    import torch\nexcept ImportError:\n    pass\nelse:\n    raise SystemExit('torch imported')\n"
        "import seq2seq.cli.app, seq2seq.cli.exported, seq2seq.runtime.translator, seq2seq.data.results\n"
        "import seq2seq.serve.run, seq2seq.serve.batching, seq2seq.serve.requests\n"
        "print('torch' in sys.modules and sys.modules['torch'] is not None)\n"
    )
    proc = run_without_torch(no_torch_env, "-c", code)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "False"


def test_int8_export_quantizes_the_matrix_products_and_translates(export_run: Path, no_torch_env: dict, tmp_path: Path) -> None:
    onnx = pytest.importorskip("onnx")
    out = tmp_path / "int8"
    proc = run_cli("export", "--model", str(export_run), "--output", str(out), "--quantize", "int8", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "opset 17, int8 weights" in proc.stderr
    ops = {node.op_type for name in (ENCODER_FILE, DECODER_FILE) for node in onnx.load(str(out / name)).graph.node}
    assert "MatMulInteger" in ops or "DynamicQuantizeMatMul" in ops
    ours = run_without_torch(no_torch_env, "-m", "seq2seq", "translate", "--model", str(out), "--beam", "2", *INPUTS[:3])
    assert ours.returncode == 0, ours.stderr
    assert len(ours.stdout.splitlines()) == 3
    wrong = run_without_torch(no_torch_env, "-m", "seq2seq", "translate", "--model", str(out), "--quantize", "none", "hello")
    assert wrong.returncode == 2 and "export --quantize none" in wrong.stderr


def test_export_refuses_a_directory_holding_other_files_unless_overwrite(exported: Path, export_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine\n", encoding="utf-8")
    refused = run_cli("export", "--model", str(export_run), "--output", str(out), cwd=tmp_path)
    assert refused.returncode == 2 and len(refused.stderr.strip().splitlines()) == 1 and "--overwrite" in refused.stderr
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]
    forced = run_cli("export", "--model", str(export_run), "--output", str(out), "--overwrite", cwd=tmp_path)
    assert forced.returncode == 0, forced.stderr
    assert (out / "notes.txt").read_text(encoding="utf-8") == "mine\n" and (out / MANIFEST).is_file()
    again = shutil.copytree(exported, tmp_path / "again")  # an export is replaced without --overwrite
    assert run_cli("export", "--model", str(export_run), "--output", str(again), "--quantize", "int8", cwd=tmp_path).returncode == 0
    assert json.loads((again / MANIFEST).read_text(encoding="utf-8"))["quantize"] == "int8"
    assert not list(tmp_path.glob(".*.tmp"))


def _tampered_graph(d: Path) -> None:
    data = bytearray((d / DECODER_FILE).read_bytes())
    data[len(data) // 2] ^= 0x01
    (d / DECODER_FILE).write_bytes(bytes(data))


def _vocab_edited(d: Path) -> None:
    manifest = json.loads((d / MANIFEST).read_text(encoding="utf-8"))
    manifest["tgt_vocab"] = manifest["tgt_vocab"][:-1]
    (d / MANIFEST).write_text(json.dumps(manifest), encoding="utf-8")


def _json_broken(d: Path) -> None:
    (d / MANIFEST).write_text("{not json", encoding="utf-8")


def _graph_missing(d: Path) -> None:
    (d / ENCODER_FILE).unlink()


@pytest.mark.parametrize("damage, message", [
    (_tampered_graph, "does not match the sha256"), (_vocab_edited, "does not match the graphs"),
    (_json_broken, "not an export's JSON"), (_graph_missing, "export lacks encoder.onnx"),
], ids=["tampered-onnx", "json-of-other-vocab", "json-unreadable", "graph-missing"])
def test_a_bad_export_is_one_line_and_exit_2(damage, message: str, exported: Path, no_torch_env: dict, tmp_path: Path) -> None:  # noqa: ANN001
    bad = shutil.copytree(exported, tmp_path / "bad")
    damage(bad)
    proc = run_without_torch(no_torch_env, "-m", "seq2seq", "translate", "--model", str(bad), "hello")
    assert proc.returncode == 2, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and message in proc.stderr and "Traceback" not in proc.stderr


def test_a_directory_that_is_not_an_export_is_one_line_and_exit_2(no_torch_env: dict, tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "encoder.onnx").write_bytes(b"not a graph")
    proc = run_without_torch(no_torch_env, "-m", "seq2seq", "translate", "--model", str(tmp_path / "d"), "hello")
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def test_serving_an_export_decodes_as_serving_the_checkpoint(exported: Path, export_run: Path) -> None:
    from seq2seq.decode.translator import Translator
    from seq2seq.runtime.translator import ExportTranslator
    from seq2seq.serve.batching import Settings, decode_texts

    texts = INPUTS[:6]
    torch_t, export_t = Translator.load(export_run, precision="fp32"), ExportTranslator.load(exported, threads=1)
    for settings in (Settings(1, 1, True), Settings(5, 3, False)):
        theirs, ours = decode_texts(torch_t, texts, settings, 4), decode_texts(export_t, texts, settings, 4)
        assert [d.result.output for d in ours] == [d.result.output for d in theirs]
        assert [[o for _, o in d.nbest] for d in ours] == [[o for _, o in d.nbest] for d in theirs]
        assert [d.src_length for d in ours] == [d.src_length for d in theirs]
        assert [d.result.tokens for d in ours] == [d.result.tokens for d in theirs]
        assert [(d.result.src_tokens, d.result.warning) for d in ours] == [(d.result.src_tokens, d.result.warning) for d in theirs]


def test_a_checkpoint_without_torch_installed_is_one_line_and_exit_2(export_run: Path, no_torch_env: dict) -> None:
    """A runtime-only install (no torch) given a checkpoint instead of an export: say what to do, no traceback."""
    proc = run_without_torch(no_torch_env, "-m", "seq2seq", "translate", "--model", str(export_run), "hello")
    assert proc.returncode == 2, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr
    assert "torch" in proc.stderr and "seq2seq export" in proc.stderr
