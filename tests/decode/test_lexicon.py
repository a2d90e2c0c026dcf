"""Known words from a lexicon (issue 35 §4): `--lexicon FILE.tsv` answers the sources it holds (the first target the
translation, all of them the n-best, score 0) and leaves the rest to the model, whose outputs do not change for it;
eval says how many items it answered; bad lexicons are one line, exit 2."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from seq2seq.decode.translator import Translator
from seq2seq.errors import DataError
from tests.conftest import run_cli, toy_pairs

SOURCES = [s for s, _ in toy_pairs("val", 8)]


@pytest.fixture(scope="module")
def plain(tiny_run: Path) -> Translator:
    return Translator.load(tiny_run / "runs" / "tiny")


@pytest.fixture(scope="module")
def lexicon(plain: Translator, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """SOURCES[0] and SOURCES[1] answered with the model's own outputs for other sentences (tokens it can write, and
    not what it would say); SOURCES[0] with two targets."""
    outs = plain.translate(SOURCES)
    path = tmp_path_factory.mktemp("lexicon") / "known.tsv"
    path.write_text(f"{SOURCES[0]}\t{outs[5]}\n{SOURCES[1]}\t{outs[6]}\n{SOURCES[0]}\t{outs[7]}\n", encoding="utf-8")
    return path


def test_known_words_come_from_the_lexicon_and_the_rest_from_the_model(plain: Translator, lexicon: Path) -> None:
    outs = plain.translate(SOURCES)
    known = plain.with_lexicon(lexicon)
    assert known.translate(SOURCES) == [outs[5], outs[6], *outs[2:]]
    assert known.translate(SOURCES[2:]) == outs[2:]  # alone or beside known words: the same outputs
    assert known.translate(SOURCES, beam_size=3) == [outs[5], outs[6], *plain.translate(SOURCES[2:], beam_size=3)]
    assert known.answered(known.sources(SOURCES + ["", "  " + SOURCES[1] + " "])) == 3  # whitespace-normalized


def test_the_lexicon_gives_every_target_as_the_nbest(plain: Translator, lexicon: Path) -> None:
    outs = plain.translate(SOURCES)
    known = plain.with_lexicon(lexicon)
    blocks = known.nbest(known.sources(SOURCES[:3]), 2, beam_size=3)
    assert blocks[0] == [(0.0, outs[5]), (0.0, outs[7])] and blocks[1] == [(0.0, outs[6])]
    assert blocks[2] == plain.nbest(plain.sources(SOURCES[2:3]), 2, beam_size=3)[0]


def test_translate_and_eval_take_a_lexicon(tiny_run: Path, lexicon: Path, plain: Translator, tmp_path: Path) -> None:
    outs = plain.translate(SOURCES)
    model = str(tiny_run / "runs" / "tiny")
    proc = run_cli("translate", "--model", model, "--lexicon", str(lexicon), "--json", *SOURCES[:3], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [r["output"] for r in rows] == [outs[5], outs[6], outs[2]] and rows[0]["score"] == 0.0 and rows[2]["score"] < 0
    src, ref = tmp_path / "src.txt", tmp_path / "ref.txt"
    src.write_text("".join(s + "\n" for s in SOURCES), encoding="utf-8")
    ref.write_text(f"{outs[5]}\n{outs[6]}\n" + "".join(o + "\n" for o in outs[2:]), encoding="utf-8")
    proc = run_cli("eval", "--model", model, "--src", str(src), "--ref", str(ref), "--lexicon", str(lexicon), "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["from_lexicon"] == 2 and report["exact_match"] == 100.0
    proc = run_cli("eval", "--model", model, "--src", str(src), "--ref", str(ref), "--lexicon", str(lexicon), cwd=tmp_path)
    assert f"lexicon      2 of {len(SOURCES)} answered from {lexicon}, the rest decoded" in proc.stdout


def test_a_lexicon_token_the_model_cannot_write_leaves_the_word_to_the_model(plain: Translator, tmp_path: Path) -> None:
    path = tmp_path / "odd.tsv"
    path.write_text(f"{SOURCES[0]}\tZzyzxq\n", encoding="utf-8")
    known = plain.with_lexicon(path)
    assert known.known is not None and known.known.unusable == 1
    assert known.translate(SOURCES[:1]) == plain.translate(SOURCES[:1])


@pytest.mark.parametrize("content, message", [
    (None, "no such file"), (b"", "holds no source<TAB>target line"), (b"word\n", ":1: expected source<TAB>target, found no tab"),
    (b"a\tb\nc\t\xff\n", ":2:3: not valid UTF-8 (byte 0xff)"),
])
def test_a_bad_lexicon_is_one_line(plain: Translator, tiny_run: Path, tmp_path: Path, content: bytes | None, message: str) -> None:
    path = tmp_path / "bad.tsv"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(DataError, match=re.escape(message)):
        plain.with_lexicon(path)
    proc = run_cli("translate", "--model", str(tiny_run / "runs" / "tiny"), "--lexicon", str(path), "hi", cwd=tmp_path)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1 and message in proc.stderr, proc.stderr


def test_serve_answers_known_words_from_the_lexicon(tiny_run: Path, lexicon: Path, plain: Translator) -> None:
    from tests.serve.test_app import HAVE_EXTRA, Server, translate

    if not HAVE_EXTRA:
        pytest.skip("needs the serve extra: pip install -e '.[serve]'")
    outs = plain.translate(SOURCES)
    s = Server(tiny_run, "--model", "runs/tiny", "--beam", "1", "--lexicon", str(lexicon))
    try:
        answer = translate(s.port, {"text": SOURCES[:3]})
    finally:
        assert s.stop() == 0, s.stderr()
    assert [a["output"] for a in answer] == [outs[5], outs[6], outs[2]]
