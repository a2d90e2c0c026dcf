"""A damaged checkpoint is refused, in one line naming the file, before it can decode anything.

torch.save writes a zip archive with a CRC-32 per record that torch.load never checks; `load_checkpoint`
checks them. Random bytes, an empty file, a cut-short file and a zip of something else each get their own
line; "pickled Python objects" is kept for an intact torch file whose pickle is refused. JSON output never
holds NaN or Infinity (not JSON): a non-finite number is null.
"""

from __future__ import annotations

import json
import math
import random
import struct
import sys
import zipfile
import zlib
from pathlib import Path

import pytest
import torch

from seq2seq.config import Config
from seq2seq.data.tokenizer import Tokenizer
from seq2seq.data.vocab import SPECIALS, Vocab
from seq2seq.decode.results import Result
from seq2seq.files import dump_json
from seq2seq.errors import CheckpointError
from seq2seq.model.checkpoint import Checkpoint, load_checkpoint
from tests.conftest import run_cli, tiny_model


def write_checkpoint(path: Path, scores: dict | None = None, weights_change=None) -> Path:  # noqa: ANN001
    """A small decodable checkpoint (the conftest tiny model, word vocabularies of its sizes) at `path`."""
    model = tiny_model(0)
    weights = model.state_dict()
    if weights_change is not None:
        weights_change(weights)
    src = Vocab(list(SPECIALS) + [f"s{i}" for i in range(23 - len(SPECIALS))])
    tgt = Vocab(list(SPECIALS) + [f"t{i}" for i in range(25 - len(SPECIALS))])
    Checkpoint(Config(model=model.cfg), src, tgt, Tokenizer(), Tokenizer(), weights, 3, scores=scores).write(path)
    return path


def data_offset(data: bytes, info: zipfile.ZipInfo) -> int:
    """Where the bytes of record `info` start: after its local header (whose name and extra lengths are its own)."""
    name_len, extra_len = struct.unpack("<HH", data[info.header_offset + 26 : info.header_offset + 30])
    return info.header_offset + 30 + name_len + extra_len


def largest_tensor_record(path: Path) -> zipfile.ZipInfo:
    with zipfile.ZipFile(path) as archive:
        return max((i for i in archive.infolist() if "/data/" in i.filename), key=lambda i: i.file_size)


def strict_json(text: str) -> object:
    """json.loads that refuses NaN / Infinity, as every JSON parser but Python's does."""
    def refuse(constant: str) -> None:
        raise ValueError(f"not JSON: {constant}")
    return json.loads(text, parse_constant=refuse)


def cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """Run the console entry point in this process (no second torch import): exit code, stdout, stderr."""
    from seq2seq.cli.app import main

    monkeypatch.setattr(sys, "argv", ["seq2seq", *args])
    with pytest.raises(SystemExit) as exit_info:
        main()
    out, err = capsys.readouterr()
    return int(exit_info.value.code or 0), out, err


def assert_one_line(err: str, path: Path, *words: str) -> None:
    assert err.count("\n") == 1 and err.startswith(f"error: {path}: ") and "Traceback" not in err, err
    for word in words:
        assert word in err, err


# ---- the CRCs: what torch writes, what a flipped byte does ------------------------------------------------


def test_torch_save_writes_a_real_crc32_for_every_record(tmp_path: Path) -> None:
    path = write_checkpoint(tmp_path / "ok.pt")
    with zipfile.ZipFile(path) as archive:
        infos = archive.infolist()
        assert len(infos) > 10 and all(zlib.crc32(archive.read(i)) == i.CRC for i in infos)
        assert {i.CRC for i in infos} != {0}


