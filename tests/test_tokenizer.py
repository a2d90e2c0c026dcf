"""Tokenizer reversibility and the vocabulary."""

from __future__ import annotations

from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st

from seq2seq.data.tokenizer import JOINER, Tokenizer, normalize_whitespace
from seq2seq.data.vocab import BOS, EOS, PAD, SPECIALS, UNK, Vocab

WORD, CHAR = Tokenizer("word"), Tokenizer("char")


@settings(max_examples=400, deadline=None)
@given(st.text())
def test_word_level_is_reversible(text):
    s = normalize_whitespace(text)
    assert WORD.detokenize(WORD.tokenize(s)) == s


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("ab ,.'\"-") + [JOINER, "<", ">", "\u0301", "é", "1"])))
def test_word_level_is_reversible_on_punctuation_heavy_text(text):
    s = normalize_whitespace(text)
    tokens = WORD.tokenize(s)
    assert WORD.detokenize(tokens) == s
    assert all(t and not t.isspace() for t in tokens)


@settings(max_examples=200, deadline=None)
@given(st.text())
def test_char_level_is_reversible(text):
    s = normalize_whitespace(text)
    assert CHAR.detokenize(CHAR.tokenize(s)) == s


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


def test_vocab_specials_round_trip_and_unknowns(tmp_path):
    assert (PAD, UNK, BOS, EOS) == (0, 1, 2, 3)
    vocab = Vocab.build(Counter({"b": 3, "a": 3, "c": 1, "d": 2}), min_freq=2)
    assert vocab.itos == list(SPECIALS) + ["a", "b", "d"]  # by count, ties alphabetical; c under min_freq
    assert Vocab.build(Counter({"b": 3, "a": 3, "d": 2}), max_size=2).itos[4:] == ["a", "b"]
    assert vocab.encode(["a", "zzz", "c"]) == [4, UNK, UNK]
    assert vocab.decode([BOS, 4, 5, EOS, 6]) == ["a", "b"]
    vocab.save(tmp_path / "v.json")
    assert Vocab.load(tmp_path / "v.json") == vocab
