"""Preprocessed shards hold exactly what the text path encodes, and stale or foreign shards are refused."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from seq2seq.config import load_config
from seq2seq.data.batch import BucketSampler, collate, example_lengths
from seq2seq.data.encoding import Encoder, encode_pairs
from seq2seq.data.tokenizer import plain_tokenizers
from seq2seq.data.vocab import Vocab, build_vocabs
from seq2seq.data.corpus import load_corpus
from seq2seq.errors import DataError
from seq2seq.data.shards import open_shards
from seq2seq.training.preprocess import preprocess
from seq2seq.training.trainer import train

SRC = [
    "\ufeffThe dog sees you .", "a cat", "", "I love you", "one two three four five six seven eight nine ten eleven",
    "  spaced   out  ", "x", "Hello, world!", "it's fine", "ünïcödé wörds", "short", "the end .", "a b c",
]
TGT = [
    "Der Hund sieht dich .", "eine Katze", "leer", "Ich liebe dich", "kurz", "weit weg", "", "Hallo, Welt!",
    "es geht", "Ümläüte", "kurz", "das Ende .", "a b c d",
]


def write_corpus(tmp_path: Path, fmt: str) -> dict[str, str]:
    """A small corpus with a BOM, CRLF line ends, an empty side on each side and a too-long pair."""
    if fmt == "tsv":
        (tmp_path / "train.tsv").write_bytes("".join(f"{s}\t{t}\r\n" for s, t in zip(SRC, TGT)).encode())
        (tmp_path / "valid.tsv").write_text("a cat\teine Katze\n", encoding="utf-8")
        return {"train": str(tmp_path / "train.tsv"), "valid": str(tmp_path / "valid.tsv"), "format": "tsv"}
    (tmp_path / "train.en").write_bytes("".join(s + "\r\n" for s in SRC).encode())
    (tmp_path / "train.de").write_bytes("\n".join(TGT).encode())  # no final newline
    (tmp_path / "valid.en").write_text("a cat\n", encoding="utf-8")
    (tmp_path / "valid.de").write_text("eine Katze\n", encoding="utf-8")
    return {"train": str(tmp_path / "train"), "valid": str(tmp_path / "valid"), "format": "parallel"}


def make_config(tmp_path: Path, data: dict[str, str], *extra: str):
    sets = [f"data.{k}={v}" for k, v in data.items()] + [
        "data.src_lang=en", "data.tgt_lang=de", "data.max_len=8", f"train.run_dir={tmp_path / 'run'}",
        "model.emb_size=8", "model.hidden_size=8", "model.dropout=0.0", "train.batch_size=3", "train.device=cpu",
        "train.max_steps=3", "train.epochs=1", "decode.max_len_b=3",
    ]
    return load_config(None, sets + list(extra))


@pytest.mark.parametrize("fmt, workers", [("parallel", 2), ("tsv", 1)])
def test_shards_give_the_text_paths_examples_and_batches(tmp_path: Path, fmt: str, workers: int) -> None:
    cfg = make_config(tmp_path, write_corpus(tmp_path, fmt))
    d = cfg.data
    result = preprocess(cfg, tmp_path / "run", workers=workers, quiet=True, chunk_size=4)  # several chunks, out of order
    pairs = load_corpus(d, "train")
    src_tok, tgt_tok = plain_tokenizers(d)
    src_vocab, tgt_vocab = build_vocabs(pairs, src_tok, d.min_freq, d.max_size, d.shared_vocab, tgt_tokenizer=tgt_tok)
    examples = encode_pairs(pairs, Encoder(src_tok, src_vocab), Encoder(tgt_tok, tgt_vocab), d.max_len)
    assert 0 < len(examples) < len(pairs) < len(SRC)  # both filters dropped something

    shards = open_shards(tmp_path / "run", cfg)
    assert shards is not None
    shards.check_vocabs(src_vocab, tgt_vocab)  # preprocess built the very vocabularies of the text path
    dataset = shards.dataset()
    assert result.n_examples == len(dataset) == len(examples)
    assert [dataset[i] for i in range(len(dataset))] == examples
    assert tuple(x.tolist() for x in dataset.lengths()) == example_lengths(examples)
    for epoch in range(2):
        from_text = BucketSampler(*example_lengths(examples), batch_size=3, seed=7).batches(epoch)
        from_shards = BucketSampler(*dataset.lengths(), batch_size=3, seed=7).batches(epoch)
        assert from_text == from_shards
        for index in from_text:
            a, b = collate([examples[i] for i in index]), collate([dataset[i] for i in index])
            assert all(torch.equal(x, y) for x, y in zip(a, b))


def test_stale_shards_are_refused(tmp_path: Path) -> None:
    data = write_corpus(tmp_path, "parallel")
    cfg = make_config(tmp_path, data)
    preprocess(cfg, tmp_path / "run", workers=1, quiet=True)
    with pytest.raises(DataError, match=r"stale shards, made with data.max_len=8 \(config: 9\)"):
        open_shards(tmp_path / "run", make_config(tmp_path, data, "data.max_len=9"))
    assert open_shards(tmp_path / "run", make_config(tmp_path, data, "data.valid=elsewhere")) is not None
    with open(tmp_path / "train.en", "a", encoding="utf-8") as f:
        f.write("one more line\n")
    with pytest.raises(DataError, match="the corpus files changed"):
        train(cfg, tmp_path / "run", quiet=True)


def test_shards_from_another_vocabulary_are_refused(tmp_path: Path) -> None:
    cfg = make_config(tmp_path, write_corpus(tmp_path, "parallel"))
    preprocess(cfg, tmp_path / "run", workers=1, quiet=True)
    vocab = tmp_path / "run" / "tgt_vocab.json"
    vocab.write_text(vocab.read_text(encoding="utf-8").replace('"Hund"', '"Hunde"'), encoding="utf-8")
    with pytest.raises(DataError, match="another tgt vocabulary"):
        train(cfg, tmp_path / "run", quiet=True)


@pytest.mark.parametrize("block", [1, 3, 1000])
def test_write_ids_remaps_and_appends_the_end_across_blocks(tmp_path: Path, block: int) -> None:
    import numpy as np

    from seq2seq.data.encoding import SOURCE_END
    from seq2seq.data.shards import write_ids

    lengths = np.array([2, 0, 3, 1, 4], dtype=np.int64)
    provisional = np.arange(int(lengths.sum()), dtype=np.int32)[::-1].copy()
    provisional.tofile(tmp_path / "p")
    remap = (np.arange(len(provisional), dtype=np.uint16) + 10) * 2
    pieces = [p.tolist() for p in np.split(remap[provisional], np.cumsum(lengths)[:-1])]
    for end in ((), SOURCE_END, (7, 9)):
        write_ids(tmp_path / "p", lengths, remap, tmp_path / "out", end, block=block)
        assert np.fromfile(tmp_path / "out", dtype=np.uint16).tolist() == [i for p in pieces for i in p + list(end)]


def test_shards_tokenize_each_side_at_its_level(tmp_path: Path) -> None:
    cfg = make_config(tmp_path, write_corpus(tmp_path, "tsv"), "data.src_level=char", "data.tgt_level=space", "data.max_len=40")
    preprocess(cfg, tmp_path / "run", workers=1, quiet=True, chunk_size=4)
    shards = open_shards(tmp_path / "run", cfg)
    assert shards is not None
    src_vocab, tgt_vocab = (Vocab.load(tmp_path / "run" / f"{side}_vocab.json") for side in ("src", "tgt"))
    assert "H" in src_vocab.stoi and "Hello," not in src_vocab.stoi  # characters
    assert "Hello," not in tgt_vocab.stoi and "Hallo," in tgt_vocab.stoi and "Hallo" not in tgt_vocab.stoi  # whitespace pieces
    d = cfg.data
    pairs = load_corpus(d, "train")
    src_tok, tgt_tok = plain_tokenizers(d)
    examples = encode_pairs(pairs, Encoder(src_tok, src_vocab), Encoder(tgt_tok, tgt_vocab), d.max_len)
    dataset = shards.dataset()
    assert [dataset[i] for i in range(len(dataset))] == examples
    # a config of other levels finds these shards stale
    other = make_config(tmp_path, write_corpus(tmp_path, "tsv"), "data.max_len=40")
    with pytest.raises(DataError, match="src_level"):
        open_shards(tmp_path / "run", other)


def test_shards_compare_the_effective_levels_and_only_the_keys_that_matter(tmp_path: Path) -> None:
    """A level set by another key, or a sentencepiece key of a config without sentencepiece, changes no id: the shards
    stay good. Another effective level makes them stale."""
    data = write_corpus(tmp_path, "parallel")
    preprocess(make_config(tmp_path, data, "data.level=char"), tmp_path / "run", workers=1, quiet=True)
    for same in (["data.src_level=char", "data.tgt_level=char"], ["data.level=char", "data.vocab_size=16000"],
                 ["data.level=char", "data.sp_shared=false"], ["data.level=space", "data.src_level=char", "data.tgt_level=char"]):
        assert open_shards(tmp_path / "run", make_config(tmp_path, data, *same)) is not None, same
    with pytest.raises(DataError, match=r"stale shards, made with data.src_level='char' \(config: 'word'\);"):
        open_shards(tmp_path / "run", make_config(tmp_path, data, "data.level=char", "data.src_level=word"))
