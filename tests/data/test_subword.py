"""Sentencepiece subwords: exact round trip, the model inside the tokenizer / checkpoint, joint and per-side models."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import torch

from tests.conftest import toy_pairs
from seq2seq.config import DataConfig
from seq2seq.data.vocab import build_vocabs
from seq2seq.errors import ConfigError
from seq2seq.data.subword import load_or_train, train_sentencepiece
from seq2seq.data.tokenizer import Tokenizer, normalize
from seq2seq.data.vocab import SPECIALS, UNK
from seq2seq.runfiles import RunFiles

UNSEEN = [
    "Ärger über ½ Preis — naïve café 😀",
    "tab\tand  many   spaces ",
    "￭ joiner and <unk> and ▁ marker",
    "private \uf581 use \uf581\uf581_ and \uf581_ \u2581\uf581",  # the escape character of ▁, literally
]


@pytest.fixture(scope="module")
def toy_text() -> list[str]:
    pairs = toy_pairs("train", 3000) + toy_pairs("val") + toy_pairs("test")
    return [normalize(s, False) for s, _ in pairs] + [normalize(t, False) for _, t in pairs]


@pytest.fixture(scope="module", params=["bpe", "unigram"])
def tokenizer(request: pytest.FixtureRequest, toy_text: list[str]) -> Tokenizer:
    return Tokenizer(request.param, False, train_sentencepiece(toy_text, request.param, 400))


def test_round_trip_is_exact_on_the_toy_corpus(tokenizer: Tokenizer, toy_text: list[str]) -> None:
    for line in toy_text:
        pieces = tokenizer.tokenize(line)
        assert tokenizer.detokenize(pieces) == line
    assert max(len(tokenizer.tokenize(line)) for line in toy_text) < max(len(line) for line in toy_text)  # not characters


def test_round_trip_is_exact_on_unseen_characters(tokenizer: Tokenizer) -> None:
    """Byte fallback spells characters the model never saw, so even they come back (whitespace normalized)."""
    for text in UNSEEN:
        assert tokenizer.detokenize(tokenizer.tokenize(text)) == normalize(text, False)
    assert tokenizer.tokenize("") == [] and tokenizer.detokenize([]) == ""


def test_lowercase_applies_before_the_subword_model(toy_text: list[str]) -> None:
    tok = Tokenizer("bpe", True, train_sentencepiece([t.lower() for t in toy_text], "bpe", 300))
    assert tok.detokenize(tok.tokenize("The Dogs SEE It.")) == "the dogs see it."


def test_model_travels_in_the_checkpoint_dict(tokenizer: Tokenizer, toy_text: list[str]) -> None:
    buffer = io.BytesIO()
    torch.save({"tokenizer": tokenizer.to_dict()}, buffer)
    buffer.seek(0)
    loaded = Tokenizer.from_dict(torch.load(buffer, weights_only=True)["tokenizer"])
    assert loaded == tokenizer
    assert all(loaded.tokenize(line) == tokenizer.tokenize(line) for line in toy_text[:200])
    assert Tokenizer.from_dict(Tokenizer("word").to_dict()) == Tokenizer("word")  # word level: no model


def test_subword_level_needs_a_model_and_other_levels_refuse_one() -> None:
    with pytest.raises(ValueError):
        Tokenizer("bpe")
    with pytest.raises(ValueError):
        Tokenizer("word", False, b"x")
    with pytest.raises(ValueError):
        Tokenizer("bpe", False, b"not a model")


def test_vocab_holds_our_specials_then_pieces_seen_in_training(tokenizer: Tokenizer) -> None:
    pairs = toy_pairs("train", 500)
    src_vocab, tgt_vocab = build_vocabs(pairs, tokenizer, 1, None, False)
    assert tuple(src_vocab.itos[:4]) == SPECIALS and tuple(tgt_vocab.itos[:4]) == SPECIALS
    for s, t in pairs[:50]:
        assert UNK not in src_vocab.encode(tokenizer.tokenize(s))
        assert UNK not in tgt_vocab.encode(tokenizer.tokenize(t))


@pytest.mark.parametrize("shared", [True, False])
def test_load_or_train_writes_models_into_the_run_dir_and_reads_them_back(tmp_path: Path, shared: bool) -> None:
    pairs = toy_pairs("train", 800)
    d = DataConfig(level="bpe", vocab_size=400, sp_shared=shared)
    src, tgt = load_or_train(d, tmp_path, pairs)
    src_path, tgt_path = RunFiles(tmp_path).subword_models(shared)
    assert src_path.exists() and tgt_path.exists() and (src_path == tgt_path) == shared
    assert (src == tgt) == shared
    if not shared:  # English and German pieces differ
        assert src.tokenize("The dogs") != tgt.tokenize("The dogs")
    again = load_or_train(d, tmp_path, None)  # no training data needed once they exist
    assert again == (src, tgt)
    with pytest.raises(ConfigError, match="sentencepiece"):
        load_or_train(d, tmp_path / "elsewhere", None)


def test_too_small_a_vocabulary_is_a_config_error(toy_text: list[str]) -> None:
    with pytest.raises(ConfigError, match="data.vocab_size"):
        train_sentencepiece(toy_text, "bpe", 50)


@pytest.mark.parametrize("src_level, tgt_level, sp_shared", [("char", "bpe", True), ("unigram", "space", False), ("bpe", "unigram", True)])
def test_sentencepiece_only_on_the_subword_sides(tmp_path: Path, src_level: str, tgt_level: str, sp_shared: bool) -> None:
    """A side of another level needs no model; sides of two subword levels get one model each, even with sp_shared."""
    pairs = toy_pairs("train", 400)
    d = DataConfig(level="word", src_level=src_level, tgt_level=tgt_level, vocab_size=400, sp_shared=sp_shared)
    src, tgt = load_or_train(d, tmp_path, pairs)
    assert (src.level, tgt.level) == (src_level, tgt_level)
    models = sorted(p.name for p in (tmp_path / "sentencepiece").iterdir())
    expected = [name for name, level in (("src.model", src_level), ("tgt.model", tgt_level)) if level in ("bpe", "unigram")]
    assert models == expected
    for tokenizer, text in ((src, pairs[0][0]), (tgt, pairs[0][1])):
        assert tokenizer.detokenize(tokenizer.tokenize(text)) == normalize(text, False)
    if src_level == "char":
        assert src.tokenize("Hi") == ["H", "i"] and tgt.sp_model is not None
    assert load_or_train(d, tmp_path, None) == (src, tgt)  # read back, nothing trained
