"""Checkpoints: loaded only with weights_only=True (a pickle payload is refused and never runs), damaged or
inconsistent ones are one line naming the file, and the Checkpoint type reads and writes the layout unchanged."""

from __future__ import annotations

import builtins
import math
import random
import struct
import zipfile
import zlib
from pathlib import Path

import pytest
import torch

import seq2seq.model.checkpoint as checkpoint
from seq2seq.config import Config, config_to_dict
from seq2seq.data.tokenizer import Tokenizer
from seq2seq.data.vocab import SPECIALS, Vocab
from seq2seq.data.results import Result
from seq2seq.errors import CheckpointError
from seq2seq.files import dump_json
from seq2seq.model.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from tests.conftest import fake_state, invoke, run_cli, strict_json, tiny_model


class Payload:
    """Unpickling this creates `marker` (pickle calls open(marker, "w")): code run by merely loading a file."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (builtins.open, (str(self.marker), "w"))


def test_a_checkpoint_carrying_a_pickle_payload_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "PWNED"
    evil = tmp_path / "evil.pt"
    torch.save({**fake_state(1), "format": checkpoint.FORMAT, "format_version": checkpoint.FORMAT_VERSION, "x": Payload(marker)}, evil)
    # the payload is live: an unsafe load would run it
    probe = tmp_path / "probe"
    probe_file = tmp_path / "probe.pt"
    torch.save({"x": Payload(probe)}, probe_file)
    torch.load(probe_file, weights_only=False)
    assert probe.exists()

    with pytest.raises(CheckpointError, match=f"^{evil}: not a loadable checkpoint: it holds pickled Python objects"):
        load_checkpoint(evil)
    with pytest.raises(CheckpointError, match="pickled Python objects"):
        Checkpoint.read(evil)
    assert not marker.exists()  # through the CLI (translate, train --resume): tests/test_bad_input.py


@pytest.mark.parametrize(
    "corrupt, message",
    [
        (lambda b: b[: len(b) // 2], "not a loadable checkpoint"),
        (lambda b: bytes(range(256)) * (len(b) // 256), "not a loadable checkpoint"),
        (lambda b: b"", "not a loadable checkpoint"),
    ],
    ids=["truncated", "garbage", "empty"],
)
def test_damaged_checkpoints_give_one_line(tmp_path, corrupt, message):
    path = tmp_path / "last.pt"
    save_checkpoint(path, fake_state(1))
    path.write_bytes(corrupt(path.read_bytes()))
    with pytest.raises(CheckpointError, match=message) as info:
        load_checkpoint(path)
    assert "\n" not in str(info.value)


def test_an_unknown_format_version_is_refused(tmp_path):
    path = tmp_path / "future.pt"
    torch.save({**fake_state(1), "format": checkpoint.FORMAT, "format_version": 99}, path)
    with pytest.raises(CheckpointError, match="format version 99, this seq2seq reads version 1"):
        load_checkpoint(path)


# -- the Checkpoint type: one reader and writer of the layout -----------------------------------------------


def trained_state(with_training: bool = True) -> dict:
    """A checkpoint dict in the layout train writes: decoding keys, then (last.pt / best.pt) the training state."""
    model = tiny_model(0)
    src, tgt = list(SPECIALS) + [f"s{i}" for i in range(19)], list(SPECIALS) + [f"t{i}" for i in range(21)]
    state = {
        "config": config_to_dict(Config(model=model.cfg)), "src_vocab": src, "tgt_vocab": tgt,
        "tokenizer": Tokenizer().to_dict(), "tgt_tokenizer": Tokenizer(level="char").to_dict(),
        "model": model.state_dict(), "step": 7,
    }
    if with_training:
        state |= {
            "optimizer": {"state": {}, "param_groups": [{"lr": 0.1, "params": [0]}]}, "progress": {"step": 7, "epoch": 1},
            "rng": {"torch": torch.get_rng_state()}, "schedule": {"scale": 1.0}, "early_stopping": {"bad": 0},
            "kept_best": [{"step": 7, "val_bleu": 1.5}], "scores": {"step": 7, "val_bleu": 1.5},
        }
    return state


def assert_same_state(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        if key == "model":
            assert a[key].keys() == b[key].keys() and all(torch.equal(a[key][k], b[key][k]) for k in a[key])
        elif key == "rng":
            assert torch.equal(a[key]["torch"], b[key]["torch"])
        else:
            assert a[key] == b[key], key


def test_a_checkpoint_reads_and_writes_the_layout_unchanged(tmp_path):
    save_checkpoint(tmp_path / "old.pt", trained_state())  # as the trainer wrote it before the Checkpoint type
    ckpt = Checkpoint.read(tmp_path / "old.pt")
    assert ckpt.step == 7 and ckpt.scores == {"step": 7, "val_bleu": 1.5} and ckpt.resumable
    assert ckpt.src_tokenizer.level == "word" and ckpt.tgt_tokenizer.level == "char" and len(ckpt.tgt_vocab) == 25
    assert sorted(ckpt.training) == ["early_stopping", "kept_best", "optimizer", "progress", "rng", "schedule"]
    ckpt.write(tmp_path / "new.pt")
    assert_same_state(load_checkpoint(tmp_path / "new.pt"), load_checkpoint(tmp_path / "old.pt"))
    decoding = ckpt.decoding_only()
    assert decoding.training == {} and not decoding.resumable and ckpt.training  # a copy: the original keeps its state
    model = decoding.build_model()
    assert not model.training and all(torch.equal(v, ckpt.weights[k]) for k, v in model.state_dict().items())


def test_a_checkpoint_without_a_target_tokenizer_is_refused_by_name(tmp_path):
    """Format version 1 holds both sides' tokenizers; no shim reads a file with one as if it were another layout."""
    state = trained_state(with_training=False)
    del state["tgt_tokenizer"]
    save_checkpoint(tmp_path / "old.pt", state)
    with pytest.raises(CheckpointError, match="old.pt: checkpoint lacks tgt_tokenizer"):
        Checkpoint.read(tmp_path / "old.pt")


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda s: s["config"]["model"].update(hiden_size=3), "inconsistent checkpoint: model.hiden_size: unknown key"),
        (lambda s: s.update(src_vocab=["a", "b"]), "inconsistent checkpoint: vocabulary must start with"),
        (lambda s: s.update(tokenizer={"level": "word"}), "inconsistent checkpoint: 'lowercase'"),
        (lambda s: s["tgt_vocab"].append("extra"), "vocabulary of 26 tokens does not match weights decoder.embed.weight of shape (25, 12)"),
        (lambda s: s.pop("step"), "checkpoint lacks step"),
    ],
    ids=["config", "vocab", "tokenizer", "vocab-vs-weights", "missing-key"],
)
def test_an_inconsistent_checkpoint_is_one_line_naming_the_file(tmp_path, change, message):
    state = trained_state(with_training=False)
    change(state)
    path = tmp_path / "bad.pt"
    torch.save({**state, "format": checkpoint.FORMAT, "format_version": checkpoint.FORMAT_VERSION}, path)
    with pytest.raises(CheckpointError) as info:
        Checkpoint.read(path)
    assert str(info.value).startswith(f"{path}: ") and message in str(info.value) and "\n" not in str(info.value)


