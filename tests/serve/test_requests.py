"""Request parsing and answer shaping without HTTP: every malformed request kind is a RequestError naming its
field with a 4xx status; valid requests give the sentences and settings to decode; the limits hold."""

from __future__ import annotations

import json
import math
from typing import Any, Callable

import pytest

from seq2seq.config import DecodeConfig
from seq2seq.data.results import Result
from seq2seq.serve.batching import Decoded, Settings
from seq2seq.serve.requests import Limits, RequestError, parse_json, parse_onmt, parse_plain, plain_translation

# Small limits, so the catalogue shows that the limits given are the ones applied.
LIMITS = Limits(max_src_len=DecodeConfig().max_src_len, max_sentences=3, max_beam=5)
BEAM = 2  # the server's default beam in these tests

BAD_BODIES = [
    # (id, body, the error holds)
    ("malformed-json", b'{"text": ["a"', "malformed JSON: Expecting"),
    ("not-utf8", b'{"text": ["\xff"]}', "not UTF-8"),
    ("empty-body", b"", "empty request body"),
    ("blank-body", b" \n ", "empty request body"),
    ("deeply-nested", b"[" * 100_000, "malformed JSON"),
]


@pytest.mark.parametrize("body,error", [case[1:] for case in BAD_BODIES], ids=[case[0] for case in BAD_BODIES])
def test_a_body_that_is_not_json_is_a_400(body: bytes, error: str):
    with pytest.raises(RequestError) as caught:
        parse_json(body)
    assert caught.value.status == 400 and error in str(caught.value)


def test_a_json_body_is_parsed():
    assert parse_json('{"text": ["Grüß dich"], "beam": 2}'.encode("utf-8")) == {"text": ["Grüß dich"], "beam": 2}


