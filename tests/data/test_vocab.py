"""The vocabulary: special ids as named constants, built by count (ties alphabetical), saved and loaded as JSON."""

from __future__ import annotations

from collections import Counter

from seq2seq.data.vocab import BOS, EOS, PAD, SPECIALS, UNK, Vocab


def test_vocab_specials_round_trip_and_unknowns(tmp_path):
    assert (PAD, UNK, BOS, EOS) == (0, 1, 2, 3)
    vocab = Vocab.build(Counter({"b": 3, "a": 3, "c": 1, "d": 2}), min_freq=2)
    assert vocab.itos == list(SPECIALS) + ["a", "b", "d"]  # by count, ties alphabetical; c under min_freq
    assert Vocab.build(Counter({"b": 3, "a": 3, "d": 2}), max_size=2).itos[4:] == ["a", "b"]
    assert vocab.encode(["a", "zzz", "c"]) == [4, UNK, UNK]
    assert vocab.decode([BOS, 4, 5, EOS, 6]) == ["a", "b"]
    vocab.save(tmp_path / "v.json")
    assert Vocab.load(tmp_path / "v.json") == vocab