def test_a_flipped_byte_inside_a_tensor_is_refused_as_corrupted(tmp_path: Path) -> None:
    path = write_checkpoint(tmp_path / "best.pt")
    data = bytearray(path.read_bytes())
    record = largest_tensor_record(path)
    data[data_offset(data, record) + record.file_size // 2] ^= 0xFF
    path.write_bytes(data)
    # torch alone loads it without a word, other numbers in the weights: what made translate print empty lines
    state = torch.load(path, weights_only=True)
    clean = tiny_model(0).state_dict()
    assert any(not torch.equal(state["model"][k], clean[k]) for k in clean)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    message = str(info.value)
    assert message.startswith(f"{path}: ") and "corrupted" in message and f"record {record.filename}" in message
    assert "\n" not in message


def test_every_flip_in_a_records_headers_is_refused_or_harmless(tmp_path: Path) -> None:
    """Flips in a tensor record's central-directory entry and local header: refused, or the same state loads.

    (One such byte, the directory bit of the external attributes, passes the CRCs: torch's reader then
    takes the record for a folder and loads other weights.)"""
    path = write_checkpoint(tmp_path / "ok.pt")
    data = path.read_bytes()
    clean = load_checkpoint(path)
    record = largest_tensor_record(path)
    (central,) = struct.unpack("<I", data[data.rindex(b"PK\x05\x06") + 16 :][:4])  # the directory's offset, from its end record
    name = record.filename.encode()
    entry = next(i for i in range(central, len(data)) if data[i : i + 4] == b"PK\x01\x02" and data[i + 46 : i + 46 + len(name)] == name)
    positions = [*range(entry, entry + 46 + len(name)), *range(record.header_offset, data_offset(data, record))]
    flipped, refused = tmp_path / "flipped.pt", 0
    for pos in positions:
        for mask in (0x01, 0x10, 0x80):
            damaged = bytearray(data)
            damaged[pos] ^= mask
            flipped.write_bytes(damaged)
            try:
                state = load_checkpoint(flipped)
            except CheckpointError as e:
                assert str(e).startswith(f"{flipped}: not a loadable checkpoint: ") and "\n" not in str(e)
                refused += 1
                continue
            assert all(torch.equal(state["model"][k], clean["model"][k]) for k in clean["model"]), (pos - entry, mask)
            assert {k: v for k, v in state.items() if k != "model"} == {k: v for k, v in clean.items() if k != "model"}
    assert refused > len(positions)  # most flips are caught; the rest touch fields no reader uses


# ---- files that are no checkpoint: each one line naming the file ------------------------------------------


@pytest.mark.parametrize("seed", range(20))
def test_random_bytes_are_not_a_checkpoint_never_pickled_objects(tmp_path: Path, seed: int) -> None:
    path = tmp_path / "x.pt"
    path.write_bytes(random.Random(seed).randbytes(5000))
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    assert str(info.value) == f"{path}: not a loadable checkpoint: corrupted or not a seq2seq checkpoint (not the zip archive torch.save writes)"


def cut_short(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:-100])


def plain_zip(path: Path) -> None:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("notes.txt", "not a model")


@pytest.mark.parametrize(
    "damage, words",
    [
        (lambda p: p.write_bytes(random.Random(1).randbytes(5000)), ("corrupted or not a seq2seq checkpoint",)),
        (lambda p: p.write_bytes(b""), ("empty (0 bytes)", "not a seq2seq checkpoint")),
        (cut_short, ("truncated, corrupted or not a PyTorch file",)),
        (plain_zip, ("a zip archive, but not a PyTorch file",)),
    ],
    ids=["random-bytes", "empty", "truncated", "zip-not-torch"],
)
def test_a_file_that_is_no_checkpoint_is_one_line_and_exit_2(tmp_path, monkeypatch, capsys, damage, words) -> None:
    path = write_checkpoint(tmp_path / "model.pt")
    damage(path)
    code, out, err = cli(monkeypatch, capsys, "translate", "--model", str(path), "--json", "s4 s5")
    assert code == 2 and out == ""
    assert_one_line(err, path, "not a loadable checkpoint", *words)
    assert "pickled" not in err


class Gadget:
    """Any class: pickling it makes a global that weights_only=True refuses."""


