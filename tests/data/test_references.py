"""Evaluation items (data/references): TSV lines that share a source are one item with several references, parallel
lines one item each (several with several --ref files); the loss keeps every (source, reference) pair."""

from __future__ import annotations

from pathlib import Path

import pytest

from seq2seq.config import DataConfig
from seq2seq.data.corpus import drop_empty, read_parallel_files
from seq2seq.data.references import (
    Item, group_references, load_eval_corpus, one_reference_each, read_references, read_tsv_references,
)
from seq2seq.errors import DataError
from tests.conftest import write_corpus

PAIRS = [("dog", "D AO1 G"), ("cat", "K AE1 T"), ("dog", "D AA1 G"), ("cat", "K AE1 T"), ("bee", "B IY1")]


def test_tsv_lines_that_share_a_source_are_one_item_with_its_distinct_references() -> None:
    data = group_references(PAIRS)
    assert data.items == [Item("dog", ("D AO1 G", "D AA1 G")), Item("cat", ("K AE1 T",)), Item("bee", ("B IY1",))]
    assert data.pairs == PAIRS  # the loss: every line, the repeated one too
    assert (data.max_references, data.n_several) == (2, 1)
    assert one_reference_each(PAIRS).items == [Item(s, (t,)) for s, t in PAIRS]


def test_the_config_format_decides_how_evaluation_data_is_grouped(tmp_path: Path) -> None:
    (tmp_path / "val.tsv").write_text("".join(f"{s}\t{t}\n" for s, t in PAIRS) + "owl\t\n", encoding="utf-8")
    tsv = load_eval_corpus(DataConfig(format="tsv", valid=str(tmp_path / "val.tsv")), "valid")
    assert tsv == group_references(PAIRS)  # the empty target dropped, as always
    prefix = write_corpus(tmp_path, "val", PAIRS)
    parallel = load_eval_corpus(DataConfig(valid=prefix, src_lang="en", tgt_lang="de"), "valid")
    assert parallel == one_reference_each(PAIRS) and parallel.max_references == 1
    assert read_tsv_references(tmp_path / "val.tsv", DataConfig()) == tsv  # `eval --data`, whatever the config's format
    with pytest.raises(DataError, match=r"val.de look like parallel files: score them with --src \S*val.en --ref \S*val.de$"):
        read_tsv_references(Path(prefix), DataConfig(src_lang="en", tgt_lang="de"))


def test_several_reference_files_give_each_line_their_references(tmp_path: Path) -> None:
    (tmp_path / "s.en").write_text("a\nb\n\nd\ne\n", encoding="utf-8")
    (tmp_path / "r1.de").write_text("A\nB\nC\n\nE\n", encoding="utf-8")
    (tmp_path / "r2.de").write_text("A2\nB\nC2\n\n E  \n", encoding="utf-8")
    data = read_references(tmp_path / "s.en", [tmp_path / "r1.de", tmp_path / "r2.de"])
    # line 3 has no source and line 4 no reference: dropped; line 2's and 5's references are one and the same
    assert data.items == [Item("a", ("A", "A2")), Item("b", ("B",)), Item("e", ("E",))]
    assert data.pairs == [("a", "A"), ("a", "A2"), ("b", "B"), ("b", "B"), ("e", "E"), ("e", "E")]
    one = read_references(tmp_path / "s.en", [tmp_path / "r1.de"])
    assert one == one_reference_each(drop_empty(read_parallel_files(tmp_path / "s.en", tmp_path / "r1.de"), "eval", "x"))


def test_a_reference_file_with_another_line_count_is_named_with_both_counts(tmp_path: Path) -> None:
    (tmp_path / "s.en").write_text("a\nb\nc\n", encoding="utf-8")
    (tmp_path / "r1.de").write_text("A\nB\nC\n", encoding="utf-8")
    (tmp_path / "r2.de").write_text("A\nB\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"^misaligned corpus: \S*s.en has 3 lines but \S*r2.de has 2$"):
        read_references(tmp_path / "s.en", [tmp_path / "r1.de", tmp_path / "r2.de"])
    with pytest.raises(DataError, match=r"s.en has 3 lines but \S*r2.de has 2$"):
        read_references(tmp_path / "s.en", [tmp_path / "r2.de", tmp_path / "r1.de"])
