"""What the server reads and what it answers, as plain Python objects (no HTTP here).

A request body, once parsed as JSON, becomes the sentences and the decoding `Settings` of the request, or a
`RequestError` whose message names the field at fault and whose status is the 4xx to answer with. The
decoded sentences become the JSON objects of the two APIs: the plain one (POST /translate) and
OpenNMT-py's (POST /translator/translate).
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Sequence

from seq2seq.config import DataConfig
from seq2seq.data.references import load_eval_corpus
from seq2seq.decode.search import nbest_beam
from seq2seq.errors import ConfigError, DataError
from seq2seq.metric import said
from seq2seq.serve.batching import Decoded, Settings

if TYPE_CHECKING:
    from seq2seq.decode.translator import Translator
    from seq2seq.serve.batching import Batcher

MODEL_ID = 0  # the id of the one model, as OpenNMT-py's clients name it
DEFAULT_NBEST = 1  # the n-best of a request that names none, in both APIs


@dataclass(frozen=True, kw_only=True)
class Limits:
    """What one request may ask for; longer sources are not refused but truncated to `max_src_len` tokens (reported)."""

    max_src_len: int  # the model's decode.max_src_len: it is the translator that truncates
    max_sentences: int = 256  # per request
    max_body_bytes: int = 1 << 20
    max_beam: int = 64  # also the largest n-best


@dataclass
class ServeState:
    """What the server serves and has done: the answers of /health and the defaults of requests come from here."""

    translator: Translator  # any model: a checkpoint, an export (no torch), an ensemble
    batcher: Batcher
    limits: Limits
    beam: int  # the beam of requests that name none: --beam, else the model's decode.beam_size
    examples: list[str] = field(default_factory=list)  # sources the page offers to try (from the validation data)
    started: float = field(default_factory=time.monotonic)
    requests: int = 0


class RequestError(Exception):
    """A bad request, answered with `status` and {"status": "error", "error": message}."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


# ---- requests: parsing and validation ----------------------------------------------------------------------


def _kind(value: Any) -> str:
    """How JSON calls the type of `value`."""
    if isinstance(value, bool):
        return "a boolean"
    names = {dict: "an object", list: "a list", str: "a string", int: "a number", float: "a number", type(None): "null"}
    return names.get(type(value), type(value).__name__)


def _show(value: Any) -> str:
    """`value` as JSON, cut to 40 characters: an error line quotes what it refuses, never a whole body."""
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 40 else text[:39] + "\u2026"


def parse_json(body: bytes) -> Any:
    """A request body parsed as JSON; one that is empty, not UTF-8 or not JSON is a RequestError (400)."""
    if not body.strip():
        raise RequestError("empty request body: expected JSON")
    try:
        return json.loads(body.decode("utf-8"))
    except UnicodeDecodeError:
        raise RequestError("request body is not UTF-8") from None
    except json.JSONDecodeError as e:
        raise RequestError(f"malformed JSON: {e.msg} (line {e.lineno}, column {e.colno})") from None
    except RecursionError:
        raise RequestError("malformed JSON: nested too deeply") from None


def _check_fields(obj: dict[str, Any], allowed: Sequence[str], where: str) -> None:
    """Refuse any field outside `allowed`: a request can name no file, model path or config key."""
    for key in obj:
        if key not in allowed:
            raise RequestError(f"{where}unknown field '{key[:40]}' (allowed: {', '.join(allowed)})")


