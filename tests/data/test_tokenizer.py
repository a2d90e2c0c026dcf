"""The tokenizer: reversible on any text (word and character level), punctuation split and marked, no line break
inside a token."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

import pytest

from seq2seq.config import DataConfig
from seq2seq.data.tokenizer import JOINER, Tokenizer, normalize_whitespace, plain_tokenizers
from tests.conftest import unicode_text

WORD, CHAR = Tokenizer("word"), Tokenizer("char")


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("ab ,.'\"-") + [JOINER, "<", ">", "\u0301", "é", "1"])))
def test_word_level_is_reversible_on_punctuation_heavy_text(text):
    s = normalize_whitespace(text)
    tokens = WORD.tokenize(s)
    assert WORD.detokenize(tokens) == s
    assert all(t and not t.isspace() for t in tokens)


def test_word_level_splits_punctuation_and_marks_only_punctuation():
    assert WORD.tokenize("Hello, world.") == ["Hello", JOINER + ",", "world", JOINER + "."]
    assert WORD.tokenize("(it's)") == ["(" + JOINER, "it", JOINER + "'" + JOINER, "s", JOINER + ")"]
    # A word reads the same wherever it stands: the vocabulary does not double.
    assert "dog" in WORD.tokenize("the dog.") and "dog" in WORD.tokenize("dog, cat")


def test_unicode_words_and_combining_marks_stay_whole():
    assert WORD.tokenize("Straße über café") == ["Straße", "über", "café"]
    assert WORD.tokenize("cafe\u0301 ok") == ["cafe\u0301", "ok"]


def test_lowercase_option():
    assert Tokenizer("word", lowercase=True).tokenize("The Dog") == ["the", "dog"]


# Any text, word, character or space level, lowercased or not (hypothesis draws the line-breaking characters often).
@settings(max_examples=300, deadline=None)
@given(unicode_text, st.sampled_from(["word", "char", "space"]), st.booleans())
def test_tokenize_detokenize_any_unicode(text, level, lowercase):
    tokenizer = Tokenizer(level=level, lowercase=lowercase)
    tokens = tokenizer.tokenize(text)
    expected = normalize_whitespace(text)
    assert tokenizer.detokenize(tokens) == (expected.lower() if lowercase else expected)
    # no token can carry a line break into an output line
    assert not any(c in token for token in tokens for c in "\n\r\x0b\x0c\x1c\x85\u2028")


def test_space_level_keeps_pre_tokenized_symbols_whole():
    tokenizer = Tokenizer("space")
    # what `char` cuts into A W 1 and `word` glues into one token, `space` keeps as the symbols they are
    assert tokenizer.tokenize("  B R AW1 N\tL IY0 ") == ["B", "R", "AW1", "N", "L", "IY0"]
    assert tokenizer.tokenize("x=f(a, b);") == ["x=f(a,", "b);"]  # no punctuation split
    assert tokenizer.detokenize(["B", "R", "AW1"]) == "B R AW1"
    assert tokenizer.tokenize("") == [] and tokenizer.tokenize("   ") == []
    assert Tokenizer.from_dict(tokenizer.to_dict()) == tokenizer


def test_each_side_has_its_level():
    d = DataConfig(level="word", src_level="char", tgt_level="space")
    src, tgt = plain_tokenizers(d)
    assert d.levels == ("char", "space")
    assert src.tokenize("brownlee") == list("brownlee") and tgt.tokenize("B R AW1") == ["B", "R", "AW1"]
    assert DataConfig(level="char", tgt_level="space").levels == ("char", "space")
    assert DataConfig(level="space").levels == ("space", "space")  # unset sides follow data.level
    with pytest.raises(ValueError, match="subword"):
        plain_tokenizers(DataConfig(src_level="bpe"))  # a trained model is data/subword.py's
