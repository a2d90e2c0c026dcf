"""Checkpoint averaging: the mean of the weights, refused across vocabularies, and `average` on a run's k best
checkpoints writes one that decodes with nothing else from the run directory."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from seq2seq.cli.app import app
from seq2seq.config import Config, config_to_dict
from seq2seq.data.tokenizer import Tokenizer
from seq2seq.data.vocab import SPECIALS
from seq2seq.errors import CheckpointError
from seq2seq.model.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from seq2seq.model.network import Seq2Seq
from seq2seq.tools.average import average_checkpoints, kept_checkpoints
from tests.conftest import tiny_model


def checkpoint(path: Path, seed: int, vocab: list[str] | None = None) -> dict:
    model = tiny_model(seed)
    cfg = Config(model=model.cfg)
    src = list(SPECIALS) + [f"s{i}" for i in range(19)]
    tgt = vocab or list(SPECIALS) + [f"t{i}" for i in range(21)]
    state = {
        "config": config_to_dict(cfg), "src_vocab": src, "tgt_vocab": tgt, "tokenizer": Tokenizer().to_dict(),
        "tgt_tokenizer": Tokenizer().to_dict(), "model": model.state_dict(), "step": seed,
    }
    save_checkpoint(path, state)
    return state


def test_average_of_two_checkpoints_is_the_mean_of_their_weights(tmp_path: Path) -> None:
    a, b = checkpoint(tmp_path / "a.pt", 1), checkpoint(tmp_path / "b.pt", 2)
    averaged = average_checkpoints([tmp_path / "a.pt", tmp_path / "b.pt"])
    assert averaged.weights.keys() == a["model"].keys()
    for name, weight in averaged.weights.items():
        assert not torch.equal(a["model"][name], b["model"][name]) or name.endswith("bias")
        torch.testing.assert_close(weight, (a["model"][name] + b["model"][name]) / 2, rtol=0, atol=1e-7)
    averaged.write(tmp_path / "avg.pt")
    state = load_checkpoint(tmp_path / "avg.pt")  # the layout: decoding keys, the first's step, what it averaged
    assert state["averaged_from"] == [str(tmp_path / "a.pt"), str(tmp_path / "b.pt")] and state["step"] == 1
    assert "optimizer" not in state and "scores" not in state
    reread = Checkpoint.read(tmp_path / "avg.pt")  # loads like any checkpoint
    assert isinstance(reread.build_model(), Seq2Seq) and reread.averaged_from == state["averaged_from"]


def test_averaging_refuses_checkpoints_of_another_vocabulary(tmp_path: Path) -> None:
    checkpoint(tmp_path / "a.pt", 1)
    checkpoint(tmp_path / "b.pt", 2, vocab=list(SPECIALS) + [f"u{i}" for i in range(21)])
    with pytest.raises(CheckpointError, match="b.pt"):
        average_checkpoints([tmp_path / "a.pt", tmp_path / "b.pt"])
    with pytest.raises(CheckpointError, match="keep_best"):
        kept_checkpoints(tmp_path)


def test_the_average_command_averages_the_kept_checkpoints_into_one_that_decodes_alone(bpe_run: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(bpe_run, run)
    # The checkpoint carries the sentencepiece model: decoding needs nothing from the run directory.
    shutil.rmtree(run / "sentencepiece")
    proc = CliRunner().invoke(app, ["average", "--model", str(run)])
    assert proc.exit_code == 0, proc.output
    averaged = load_checkpoint(run / "averaged.pt")
    kept = [load_checkpoint(p)["model"] for p in kept_checkpoints(run)]
    assert len(kept) == 2 and averaged["averaged_from"] == [str(p) for p in kept_checkpoints(run)]
    name = "decoder.embed.weight"
    torch.testing.assert_close(averaged["model"][name], (kept[0][name] + kept[1][name]) / 2, rtol=0, atol=1e-6)
    proc = CliRunner().invoke(
        app, ["translate", "--model", str(run / "averaged.pt"), "--beam", "3", "--nbest", "2", "A dog sees it.", "", "The women"]
    )
    assert proc.exit_code == 0, proc.output
    blocks: list[list[str]] = [[]]
    for line in proc.stdout.split("\n")[:-1]:  # each input's block ends with an empty line
        if line:
            blocks[-1].append(line)
        else:
            blocks.append([])
    assert blocks[-1] == [] and len(blocks) == 4
    assert blocks[1] == []  # the empty input has no hypotheses
    for block in (blocks[0], blocks[2]):
        assert len(block) == 2 and all(len(line.split("\t")) == 2 for line in block)
        scores = [float(line.split("\t")[0]) for line in block]
        assert scores == sorted(scores, reverse=True)
