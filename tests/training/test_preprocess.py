"""`preprocess`: training on its shards is training on the text, and bad corpora fail as on the text path."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from seq2seq.data.corpus import load_corpus
from seq2seq.data.shards import open_shards
from seq2seq.runfiles import RunFiles
from seq2seq.errors import DataError
from seq2seq.training.preprocess import preprocess
from seq2seq.training.trainer import train
from tests.data.test_shards import TGT, make_config, write_corpus


def test_training_on_shards_is_training_on_text(tmp_path: Path) -> None:
    data = write_corpus(tmp_path, "parallel")
    text_cfg = make_config(tmp_path / "text", data)
    shard_cfg = make_config(tmp_path / "shards", data)
    preprocess(shard_cfg, tmp_path / "shards" / "run", workers=1, quiet=True)
    text = train(text_cfg, tmp_path / "text" / "run", quiet=True)
    sharded = train(shard_cfg, tmp_path / "shards" / "run", quiet=True)
    assert text.progress.step == sharded.progress.step == 3
    a = torch.load(text.run_dir / "last.pt", weights_only=True)["model"]
    b = torch.load(sharded.run_dir / "last.pt", weights_only=True)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert "training data: " + str(RunFiles(sharded.run_dir).shards) in (sharded.run_dir / "train.log").read_text()


def test_preprocess_reports_bad_corpora(tmp_path: Path) -> None:
    cfg = make_config(tmp_path, write_corpus(tmp_path, "parallel"))
    (tmp_path / "train.de").write_text("eins\nzwei\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"misaligned corpus: .*train.en has 13 lines but .*train.de has 2"):
        preprocess(cfg, tmp_path / "run", workers=2, quiet=True, chunk_size=4)
    (tmp_path / "train.de").write_bytes(b"\n".join(t.encode() for t in TGT[:5]) + b"\n\xff\n" + b"\n".join(t.encode() for t in TGT[6:]))
    with pytest.raises(DataError) as from_text:
        load_corpus(cfg.data, "train")
    with pytest.raises(DataError) as from_preprocess:
        preprocess(cfg, tmp_path / "run", workers=2, quiet=True, chunk_size=4)
    assert str(from_preprocess.value) == str(from_text.value) == f"{tmp_path / 'train.de'}:6:1: not valid UTF-8 (byte 0xff)"
    assert open_shards(tmp_path / "run", cfg) is None  # no header is written for a failed run


@pytest.mark.parametrize(
    "sets, key",
    [(["data.src_level=bpe"], "data.src_level"), (["data.tgt_level=unigram"], "data.tgt_level"), (["data.level=bpe"], "data.level"),
     (["data.level=bpe", "data.src_level=char"], "data.level")],
)
def test_preprocess_refuses_an_untrained_subword_level_naming_the_key_that_set_it(tmp_path: Path, sets: list[str], key: str) -> None:
    from seq2seq.errors import ConfigError

    cfg = make_config(tmp_path, write_corpus(tmp_path, "parallel"), *sets)
    with pytest.raises(ConfigError, match=rf"^{key}: `seq2seq preprocess` reads word, char or space levels, not "):
        preprocess(cfg, tmp_path / "run", workers=1, quiet=True)
    assert not (tmp_path / "run").exists()
