"""Checkpoint averaging, the k best checkpoints a run keeps, early stopping and the schedule inside a real (tiny) run."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from typer.testing import CliRunner

from tests.conftest import tiny_model, toy_pairs, write_corpus
from seq2seq.tools.average import average_checkpoints, kept_checkpoints
from seq2seq.model.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from seq2seq.cli.app import app
from seq2seq.config import Config, ModelConfig, config_from_dict, config_to_dict
from seq2seq.errors import CheckpointError
from seq2seq.model.network import Seq2Seq
from seq2seq.training.schedule import LRSchedule
from seq2seq.data.tokenizer import Tokenizer
from seq2seq.training.trainer import train
from seq2seq.decode.evaluate import evaluate
from seq2seq.decode.translator import Translator
from seq2seq.data.vocab import SPECIALS


def checkpoint(path: Path, seed: int, vocab: list[str] | None = None) -> dict:
    model = tiny_model(seed)
    cfg = Config(model=model.cfg)
    src = list(SPECIALS) + [f"s{i}" for i in range(19)]
    tgt = vocab or list(SPECIALS) + [f"t{i}" for i in range(21)]
    state = {
        "config": config_to_dict(cfg), "src_vocab": src, "tgt_vocab": tgt, "tokenizer": Tokenizer().to_dict(),
        "model": model.state_dict(), "step": seed,
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


def test_dropout_knobs_default_to_model_dropout() -> None:
    plain = Seq2Seq(ModelConfig(dropout=0.3, enc_layers=2), 10, 10)
    assert {plain.encoder.dropout.p, plain.encoder.hidden_dropout.p, plain.encoder.rnn.dropout} == {0.3}
    assert {plain.decoder.dropout.p, plain.decoder.hidden_dropout.p, plain.decoder.output_dropout.p} == {0.3}
    split = Seq2Seq(ModelConfig(dropout=0.3, emb_dropout=0.1, hidden_dropout=0.2, output_dropout=0.0, enc_layers=2), 10, 10)
    assert (split.encoder.dropout.p, split.encoder.hidden_dropout.p, split.encoder.rnn.dropout) == (0.1, 0.2, 0.2)
    assert (split.decoder.dropout.p, split.decoder.hidden_dropout.p, split.decoder.output_dropout.p) == (0.1, 0.2, 0.0)


def tiny_config(tmp_path: Path, **train_keys: object) -> Config:
    data = tmp_path / "data"
    raw = {
        "data": {
            "train": write_corpus(data, "train", toy_pairs("train", 400)), "valid": write_corpus(data, "val", toy_pairs("val", 30)),
            "src_lang": "en", "tgt_lang": "de", "level": "bpe", "vocab_size": 320,
        },
        "model": {"emb_size": 16, "hidden_size": 24, "attention": "luong", "dropout": 0.0},
        "train": {"batch_size": 32, "epochs": 5, "lr": 0.01, "seed": 3, "run_dir": str(tmp_path / "run"), **train_keys},
        "decode": {"batch_size": 64},
    }
    return config_from_dict(raw)


def test_run_keeps_its_k_best_checkpoints_follows_its_schedule_and_averages(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # runs/latest goes here
    cfg = tiny_config(
        tmp_path, max_steps=12, valid_every=3, keep_best=2, log_every=1, schedule="warmup_cosine", warmup_steps=4
    )
    result = train(cfg, Path(cfg.train.run_dir), quiet=True)
    run = result.run_dir
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    validations = [r for r in records if "val_bleu" in r]
    best_two = sorted(validations, key=lambda r: -r["val_bleu"])[:2]  # stable: earlier step first on ties
    assert sorted(p.name for p in run.glob("ckpt-*.pt")) == sorted(f"ckpt-{r['step']}.pt" for r in best_two)
    state = load_checkpoint(run / "last.pt")
    assert [k["step"] for k in state["kept_best"]] == [r["step"] for r in best_two]
    expected = LRSchedule.from_config(cfg.train, default_decay_steps=12)
    assert [r["lr"] for r in records if "lr" in r] == pytest.approx([expected.lr_at(s) for s in range(1, 13)])

    # The checkpoint carries the sentencepiece model: decoding needs nothing from the run directory.
    shutil.rmtree(run / "sentencepiece")
    proc = CliRunner().invoke(app, ["average", "--model", str(run)])
    assert proc.exit_code == 0, proc.output
    averaged = load_checkpoint(run / "averaged.pt")
    kept = [load_checkpoint(p)["model"] for p in kept_checkpoints(run)]
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
    t = Translator.load(run)
    pairs = toy_pairs("val", 30)
    greedy = evaluate(t.model, pairs, t.src, t.tgt, t.device, "fp32", replace(t.cfg.decode, beam_size=1))
    beam = evaluate(t.model, pairs, t.src, t.tgt, t.device, "fp32", replace(t.cfg.decode, beam_size=3, length_penalty=1.0))
    assert greedy.loss == beam.loss and 0.0 <= beam.bleu <= 100.0
    assert beam.hypotheses == [t.translate([s], beam_size=3)[0] for s, _ in pairs]


def test_early_stopping_ends_the_run_after_patience_validations_without_gain(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With a learning rate too small to change any output, BLEU never improves after the first validation."""
    monkeypatch.chdir(tmp_path)
    cfg = tiny_config(tmp_path, max_steps=40, valid_every=2, patience=2, lr=1e-12)
    result = train(cfg, Path(cfg.train.run_dir), quiet=True)
    assert result.progress.step == 6  # validations at 2 (first: a gain), 4 and 6 (no gain) -> stop
    state = load_checkpoint(Path(cfg.train.run_dir) / "last.pt")
    assert state["early_stopping"]["bad"] == 2