Parser = Callable[[Any, Limits, int], Any]
BAD_REQUESTS: list[tuple[str, Parser, Any, int, str]] = [
    # (id, parser, parsed body, status, the error holds: the field at fault, quoted as the client wrote it)
    ("not-an-object", parse_plain, ["I love you"], 400, "expected a JSON object"),
    ("missing-text", parse_plain, {"beam": 2}, 400, "missing field 'text'"),
    ("text-wrong-type", parse_plain, {"text": 5}, 400, "'text' must be a list of strings, got a number"),
    ("empty-list", parse_plain, {"text": []}, 400, "'text' is an empty list"),
    ("non-string", parse_plain, {"text": ["a", 3]}, 400, "text[1] must be a string, got a number"),
    ("null-sentence", parse_plain, {"text": [None]}, 400, "text[0] must be a string, got null"),
    ("list-sentence", parse_plain, {"text": [["a"]]}, 400, "text[0] must be a string, got a list"),
    ("lone-surrogate", parse_plain, {"text": ["\ud800"]}, 400, "text[0] is not valid Unicode"),
    ("names-a-model", parse_plain, {"text": ["a"], "model": "runs/other"}, 400, "unknown field 'model'"),
    ("names-a-file", parse_plain, {"text": ["a"], "input": "/etc/passwd"}, 400, "unknown field 'input'"),
    ("names-a-config-key", parse_plain, {"text": ["a"], "decode.max_len_b": 9}, 400, "unknown field 'decode.max_len_b'"),
    ("beam-bool", parse_plain, {"text": ["a"], "beam": True}, 400, "'beam' must be an integer from 1 to 5, got true"),
    ("beam-string", parse_plain, {"text": ["a"], "beam": "5"}, 400, "'beam' must be an integer from 1 to 5, got \"5\""),
    ("beam-float", parse_plain, {"text": ["a"], "beam": 2.0}, 400, "'beam' must be an integer from 1 to 5, got 2.0"),
    ("beam-zero", parse_plain, {"text": ["a"], "beam": 0}, 400, "'beam' must be an integer from 1 to 5, got 0"),
    ("beam-over-limit", parse_plain, {"text": ["a"], "beam": 6}, 400, "'beam' must be an integer from 1 to 5, got 6"),
    ("nbest-over-limit", parse_plain, {"text": ["a"], "nbest": 6}, 400, "'nbest' must be an integer from 1 to 5, got 6"),
    ("nbest-over-beam", parse_plain, {"text": ["a"], "beam": 2, "nbest": 3}, 400, "'nbest' 3 needs 'beam' 3 or more, got 2"),
    ("attention-not-bool", parse_plain, {"text": ["a"], "attention": "yes"}, 400, "'attention' must be true or false, got \"yes\""),
    ("attention-with-nbest", parse_plain, {"text": ["a"], "beam": 2, "nbest": 2, "attention": True}, 400, "'attention' shows one translation per input"),
    ("too-many-sentences", parse_plain, {"text": ["a"] * 4}, 413, "'text' holds 4 sentences, over the limit of 3"),
    ("onmt-not-a-list", parse_onmt, {"src": "a"}, 400, "expected a JSON list"),
    ("onmt-empty-list", parse_onmt, [], 400, "empty list"),
    ("onmt-item-not-object", parse_onmt, ["a"], 400, "item 0 must be an object"),
    ("onmt-missing-src", parse_onmt, [{"src": "a"}, {"id": 0}], 400, "item 1: missing field 'src'"),
    ("onmt-src-not-string", parse_onmt, [{"src": 1}], 400, "item 0: 'src' must be a string, got a number"),
    ("onmt-unknown-model", parse_onmt, [{"src": "a", "id": 7}], 404, "item 0: no model with id 7"),
    ("onmt-model-id-string", parse_onmt, [{"src": "a", "id": "0"}], 404, "item 0: no model with id \"0\""),
    ("onmt-names-a-file", parse_onmt, [{"src": "a", "models": ["x.pt"]}], 400, "item 0: unknown field 'models'"),
    ("onmt-n-best-over-limit", parse_onmt, [{"src": "a", "n_best": 6}], 400, "item 0: 'n_best' must be an integer from 1 to 5"),
    ("onmt-mixed-n-best", parse_onmt, [{"src": "a"}, {"src": "b", "n_best": 2}], 400, "item 1: 'n_best' 2 differs from item 0's 1"),
    ("onmt-too-many-items", parse_onmt, [{"src": "a"}] * 4, 413, "4 items, over the limit of 3"),
]


@pytest.mark.parametrize("parse,obj,status,error", [case[1:] for case in BAD_REQUESTS], ids=[case[0] for case in BAD_REQUESTS])
def test_a_bad_request_is_a_4xx_naming_its_field(parse: Parser, obj: Any, status: int, error: str):
    with pytest.raises(RequestError) as caught:
        parse(obj, LIMITS, BEAM)
    message = str(caught.value)
    assert caught.value.status == status and error in message, (caught.value.status, message)
    assert "\n" not in message


def test_an_error_quotes_at_most_40_characters_of_what_it_refuses():
    with pytest.raises(RequestError) as caught:
        parse_plain({"text": ["a"], "beam": "x" * 1000}, LIMITS, BEAM)
    quoted = str(caught.value).split("got ")[1]
    assert len(quoted) == 40 and quoted.startswith('"xxx') and quoted.endswith("\u2026")


PLAIN_REQUESTS = [
    # (id, body, texts, settings): BEAM is 2
    ("list", {"text": ["I love you", ""]}, ["I love you", ""], Settings(BEAM, 1, False)),
    ("one-string", {"text": "I love you"}, ["I love you"], Settings(BEAM, 1, False)),
    ("beam", {"text": ["a"], "beam": 4}, ["a"], Settings(4, 1, False)),
    ("beam-null-is-the-default", {"text": ["a"], "beam": None}, ["a"], Settings(BEAM, 1, False)),
    ("nbest-widens-the-default-beam", {"text": ["a"], "nbest": 3}, ["a"], Settings(3, 3, False)),
    ("nbest-within-the-default-beam", {"text": ["a"], "nbest": 2}, ["a"], Settings(BEAM, 2, False)),
    ("beam-and-nbest", {"text": ["a"], "beam": 5, "nbest": 2}, ["a"], Settings(5, 2, False)),
    ("attention", {"text": ["a"], "attention": True, "nbest": 1}, ["a"], Settings(BEAM, 1, True)),
    ("at-the-limits", {"text": ["a", "b", "c"], "beam": 5, "nbest": 5}, ["a", "b", "c"], Settings(5, 5, False)),
]


