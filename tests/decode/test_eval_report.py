"""`eval` reports the model that decoded: with --quantize int8 the loss is the int8 model's, and the report
(text and --json) names the beam, the batch size, the quantization and the precision it ran with.

The model is built in memory (random weights, toy vocabularies): int8 rounding moves its loss, and that
is all these tests need.
"""

from __future__ import annotations

import json
import math
import sys
from collections import Counter

import pytest
import torch

from seq2seq.config import Config, ModelConfig
from seq2seq.data.batch import encode_pairs
from seq2seq.data.tokenizer import Tokenizer
from seq2seq.data.vocab import Vocab
from seq2seq.decode.evaluate import DecodingSetup, Scores, corpus_loss, evaluate
from seq2seq.files import dump_json
from seq2seq.decode.translator import Translator
from seq2seq.model.checkpoint import Checkpoint
from seq2seq.model.network import Seq2Seq
from tests.conftest import toy_pairs, write_corpus

PAIRS = toy_pairs("val", 24)


def toy_checkpoint(seed: int = 0) -> Checkpoint:
    """A checkpoint of a small random model whose word vocabularies cover PAIRS."""
    tokenizer = Tokenizer()
    src = Vocab.build(Counter(t for s, _ in PAIRS for t in tokenizer.tokenize(s)))
    tgt = Vocab.build(Counter(t for _, s in PAIRS for t in tokenizer.tokenize(s)))
    cfg = Config(model=ModelConfig(emb_size=16, hidden_size=24, dropout=0.0))
    torch.manual_seed(seed)
    model = Seq2Seq(cfg.model, len(src), len(tgt))
    return Checkpoint(cfg, src, tgt, tokenizer, tokenizer, model.state_dict(), 5)


@pytest.fixture(scope="module")
def ckpt() -> Checkpoint:
    return toy_checkpoint()


def loss_of(t: Translator, precision: str, batch_size: int) -> float:
    """Teacher-forced loss per token of `t.model` on PAIRS, outside `evaluate`.

    The batch size matters with int8: dynamic quantization scales the activations per batch.
    """
    total, n = corpus_loss(t.model, encode_pairs(PAIRS, t.src, t.tgt), t.device, precision, batch_size)
    return total / n


def strict_json(text: str) -> dict:
    def refuse(constant: str) -> None:
        raise ValueError(f"not JSON: {constant}")
    return json.loads(text, parse_constant=refuse)


def cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """Run the console entry point in this process: exit code, stdout, stderr."""
    from seq2seq.cli.app import main

    monkeypatch.setattr(sys, "argv", ["seq2seq", *args])
    with pytest.raises(SystemExit) as exit_info:
        main()
    out, err = capsys.readouterr()
    return int(exit_info.value.code or 0), out, err


def test_the_int8_loss_is_the_int8_models_and_the_scores_say_so(ckpt: Checkpoint) -> None:
    fp32 = Translator.from_checkpoint(ckpt, "cpu", "fp32", "none")
    int8 = Translator.from_checkpoint(ckpt, "cpu", None, "int8")
    assert loss_of(int8, "fp32", 5) != loss_of(fp32, "fp32", 5)  # int8 rounding moves the loss: the check below means something
    decode_cfg = int8.decode_config(beam_size=2, batch_size=5)
    scores = evaluate(int8.model, PAIRS, int8.src, int8.tgt, int8.device, int8.precision, decode_cfg)
    assert scores.loss == pytest.approx(loss_of(int8, "fp32", 5), rel=1e-9)
    assert scores.ppl == pytest.approx(math.exp(scores.loss))
    assert scores.setup == DecodingSetup(beam_size=2, batch_size=5, quantize="int8", precision="fp32", device="cpu")
    plain = evaluate(fp32.model, PAIRS, fp32.src, fp32.tgt, fp32.device, "fp32", fp32.decode_config())
    assert plain.setup == DecodingSetup(beam_size=1, batch_size=128, quantize="none", precision="fp32", device="cpu")
    assert plain.loss == pytest.approx(loss_of(fp32, "fp32", 128), rel=1e-9)


@pytest.mark.skipif(torch.cuda.is_available(), reason="eval decodes on CUDA when present, and int8 runs on the CPU only")
def test_eval_json_and_table_report_the_quantized_models_loss_and_the_setup(tmp_path, monkeypatch, capsys, ckpt) -> None:
    path = tmp_path / "model.pt"
    ckpt.write(path)
    prefix = write_corpus(tmp_path, "dev", PAIRS)
    files = ["--src", f"{prefix}.en", "--ref", f"{prefix}.de"]
    int8_loss = loss_of(Translator.from_checkpoint(ckpt, "cpu", None, "int8"), "fp32", 7)
    fp32_loss = loss_of(Translator.from_checkpoint(ckpt, "cpu", "fp32", "none"), "fp32", 7)
    assert abs(int8_loss - fp32_loss) > 1e-6

    code, out, err = cli(monkeypatch, capsys, "eval", "--model", str(path), *files, "--quantize", "int8", "--beam", "2", "--batch-size", "7", "--json", "-q")
    assert code == 0, err
    report = strict_json(out)
    assert {k: report[k] for k in ("beam_size", "batch_size", "quantize", "precision", "device")} == {
        "beam_size": 2, "batch_size": 7, "quantize": "int8", "precision": "fp32", "device": "cpu",
    }
    assert report["loss"] == pytest.approx(int8_loss, rel=1e-9) and report["n_sentences"] == len(PAIRS)

    code, out, err = cli(monkeypatch, capsys, "eval", "--model", str(path), *files, "--quantize", "int8", "--beam", "2", "--batch-size", "7", "-q")
    assert code == 0, err
    assert "decoding     beam 2, batch 7, quantize int8, precision fp32, cpu\n" in out
    assert f"loss / ppl   {int8_loss:.4f} / " in out

    code, out, err = cli(monkeypatch, capsys, "eval", "--model", str(path), *files, "--json", "-q")
    assert code == 0, err
    plain = strict_json(out)
    assert plain["quantize"] == "none" and plain["beam_size"] == 1 and plain["batch_size"] == 128
    assert plain["precision"] in ("fp32", "bf16") and plain["loss"] != report["loss"]


def test_a_non_finite_loss_is_null_in_the_json_report() -> None:
    setup = DecodingSetup(beam_size=1, batch_size=8, quantize="none", precision="fp32", device="cpu")
    scores = Scores(10.0, 20.0, 30.0, math.inf, math.inf, 3, 9, setup, {"bleu": "sig"})
    report = strict_json(dump_json({**scores.as_dict(), "model": "m.pt"}))
    assert report["loss"] is None and report["ppl"] is None and report["bleu"] == 10.0 and report["quantize"] == "none"