def test_pickled_objects_are_named_only_for_an_intact_torch_file(tmp_path: Path) -> None:
    path = tmp_path / "objects.pt"
    torch.save({"format": "seq2seq-checkpoint", "format_version": 1, "thing": Gadget()}, path)
    with pytest.raises(CheckpointError, match="it holds pickled Python objects, which are never loaded"):
        load_checkpoint(path)
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as archive:
        pickle = next(i for i in archive.infolist() if i.filename.endswith("/data.pkl"))
    data[data_offset(data, pickle) + 5] ^= 0x01  # the same file, damaged inside its pickle
    path.write_bytes(data)
    with pytest.raises(CheckpointError, match=r"corrupted: record .*data\.pkl does not match its CRC-32"):
        load_checkpoint(path)


# ---- the command line, end to end -------------------------------------------------------------------------


def test_translate_with_a_flipped_checkpoint_fails_in_one_line_instead_of_printing_nan(tmp_path, monkeypatch, capsys) -> None:
    path = write_checkpoint(tmp_path / "best.pt")
    code, out, err = cli(monkeypatch, capsys, "translate", "--model", str(path), "--json", "s4 s5")
    assert code == 0 and strict_json(out)["output"], err  # the intact file decodes
    data = bytearray(path.read_bytes())
    record = largest_tensor_record(path)
    start = data_offset(data, record)
    data[start : start + record.file_size] = struct.pack("<f", math.nan) * (record.file_size // 4)
    path.write_bytes(data)
    proc = run_cli("translate", "--model", str(path), "--json", "s4 s5", cwd=tmp_path)
    assert proc.returncode == 2 and proc.stdout == ""
    assert_one_line(proc.stderr, path, "corrupted", f"record {record.filename}")


def test_intact_weights_holding_nan_are_refused_before_decoding(tmp_path, monkeypatch, capsys) -> None:
    path = write_checkpoint(tmp_path / "diverged.pt", weights_change=lambda w: w["output.bias"].fill_(math.nan))
    load_checkpoint(path)  # an intact file: what it holds is the problem
    code, out, err = cli(monkeypatch, capsys, "translate", "--model", str(path), "s4 s5")
    assert code == 2 and out == ""
    assert_one_line(err, path, "weights output.bias hold NaN or infinite values")


# ---- JSON: never NaN or Infinity --------------------------------------------------------------------------


def test_a_non_finite_translation_score_is_null_in_json() -> None:
    for score in (math.nan, math.inf, -math.inf):
        line = Result("hi", "", score, [], ["hi", "<eos>"], [[math.nan, 1.0]]).to_json()
        assert strict_json(line) == {
            "input": "hi", "output": "", "score": None, "tokens": [], "src_tokens": ["hi", "<eos>"], "attention": [[None, 1.0]],
        }
    nbest = dump_json({"input": "hi", "nbest": [{"output": "a", "score": -math.inf}, {"output": "b", "score": -1.5}]})
    assert strict_json(nbest)["nbest"] == [{"output": "a", "score": None}, {"output": "b", "score": -1.5}]


def test_info_json_of_a_diverged_run_is_json(tmp_path, monkeypatch, capsys) -> None:
    scores = {"step": 3, "epoch": 1, "val_loss": math.nan, "val_ppl": math.inf, "val_bleu": 0.5, "val_chrf": math.nan}
    path = write_checkpoint(tmp_path / "best.pt", scores=scores)
    code, out, err = cli(monkeypatch, capsys, "info", "--model", str(path), "--json")
    assert code == 0, err
    info = strict_json(out)
    assert info["scores"] == {"step": 3, "epoch": 1, "val_loss": None, "val_ppl": None, "val_bleu": 0.5, "val_chrf": None}
    assert info["best_val_bleu"] == 0.5 and info["step"] == 3
    code, out, err = cli(monkeypatch, capsys, "info", "--model", str(path))
    assert code == 0, err
    assert "0.50 (chrF none, val loss none, at step 3)" in out
