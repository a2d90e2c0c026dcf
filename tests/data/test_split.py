"""`seq2seq split`: one TSV file -> train / val / test, whole sources each, the same files for the same seed, lines in
their order; bad amounts, files and lines are one-line errors, and existing outputs are never overwritten unasked."""

from __future__ import annotations

from pathlib import Path

import pytest

from seq2seq.data.split import Amount, assign, parse_amount, read_tsv_lines, split_file
from seq2seq.errors import ConfigError, DataError
from tests.conftest import invoke

# 12 words, three of them with two pronunciations (one with the same source written with extra spaces)
LEXICON = [
    "cat\tK AE1 T", "dog\tD AO1 G", "bird\tB ER1 D", "dog\tD AA1 G", "fish\tF IH1 SH", "ant\tAE1 N T", "bee\tB IY1",
    "owl\tAW1 L", "bee \tB IY0", "cow\tK AW1", "elk\tEH1 L K", "emu\tIY1 M Y UW0", "yak\tY AE1 K", "tomato\tT AH0 M EY1 T OW2",
    "tomato\tT AH0 M AA1 T OW2", "gnu\tN UW1",
]


def lexicon(tmp_path: Path, lines: list[str] = LEXICON) -> Path:
    path = tmp_path / "lexicon.tsv"
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def split_lines(path: Path) -> dict[str, list[str]]:
    return {name: (path.parent / f"{name}.tsv").read_text(encoding="utf-8").splitlines() for name in ("train", "val", "test")}


def test_a_source_lands_whole_in_one_split_and_lines_keep_their_order(tmp_path: Path) -> None:
    path = lexicon(tmp_path)
    for seed in range(20):  # whichever split the draw puts dog, bee and tomato in
        split_file(path, Amount(count=3), Amount(count=3), seed, None, overwrite=True)
        out = split_lines(path)
        assert sorted(line for lines in out.values() for line in lines) == sorted(LEXICON)  # every line, once
        for lines in out.values():
            assert lines == [line for line in LEXICON if line in lines]  # the file's order
        sources = {name: {" ".join(line.split("\t")[0].split()) for line in lines} for name, lines in out.items()}
        assert not (sources["train"] & sources["val"] or sources["train"] & sources["test"] or sources["val"] & sources["test"])
        assert (len(sources["val"]), len(sources["test"]), len(sources["train"])) == (3, 3, 7)  # 13 distinct sources


def test_the_same_seed_gives_the_same_files_and_another_seed_others(tmp_path: Path) -> None:
    path = lexicon(tmp_path)
    split_file(path, Amount(share=0.25), Amount(count=2), 7, tmp_path / "a", overwrite=False)
    split_file(path, Amount(share=0.25), Amount(count=2), 7, tmp_path / "b", overwrite=False)
    split_file(path, Amount(share=0.25), Amount(count=2), 8, tmp_path / "c", overwrite=False)
    files = {d: [(tmp_path / d / f).read_bytes() for f in ("train.tsv", "val.tsv", "test.tsv")] for d in "abc"}
    assert files["a"] == files["b"] and files["a"] != files["c"]


def test_counts_per_split_count_lines_sources_and_sources_with_several_targets(tmp_path: Path) -> None:
    lines = read_tsv_lines(lexicon(tmp_path))
    parts = assign(lines, Amount(count=1), Amount(share=0.2), 0)  # 0.2 of 13 sources: 2.6 -> 3
    assert [len({line.source for line in parts[name]}) for name in ("val", "test", "train")] == [1, 3, 9]
    _, table = split_file(tmp_path / "lexicon.tsv", Amount(count=1), Amount(share=0.2), 0, tmp_path / "out", overwrite=False)
    assert sum(c.lines for c in table.values()) == 16 and sum(c.sources for c in table.values()) == 13
    assert sum(c.several for c in table.values()) == 3  # dog, bee (its second line's source has a trailing space), tomato
    for name, c in table.items():
        written = (tmp_path / "out" / f"{name}.tsv").read_text(encoding="utf-8").splitlines()
        assert c.lines == len(written) and c.sources == len({" ".join(w.split("\t")[0].split()) for w in written})


