"""Arbitrary Unicode in, no exception out, and never a line dropped or merged.

Control characters that other tools treat as line breaks (\\x0b \\x0c \\x1c-\\x1e \\x85 \\u2028 \\u2029, a lone \\r)
are the usual way a translated file ends up one line short: they are drawn on purpose.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from seq2seq.config import Config, ModelConfig, replace
from seq2seq.data.batch import Encoder
from seq2seq.data.corpus import decode_lines
from seq2seq.model.network import Seq2Seq
from seq2seq.data.tokenizer import Tokenizer, normalize_whitespace
from seq2seq.decode.translator import Translator
from seq2seq.data.vocab import SPECIALS, Vocab

BREAKERS = ["\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x85", "\u2028", "\u2029", "\r", "\t", " ", "\x00", "\ufeff"]
# Any text, with line-breaking characters much more likely than st.text() alone would make them.
unicode_text = st.lists(st.one_of(st.text(max_size=8), st.sampled_from(BREAKERS)), max_size=12).map("".join)
line = unicode_text.filter(lambda s: "\n" not in s)


@settings(max_examples=300, deadline=None)
@given(unicode_text, st.sampled_from(["word", "char"]), st.booleans())
def test_tokenize_detokenize_any_unicode(text, level, lowercase):
    tokenizer = Tokenizer(level=level, lowercase=lowercase)
    tokens = tokenizer.tokenize(text)
    expected = normalize_whitespace(text)
    assert tokenizer.detokenize(tokens) == (expected.lower() if lowercase else expected)
    # no token can carry a line break into an output line
    assert not any(c in token for token in tokens for c in "\n\r\x0b\x0c\x1c\x85\u2028")


@settings(max_examples=150, deadline=None)
@given(st.lists(line, max_size=8), st.booleans())
def test_reading_keeps_every_line(lines, crlf):
    end = "\r\n" if crlf else "\n"
    raw = "".join(s + end for s in lines).encode("utf-8")
    read = decode_lines(raw, "<test>")
    assert len(read) == len(lines)
    for got, wrote in zip(read, lines):
        # only the line end goes (and, with \n endings, a \r just before it; a BOM opening the file)
        stripped = wrote[:-1] if not crlf and wrote.endswith("\r") else wrote
        assert got in (stripped, stripped.removeprefix("\ufeff"))


def tiny_translator(max_src_len: int = 250) -> Translator:
    """A random (untrained) model on a small vocabulary: enough to run every decoding path."""
    torch.manual_seed(0)
    words = ["a", "b", "c", "der", "die", "das", "\uffed,", "\uffed.", "é", "x"]
    vocab = Vocab(list(SPECIALS) + words)
    # outputs of at most 3 tokens: decoding length is not what is tested here, and it keeps the test fast
    cfg = replace(Config(), "decode", max_src_len=max_src_len, max_len_a=0.0, max_len_b=3, batch_size=4)
    model = Seq2Seq(ModelConfig(emb_size=8, hidden_size=8, dropout=0.0), len(vocab), len(vocab)).eval()
    encoder = Encoder(Tokenizer("word"), vocab)
    return Translator(cfg, model, encoder, encoder, torch.device("cpu"), "fp32", Path("random"), {})


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
    assert [len(ids) for ids in translator.encode_sources(lines)] == [21, 1, 4, 21]  # <eos> included
    warning = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("2 input line(s) longer than decode.max_src_len=20 tokens were truncated (line 1, 4)" in w for w in warning)
