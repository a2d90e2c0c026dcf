"""Reading corpora: parallel files, TSV and .gz alike; errors name file:line; only \\n ends a line (CRLF and a BOM
read as the clean file); a pair with an empty side is dropped as a pair."""

from __future__ import annotations

import gzip
import logging

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from seq2seq.config import DataConfig
from seq2seq.data.corpus import decode_lines, iter_pairs, load_corpus, read_lines, read_pairs
from seq2seq.data.tokenizer import Tokenizer
from seq2seq.data.vocab import build_vocabs
from seq2seq.errors import DataError
from tests.conftest import line, write_corpus


def test_parallel_files_tsv_and_gzip_read_the_same(tmp_path):
    pairs = [("a b", "x"), ("c", "y z")]
    prefix = write_corpus(tmp_path, "c", pairs)
    (tmp_path / "c.tsv").write_text("a b\tx\nc\ty z\n", encoding="utf-8")
    with gzip.open(tmp_path / "g.en.gz", "wt", encoding="utf-8") as f:
        f.write("a b\nc\n")
    with gzip.open(tmp_path / "g.de.gz", "wt", encoding="utf-8") as f:
        f.write("x\ny z\n")
    assert read_pairs(prefix, "parallel", "en", "de") == pairs
    assert read_pairs(str(tmp_path / "c.tsv"), "tsv", "en", "de") == pairs
    assert read_pairs(str(tmp_path / "g"), "parallel", "en", "de") == pairs


def test_misaligned_corpus_names_both_files_and_counts(tmp_path):
    (tmp_path / "m.en").write_text("a\nb\nc\n", encoding="utf-8")
    (tmp_path / "m.de").write_text("a\nb\n", encoding="utf-8")
    with pytest.raises(DataError) as e:
        read_pairs(str(tmp_path / "m"), "parallel", "en", "de")
    msg = str(e.value)
    assert "m.en" in msg and "m.de" in msg and "3" in msg and "2" in msg


@pytest.mark.parametrize("chunk_size", [1, 2, 1000])
def test_non_utf8_names_file_line_and_column_in_memory_and_streaming_alike(tmp_path, chunk_size):
    (tmp_path / "u.en").write_bytes(b"ok\nfine\nbad \xff byte\n")
    (tmp_path / "u.de").write_text("a\nb\nc\n", encoding="utf-8")
    expected = f"{tmp_path / 'u.en'}:3:5: not valid UTF-8 (byte 0xff)"  # line 3, its 5th byte (as docs/training.md shows)
    with pytest.raises(DataError) as in_memory:
        read_pairs(str(tmp_path / "u"), "parallel", "en", "de")
    with pytest.raises(DataError) as streamed:
        list(iter_pairs([tmp_path / "u.en", tmp_path / "u.de"], chunk_size))
    assert str(in_memory.value) == str(streamed.value) == expected
    with pytest.raises(DataError, match=r"^<stdin>:3:5: not valid UTF-8 \(byte 0xff\)$"):
        decode_lines(b"ok\nfine\nbad \xff byte\n", "<stdin>")