def _check_string(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise RequestError(f"{where} must be a string, got {_kind(value)}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise RequestError(f"{where} is not valid Unicode (it holds a lone surrogate)") from None
    return value


def _int_value(value: Any, where: str, low: int, high: int) -> int:
    if type(value) is not int or not low <= value <= high:  # JSON's true is no beam size
        raise RequestError(f"{where} must be an integer from {low} to {high}, got {_show(value)}")
    return value


def _beam_for(asked: int | None, nbest: int, default: int, names: tuple[str, str]) -> int:
    """The beam to decode with: the one asked for, else the default widened to `nbest` (decode/search.nbest_beam)."""
    try:
        return nbest_beam(nbest, asked, default, (f"'{names[0]}'", f"'{names[1]}'"))
    except ConfigError as e:
        raise RequestError(str(e)) from None


def _check_list(value: Any, limits: Limits, not_list: str, empty: str, counted: str) -> None:
    """A request's sentences: a list (else `not_list`), not empty (else `empty`), of at most max_sentences (else
    `counted`, formatted with n, and 413)."""
    if not isinstance(value, list):
        raise RequestError(f"{not_list}, got {_kind(value)}")
    if not value:
        raise RequestError(empty)
    if len(value) > limits.max_sentences:
        raise RequestError(f"{counted.format(n=len(value))}, over the limit of {limits.max_sentences} per request", 413)


PLAIN_FIELDS = ("text", "beam", "nbest", "attention")


def parse_plain(obj: Any, limits: Limits, beam: int) -> tuple[list[str], Settings]:
    """The sentences and settings of a POST /translate body: {"text": [...], "beam": k, "nbest": n, "attention": b}.

    `beam` is the server's default, for a request that names none (widened to its n-best).
    """
    if not isinstance(obj, dict):
        raise RequestError(f'expected a JSON object like {{"text": ["..."]}}, got {_kind(obj)}')
    _check_fields(obj, PLAIN_FIELDS, "")
    if "text" not in obj:
        raise RequestError("missing field 'text' (a list of sentences)")
    texts = [obj["text"]] if isinstance(obj["text"], str) else obj["text"]
    _check_list(texts, limits, "'text' must be a list of strings", "'text' is an empty list: give at least one sentence", "'text' holds {n} sentences")
    for i, text in enumerate(texts):
        _check_string(text, f"text[{i}]")
    asked = None if obj.get("beam") is None else _int_value(obj["beam"], "'beam'", 1, limits.max_beam)
    nbest = _int_value(obj.get("nbest", DEFAULT_NBEST), "'nbest'", 1, limits.max_beam)
    attention = obj.get("attention", False)
    if not isinstance(attention, bool):
        raise RequestError(f"'attention' must be true or false, got {_show(attention)}")
    if attention and nbest > 1:
        raise RequestError("'attention' shows one translation per input: leave out 'nbest' or set it to 1")
    return texts, Settings(_beam_for(asked, nbest, beam, ("beam", "nbest")), nbest, attention)


ONMT_FIELDS = ("src", "id", "n_best")


def parse_onmt(obj: Any, limits: Limits, beam: int) -> tuple[list[str], Settings]:
    """The sentences and settings of an OpenNMT-py request: [{"src": "...", "id": 0, "n_best": n}, ...].

    OpenNMT-py's request names no beam: it is the server's `beam`, widened to the request's n-best.
    """
    _check_list(obj, limits, f'expected a JSON list like [{{"src": "...", "id": {MODEL_ID}}}]', 'empty list: give at least one {"src": "..."} item', "{n} items")
    texts: list[str] = []
    nbest: int | None = None
    for i, item in enumerate(obj):
        where = f"item {i}"
        if not isinstance(item, dict):
            raise RequestError(f'{where} must be an object like {{"src": "..."}}, got {_kind(item)}')
        _check_fields(item, ONMT_FIELDS, f"{where}: ")
        if "src" not in item:
            raise RequestError(f"{where}: missing field 'src'")
        texts.append(_check_string(item["src"], f"{where}: 'src'"))
        model_id = item.get("id", MODEL_ID)
        if type(model_id) is not int or model_id != MODEL_ID:
            raise RequestError(f"{where}: no model with id {_show(model_id)} (this server runs model {MODEL_ID})", 404)
        n = _int_value(item.get("n_best", DEFAULT_NBEST), f"{where}: 'n_best'", 1, limits.max_beam)
        if nbest is not None and n != nbest:
            raise RequestError(f"{where}: 'n_best' {n} differs from item 0's {nbest} (one n_best per request)")
        nbest = n
    assert nbest is not None
    return texts, Settings(_beam_for(None, nbest, beam, ("beam", "n_best")), nbest, False)


# ---- answers -----------------------------------------------------------------------------------------------


def _number(x: float) -> float | None:
    """A score as JSON can hold it (JSON has no infinity)."""
    return x if math.isfinite(x) else None


def plain_translation(d: Decoded, settings: Settings, max_src_len: int) -> dict[str, Any]:
    """One entry of a /translate answer, with the attention and the n best when asked for."""
    r = d.result
    obj: dict[str, Any] = {"input": r.input, "output": r.output, "score": _number(r.score)}
    if settings.nbest > 1:
        obj["nbest"] = [{"output": output, "score": _number(score)} for score, output in d.nbest]
    else:
        obj["tokens"] = r.tokens
    if r.attention is not None:
        obj["src_tokens"] = r.src_tokens
        obj["attention_rows"] = r.attention_rows  # the target token of each row: `tokens`, then <eos> when produced
        obj["attention"] = [[round(w, 4) for w in row] for row in r.attention]
    obj["src_length"] = d.src_length
    obj["truncated"] = d.src_length > max_src_len
    if r.warning is not None:  # most of the sentence's tokens are unknown (the server logs no line for it)
        obj["warning"] = r.warning
    return obj


def onmt_answer(texts: list[str], decoded: list[Decoded], nbest: int) -> list[list[dict[str, Any]]]:
    """OpenNMT-py's answer: a list per rank of the n best, each holding an entry per input, in input order."""
    out: list[list[dict[str, Any]]] = [[] for _ in range(nbest)]
    for text, d in zip(texts, decoded):
        ranked = d.nbest + [(0.0, "")] * (nbest - len(d.nbest))  # an empty input gives empty translations
        for rank, (score, tgt) in enumerate(ranked[:nbest]):
            out[rank].append({"src": text, "tgt": tgt, "n_best": nbest, "pred_score": _number(score)})
    return out


def onmt_models(state: ServeState) -> list[dict[str, Any]]:
    """OpenNMT-py's model list: the one model, with the options a request gets by default."""
    opt = {"beam_size": state.beam, "n_best": DEFAULT_NBEST, "batch_size": state.batcher.max_batch}
    return [{"model_id": MODEL_ID, "models": [str(p) for p in state.translator.paths], "loaded": True, "timeout": -1, "opt": opt}]


def health_info(state: ServeState) -> dict[str, Any]:
    """The answer of GET /health: the model, the device, the counters and the limits."""
    t = state.translator
    return {
        "status": "ok",
        "model": t.name,
        "kind": t.kind,
        "src_lang": t.cfg.data.src_lang,
        "tgt_lang": t.cfg.data.tgt_lang,
        "src_vocab": len(t.src.vocab),
        "tgt_vocab": len(t.tgt.vocab),
        "device": str(t.device),
        "precision": t.precision,
        "quantize": t.quantize,
        "beam": state.beam,
        "max_batch": state.batcher.max_batch,
        "uptime_s": round(time.monotonic() - state.started, 3),
        "requests": state.requests,
        "in_flight": state.batcher.in_flight,
        "batches_decoded": state.batcher.batches,
        "sentences_decoded": state.batcher.sentences,
        "limits": asdict(state.limits),
    }


# ---- the page ----------------------------------------------------------------------------------------------

PAGE_EXAMPLES = 3  # sources of the validation data the page offers to try
PAGE_EXAMPLE_CHARS = 80  # the longest example offered


def page_examples(data_cfg: DataConfig, n: int = PAGE_EXAMPLES) -> list[str]:
    """The first `n` distinct sources of the model's validation data (data.valid) of at most PAGE_EXAMPLE_CHARS
    characters, for the page to offer; none when the config names no validation data or it is not on this machine."""
    if not data_cfg.valid:
        return []
    try:
        items = load_eval_corpus(data_cfg, "valid").items
    except (DataError, ConfigError, OSError, UnicodeError):
        return []
    found: list[str] = []
    for item in items:
        if 0 < len(item.src) <= PAGE_EXAMPLE_CHARS and item.src not in found:
            found.append(item.src)
            if len(found) == n:
                break
    return found


def model_summary(t: Translator) -> str:
    """What the page says of the model: what it maps, each model's path, kind, training steps and best validation
    score (`en -> de: runs/demo/best.pt (checkpoint, 1200 steps, best val BLEU 35.20)`; an ensemble names each)."""
    parts = []
    for m in t.models:
        facts = [m.kind] + ([] if m.step is None else [f"{m.step} steps"])
        facts += [] if m.best is None else [f"best val {said(m.cfg.train.metric, m.best)}"]
        parts.append(f"{m.path} ({', '.join(facts)})")
    head = t.cfg.data.sides if len(parts) == 1 else f"{t.cfg.data.sides}, {t.kind}"
    return f"{head}: {' + '.join(parts)}"
