"""The Translator: any Unicode in, one line out per line in (an empty input gives an empty output), long inputs
truncated with a warning, and the Python API as the README shows it."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from seq2seq.config import Config, ModelConfig, replace
from seq2seq.data.encoding import Encoder
from seq2seq.data.tokenizer import Tokenizer
from seq2seq.data.vocab import SPECIALS, Vocab
from seq2seq.decode.torch_backend import loaded_model
from seq2seq.decode.translator import Translator
from seq2seq.model.network import Seq2Seq
from tests.conftest import line


@pytest.fixture
def run(api_run: Path) -> Path:
    return api_run


def tiny_translator(max_src_len: int = 250) -> Translator:
    """A random (untrained) model on a small vocabulary: enough to run every decoding path."""
    torch.manual_seed(0)
    words = ["a", "b", "c", "der", "die", "das", "\uffed,", "\uffed.", "é", "x"]
    vocab = Vocab(list(SPECIALS) + words)
    # outputs of at most 3 tokens: decoding length is not what is tested here, and it keeps the test fast
    cfg = replace(Config(), "decode", max_src_len=max_src_len, max_len_a=0.0, max_len_b=3, batch_size=4)
    model = Seq2Seq(ModelConfig(emb_size=8, hidden_size=8, dropout=0.0), len(vocab), len(vocab)).eval()
    encoder = Encoder(Tokenizer("word"), vocab)
    return Translator.of([loaded_model(model, cfg, encoder, encoder, torch.device("cpu"), "fp32", Path("random"))])


TRANSLATOR = tiny_translator(max_src_len=30)


@settings(max_examples=50, deadline=None)
@given(st.lists(line, max_size=9))
def test_translate_any_unicode_keeps_the_line_count(lines):
    outputs = TRANSLATOR.translate(lines, batch_size=3)
    assert len(outputs) == len(lines)
    for text, out in zip(lines, outputs):
        assert "\n" not in out and "\r" not in out
        if not text.strip():
            assert out == ""


def test_long_inputs_are_truncated_with_a_warning(caplog):
    translator = tiny_translator(max_src_len=20)
    lines = ["a b c " * 2000, "", "der die das", "x " * 21]
    with caplog.at_level(logging.WARNING, logger="seq2seq"):
        outputs = translator.translate(lines)
    assert len(outputs) == 4 and outputs[1] == ""
    sources = translator.sources(lines, warn_truncated=False)
    assert [len(s.ids) for s in sources] == [21, 1, 4, 21]  # <eos> included
    assert [s.length for s in sources] == [6000, 0, 3, 21] and [s.truncated for s in sources] == [True, False, False, True]
    warning = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("2 input line(s) longer than decode.max_src_len=20 tokens were truncated (line 1, 4)" in w for w in warning)


def test_python_api_translates(run: Path) -> None:
    from seq2seq import Translator

    t = Translator.load(run, precision="fp32")  # fp32: bf16 kernels may round differently for another batch shape
    out = t.translate(["I love you", ""])
    assert len(out) == 2 and out[0] and out[1] == ""
    # one output per input, in input order, whatever the batch: an empty line between two others, one at a time
    assert t.translate(["", "I love you", "", "I love you"], batch_size=1) == ["", out[0], "", out[0]]