def test_tsv_line_without_tab_names_file_and_line(tmp_path):
    (tmp_path / "t.tsv").write_text("a\tb\nno tab here\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"t\.tsv:2: expected source<TAB>target"):
        read_pairs(str(tmp_path / "t.tsv"), "tsv", "en", "de")


def test_only_newline_splits_lines(tmp_path):
    # \x1c and \u2028 are line breaks to str.splitlines(), \r to old Macs; treating them so would misalign the corpus.
    breakers = ["\r", "\x0b", "\x0c", "\x1c", "\x85", "\u2028", "\u2029"]
    write_corpus(tmp_path, "s", [(f"a{c}b", "x") for c in breakers])
    pairs = read_pairs(str(tmp_path / "s"), "parallel", "en", "de")
    assert pairs == [("a b", "x")] * len(breakers)  # one line each, the character whitespace inside it
    assert pairs == list(iter_pairs([tmp_path / "s.en", tmp_path / "s.de"], chunk_size=2))
    assert read_lines(tmp_path / "s.en") == [f"a{c}b" for c in breakers]  # input files keep them as written


CLEAN = [("Der Hund", "the dog"), ("", "empty"), ("eine  Katze", "a cat")]


@pytest.mark.parametrize("style", ["crlf", "bom", "bom+crlf", "no-final-newline", "crlf-no-final-newline"])
def test_crlf_and_bom_read_as_the_clean_file(tmp_path, style):
    """CRLF line ends and a byte order mark opening a file change nothing, in memory or streamed, plain or .gz."""
    def encode(lines: list[str]) -> bytes:
        end = "\r\n" if "crlf" in style else "\n"
        text = end.join(lines) + ("" if "no-final" in style else end)
        return (("\ufeff" if "bom" in style else "") + text).encode("utf-8")

    clean = write_corpus(tmp_path, "clean", CLEAN)
    (tmp_path / "d.en").write_bytes(encode([s for s, _ in CLEAN]))
    (tmp_path / "d.de").write_bytes(encode([t for _, t in CLEAN]))
    for side in ("en", "de"):
        with gzip.open(tmp_path / f"z.{side}.gz", "wb") as f:
            f.write((tmp_path / f"d.{side}").read_bytes())
    (tmp_path / "d.tsv").write_bytes(encode([f"{s}\t{t}" for s, t in CLEAN]))
    expected = read_pairs(clean, "parallel", "en", "de")
    assert expected == [("Der Hund", "the dog"), ("", "empty"), ("eine Katze", "a cat")]
    for spec, fmt in ((tmp_path / "d", "parallel"), (tmp_path / "z", "parallel"), (tmp_path / "d.tsv", "tsv")):
        assert read_pairs(str(spec), fmt, "en", "de") == expected
    for paths in ([tmp_path / "d.en", tmp_path / "d.de"], [tmp_path / "z.en.gz", tmp_path / "z.de.gz"], [tmp_path / "d.tsv"]):
        assert list(iter_pairs(paths, chunk_size=1)) == expected
    assert read_lines(tmp_path / "d.en") == read_lines(tmp_path / "clean.en") == decode_lines((tmp_path / "d.en").read_bytes(), "-")
    tok = Tokenizer()
    corpora = (DataConfig(train=train, format="parallel", src_lang="en", tgt_lang="de") for train in (str(tmp_path / "d"), clean))
    assert build_vocabs(load_corpus(next(corpora), "train"), tok, 1, None, True) == build_vocabs(
        load_corpus(next(corpora), "train"), tok, 1, None, True
    )


def test_line_end_rules_exactly():
    # \r goes only with the \n after it; only the BOM opening the file goes
    assert decode_lines(b"a\r\nb\r\r\nc\n\r\nd\r", "-") == ["a", "b\r", "c", "", "d\r"]
    assert decode_lines("\ufeffa\n\ufeffb\n".encode(), "-") == ["a", "\ufeffb"]
    assert decode_lines(b"", "-") == [] and decode_lines(b"\n", "-") == [""] and decode_lines(b"x", "-") == ["x"]


def test_pair_with_an_empty_side_is_dropped_as_a_pair(tmp_path, caplog):
    prefix = write_corpus(tmp_path, "e", [("a", "x"), ("", "y"), ("b", ""), ("c", "z")])
    with caplog.at_level(logging.INFO, logger="seq2seq"):
        pairs = load_corpus(DataConfig(train=prefix, src_lang="en", tgt_lang="de"), "train")
    assert pairs == [("a", "x"), ("c", "z")]  # alignment kept: never one side only
    assert "dropped 2 of 4" in caplog.text


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


def test_a_path_of_the_other_format_gets_a_hint(tmp_path) -> None:
    from seq2seq.data.corpus import corpus_paths

    (tmp_path / "good.tsv").write_text("a\tb\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"good.tsv.src: file not found; .*good.tsv looks like a TSV file.*data.format: tsv"):
        corpus_paths(str(tmp_path / "good.tsv"), "parallel", "src", "tgt")
    with pytest.raises(DataError, match="looks like a TSV file"):  # by its name, even where it does not exist
        corpus_paths(str(tmp_path / "other.tsv.gz"), "parallel", "src", "tgt")
    (tmp_path / "par.en").write_text("a\n", encoding="utf-8")
    (tmp_path / "par.de").write_text("b\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"par: file not found; .*par.en / .*par.de look like parallel files.*data.format: parallel"):
        corpus_paths(str(tmp_path / "par"), "tsv", "en", "de")
    # the right format, or no sign of the other one: no error here (a missing file is open_corpus's to name)
    assert corpus_paths(str(tmp_path / "par"), "parallel", "en", "de") == [tmp_path / "par.en", tmp_path / "par.de"]
    assert corpus_paths(str(tmp_path / "good.tsv"), "tsv", "en", "de") == [tmp_path / "good.tsv"]
    assert corpus_paths(str(tmp_path / "nothing"), "parallel", "en", "de") == [tmp_path / "nothing.en", tmp_path / "nothing.de"]