@pytest.mark.parametrize("body,texts,settings", [case[1:] for case in PLAIN_REQUESTS], ids=[case[0] for case in PLAIN_REQUESTS])
def test_a_plain_request_gives_its_texts_and_settings(body: dict[str, Any], texts: list[str], settings: Settings):
    assert parse_plain(body, LIMITS, BEAM) == (texts, settings)


ONMT_REQUESTS = [
    ("one-item", [{"src": "I love you", "id": 0}], ["I love you"], Settings(BEAM, 1, False)),
    ("no-id-is-model-0", [{"src": "a"}, {"src": ""}], ["a", ""], Settings(BEAM, 1, False)),
    ("n-best-widens-the-beam", [{"src": "a", "n_best": 4}, {"src": "b", "n_best": 4}], ["a", "b"], Settings(4, 4, False)),
    ("n-best-within-the-beam", [{"src": "a", "n_best": 2}], ["a"], Settings(BEAM, 2, False)),
]


@pytest.mark.parametrize("body,texts,settings", [case[1:] for case in ONMT_REQUESTS], ids=[case[0] for case in ONMT_REQUESTS])
def test_an_opennmt_request_gives_its_texts_and_settings(body: list[dict[str, Any]], texts: list[str], settings: Settings):
    assert parse_onmt(body, LIMITS, BEAM) == (texts, settings)


def test_the_default_beam_is_the_servers():
    assert parse_plain({"text": ["a"]}, LIMITS, 5)[1].beam == 5
    assert parse_onmt([{"src": "a"}], LIMITS, 1)[1].beam == 1


def test_limits_have_no_max_src_len_of_their_own():
    with pytest.raises(TypeError):
        Limits()  # type: ignore[call-arg]  # max_src_len has no default of its own: it is the model's decode.max_src_len
    assert Limits(max_src_len=7).max_src_len == 7


def _decoded(src_length: int, score: float) -> Decoded:
    result = Result("a b", "x y", score, ["x", "y"], ["a", "b", "<eos>"], None)
    return Decoded(result, [(score, "x y")], src_length)


@pytest.mark.parametrize("src_length,truncated", [(LIMITS.max_src_len, False), (LIMITS.max_src_len + 1, True)])
def test_a_translation_reports_truncation_past_max_src_len(src_length: int, truncated: bool):
    got = plain_translation(_decoded(src_length, -1.5), Settings(1, 1, False), LIMITS.max_src_len)
    assert got == {"input": "a b", "output": "x y", "score": -1.5, "tokens": ["x", "y"], "src_length": src_length, "truncated": truncated}


def test_a_score_json_cannot_hold_is_null():
    got = plain_translation(_decoded(2, -math.inf), Settings(2, 2, False), LIMITS.max_src_len)
    assert got["score"] is None and got["nbest"] == [{"output": "x y", "score": None}]
    json.dumps(got, allow_nan=False)  # strict JSON: no Infinity


def test_a_sentence_of_unknown_tokens_answers_its_warning():
    """The server logs no line for it (the line numbers of a merged batch would mean nothing): each answer says it."""
    d = _decoded(2, -1.5)
    warned = d._replace(result=d.result._replace(warning="2 of 2 tokens of this input are unknown"))
    assert plain_translation(warned, Settings(1, 1, False), LIMITS.max_src_len)["warning"] == "2 of 2 tokens of this input are unknown"
    assert "warning" not in plain_translation(d, Settings(1, 1, False), LIMITS.max_src_len)
