"""Checkpoints: loaded only with weights_only=True (a pickle payload is refused and never runs), damaged or
inconsistent ones are one line naming the file, and the Checkpoint type reads and writes the layout unchanged."""

from __future__ import annotations

import builtins
from pathlib import Path

import pytest
import torch

import seq2seq.model.checkpoint as checkpoint
from seq2seq.config import Config, config_to_dict
from seq2seq.data.tokenizer import Tokenizer
from seq2seq.data.vocab import SPECIALS
from seq2seq.errors import CheckpointError
from seq2seq.model.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from tests.conftest import fake_state, tiny_model


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


def test_an_old_checkpoint_with_one_tokenizer_uses_it_for_both_sides(tmp_path):
    state = trained_state(with_training=False)
    del state["tgt_tokenizer"]
    save_checkpoint(tmp_path / "old.pt", state)
    ckpt = Checkpoint.read(tmp_path / "old.pt")
    assert ckpt.tgt_tokenizer == ckpt.src_tokenizer and ckpt.training == {} and ckpt.scores is None
    assert load_checkpoint(tmp_path / "old.pt").keys() == state.keys() | {"format", "format_version"}


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
