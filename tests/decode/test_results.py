"""What `translate` reports: one JSON object per input (attention only when asked), n-best blocks, and the
tokens the model read."""

from __future__ import annotations

import dataclasses
import json
import logging

from seq2seq.data.results import Result, display_token
from seq2seq.decode.results import make_results, nbest_blocks, translate_results
from seq2seq.data.tokenizer import JOINER
from tests.decode.test_translator import tiny_translator

ATTENTION = [[0.5, 0.25, 0.25], [0.1, 0.2, 0.7], [0.0, 0.0, 1.0]]


def test_json_holds_the_attention_only_when_asked_and_rows_name_their_tokens() -> None:
    r = Result("a b", "x y", -1.5, ["x", "y"], ["a", "b", "<eos>"], ATTENTION)
    assert json.loads(r.to_json()) == {
        "input": "a b", "output": "x y", "score": -1.5, "tokens": ["x", "y"], "src_tokens": ["a", "b", "<eos>"],
        "attention": ATTENTION,
    }
    assert r.attention_rows == ["x", "y", "<eos>"]  # the third row: the step that produced <eos>
    assert r._replace(attention=ATTENTION[:2]).attention_rows == ["x", "y"]  # stopped by the length limit
    plain = r._replace(attention=None)
    assert json.loads(plain.to_json()) == {"input": "a b", "output": "x y", "score": -1.5, "tokens": ["x", "y"]}
    assert plain.attention_rows == []


def test_nbest_blocks_are_score_tab_translation_lines_then_an_empty_line() -> None:
    t = tiny_translator()
    texts = ["a b", "", "der die"]
    blocks = nbest_blocks(t, texts, nbest=2, beam_size=3, batch_size=None, as_json=False)
    as_json = [json.loads(b) for b in nbest_blocks(t, texts, nbest=2, beam_size=3, batch_size=None, as_json=True)]
    assert blocks[1] == "\n" and as_json[1] == {"input": "", "nbest": []}  # an empty input: no translations
    for text, block, obj in zip(texts, blocks, as_json):
        if not text:
            continue
        assert block.endswith("\n\n") and obj["input"] == text
        lines = block[:-1].splitlines()
        assert len(lines) == 2 and len(obj["nbest"]) == 2
        scores = [float(line.split("\t")[0]) for line in lines]  # sums of log-probabilities, ranked with the length penalty
        assert [line.split("\t", 1)[1] for line in lines] == [h["output"] for h in obj["nbest"]]
        assert scores == [round(h["score"], 4) for h in obj["nbest"]]


def test_an_empty_input_has_an_empty_result_and_a_long_one_the_tokens_the_model_read() -> None:
    t = tiny_translator(max_src_len=5)
    texts = ["", "a b zzz", "x " * 9]
    sources = t.sources(texts)
    results = make_results(t, sources, t.hypotheses(sources, return_attention=True))
    assert results[0] == Result("", "", 0.0, [], [], [])
    assert results[1].src_tokens == ["a", "b", "<unk>", "<eos>"]
    assert results[2].src_tokens == ["x"] * 5 + ["<eos>"]  # truncated to decode.max_src_len, as decoded
    assert all(len(row) == len(results[2].src_tokens) for row in results[2].attention)


def test_display_token_drops_the_joiner_and_shows_a_space() -> None:
    assert [display_token(t) for t in (JOINER + ",", "(" + JOINER, " ", JOINER, "word")] == [",", "(", "␣", JOINER, "word"]


class CountingTokenizer:
    """A word tokenizer that counts the lines it tokenizes."""

    def __init__(self, tokenizer) -> None:
        self.tokenizer, self.calls = tokenizer, 0

    def tokenize(self, text: str) -> list[str]:
        self.calls += 1
        return self.tokenizer.tokenize(text)


def counting_translator(max_src_len: int = 250):
    t = tiny_translator(max_src_len)
    counter = CountingTokenizer(t.src.tokenizer)
    return dataclasses.replace(t, src=dataclasses.replace(t.src, tokenizer=counter)), counter


def test_a_source_is_tokenized_once_on_its_way_to_a_translation() -> None:
    t, counter = counting_translator()
    texts = ["a b", "der die das", "x c"]
    results = translate_results(t, texts, beam_size=3, batch_size=None, attention=True, progress=False)
    assert counter.calls == len(texts)
    assert [r.src_tokens for r in results] == [["a", "b", "<eos>"], ["der", "die", "das", "<eos>"], ["x", "c", "<eos>"]]


class Recorded(logging.Handler):
    """The messages logged to the "seq2seq" logger inside `with Recorded() as r:` (whatever its propagation)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())

    def __enter__(self) -> "Recorded":
        log = logging.getLogger("seq2seq")
        self.level = log.level
        log.setLevel(logging.WARNING)  # not higher, whatever an earlier test set (warnings are what is checked)
        log.addHandler(self)
        return self

    def __exit__(self, *exc: object) -> None:
        log = logging.getLogger("seq2seq")
        log.removeHandler(self)
        log.setLevel(self.level)


def test_an_input_of_unknown_tokens_gets_a_warning_and_one_log_line_unless_told_not_to() -> None:
    """The server merges requests into one batch: it turns the log line (whose line numbers would mean nothing to
    any client) off and answers each sentence's warning instead."""
    t = tiny_translator()
    texts = ["a b", "zzz qqq www", "der die"]
    sources = t.sources(texts)
    hyps = t.hypotheses(sources)
    with Recorded() as logged_lines:
        logged = make_results(t, sources, hyps)
    with Recorded() as quiet_lines:
        quiet = make_results(t, sources, hyps, warn_unknown=False)
    assert [r.warning is not None for r in logged] == [False, True, False]
    assert "3 of 3 tokens" in logged[1].warning and json.loads(logged[1].to_json())["warning"] == logged[1].warning
    assert logged_lines.messages == [
        "warning: most tokens of 1 input line(s) are unknown to the model's source vocabulary (line 2): "
        "is the input written and tokenized as in training?"
    ]
    assert quiet == logged and quiet_lines.messages == []