def test_weights_that_do_not_fit_the_config_fail_when_the_model_is_built(tmp_path):
    state = trained_state(with_training=False)
    state["config"]["model"]["hidden_size"] = 8
    save_checkpoint(tmp_path / "odd.pt", state)
    ckpt = Checkpoint.read(tmp_path / "odd.pt")  # the vocabularies fit the embeddings: readable
    with pytest.raises(CheckpointError, match=r"odd.pt: weights do not match the model in its config: Error\(s\) in loading") as info:
        ckpt.build_model()
    assert "\n" not in str(info.value)


def test_saving_streams_to_the_file_and_holds_no_copy_in_memory(tmp_path):
    """A checkpoint goes straight into its temporary file: through a BytesIO it was held twice in memory at every
    save (the buffer and its getvalue() copy: ~370 MB for the recipe model with its optimizer state)."""
    import tracemalloc

    state = fake_state(1)
    state["model"] = {"w": torch.zeros(4_000_000)}  # 16 MB of weights
    tracemalloc.start()
    try:
        save_checkpoint(tmp_path / "big.pt", state)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert (tmp_path / "big.pt").stat().st_size > 16_000_000
    assert peak < 8_000_000, f"saving a 16 MB checkpoint allocated {peak / 1e6:.0f} MB of Python memory at its peak"
    assert load_checkpoint(tmp_path / "big.pt")["model"]["w"].shape == (4_000_000,)


# ---- A damaged checkpoint is refused, in one line naming the file, before it can decode anything.

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
    code, out, err = invoke(capsys, monkeypatch, "translate", "--model", str(path), "--json", "s4 s5")
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
    code, out, err = invoke(capsys, monkeypatch, "translate", "--model", str(path), "--json", "s4 s5")
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
    code, out, err = invoke(capsys, monkeypatch, "translate", "--model", str(path), "s4 s5")
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
    code, out, err = invoke(capsys, monkeypatch, "info", "--model", str(path), "--json")
    assert code == 0, err
    info = strict_json(out)
    assert info["scores"] == {"step": 3, "epoch": 1, "val_loss": None, "val_ppl": None, "val_bleu": 0.5, "val_chrf": None}
    assert info["best_val_bleu"] == 0.5 and info["step"] == 3
    code, out, err = invoke(capsys, monkeypatch, "info", "--model", str(path))
    assert code == 0, err
    assert "0.50 (chrF none, val loss none, at step 3)" in out