def test_the_command_prints_the_counts_and_refuses_to_overwrite(tmp_path: Path, capsys, monkeypatch) -> None:
    path = lexicon(tmp_path)
    code, out, err = invoke(capsys, monkeypatch, "split", str(path), "--valid", "2", "--test", "0.1", "--seed", "3")
    assert code == 0, err
    rows = [line.split() for line in out.splitlines()]
    assert rows[0] == ["split", "lines", "sources", "with", "several", "targets"]
    assert [row[0] for row in rows[1:5]] == ["train", "val", "test", "all"]
    assert rows[4][1:] == ["16", "13", "3"] and rows[2][2] == "2" and rows[3][2] == "1"  # 0.1 of 13: 1.3 -> 1
    before = split_lines(path)
    code, out, err = invoke(capsys, monkeypatch, "split", str(path), "--valid", "3", "--test", "3", "--seed", "4")
    assert code == 2 and err.count("\n") == 1 and "train.tsv exists: add --overwrite" in err
    assert split_lines(path) == before
    code, out, err = invoke(capsys, monkeypatch, "split", str(path), "--valid", "3", "--test", "3", "--seed", "4", "--overwrite")
    assert code == 0, err
    assert split_lines(path) != before


@pytest.mark.parametrize(
    "text, message",
    [
        ("1.5", "--valid: the fraction 1.5 is not between 0 and 1"),
        ("1.0", "--valid: the fraction 1.0 is not between 0 and 1"),
        ("0.0", "--valid: the fraction 0.0 is not between 0 and 1"),
        ("-0.2", "--valid: the fraction -0.2 is not between 0 and 1"),
        ("0", "--valid: 0 sources: give a count >= 1"),
        ("-3", "--valid: -3 sources: give a count >= 1"),
        ("many", "--valid: 'many' is neither a number of sources nor a fraction"),
    ],
)
def test_a_bad_amount_is_a_config_error_naming_the_option(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match="^" + message.replace(".", r"\.").replace("(", r"\(")):
        parse_amount(text, "--valid")
    assert parse_amount("3", "--valid") == Amount(count=3) and parse_amount("0.05", "--valid") == Amount(share=0.05)


def test_valid_and_test_taking_every_source_and_bad_files_are_errors(tmp_path: Path) -> None:
    path = lexicon(tmp_path)
    with pytest.raises(ConfigError, match="take 7 \\+ 6 of the file's 13 distinct sources: none would be left"):
        split_file(path, Amount(count=7), Amount(count=6), 0, tmp_path / "o", overwrite=False)
    with pytest.raises(ConfigError, match="take 7 \\+ 7 of"):
        split_file(path, Amount(share=0.5), Amount(share=0.5), 0, tmp_path / "o", overwrite=False)
    with pytest.raises(DataError, match="nosuch.tsv: file not found"):
        split_file(tmp_path / "nosuch.tsv", Amount(count=1), Amount(count=1), 0, tmp_path / "o", overwrite=False)
    with pytest.raises(DataError, match="lexicon.tsv:3: expected source<TAB>target, found no tab"):
        split_file(lexicon(tmp_path, ["a\tb", "c\td", "e f"]), Amount(count=1), Amount(count=1), 0, tmp_path / "o", overwrite=False)
    (tmp_path / "latin.tsv").write_bytes(b"a\tb\ncaf\xe9\tx\n")
    with pytest.raises(DataError, match="latin.tsv:2:4: not valid UTF-8"):
        split_file(tmp_path / "latin.tsv", Amount(count=1), Amount(count=1), 0, tmp_path / "o", overwrite=False)
    assert not (tmp_path / "o").exists()  # nothing written by a failed split
    (tmp_path / "train.tsv").write_text("a\tb\nc\td\ne\tf\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="the input is also an output"):
        split_file(tmp_path / "train.tsv", Amount(count=1), Amount(count=1), 0, None, overwrite=True)
