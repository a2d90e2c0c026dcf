"""`seq2seq serve`: a trained model behind HTTP (the optional `serve` extra: Starlette + uvicorn).

    POST /translator/translate   OpenNMT-py's REST API: [{"src": "...", "id": 0}] -> [[{"src", "tgt", "n_best", "pred_score"}]]
    GET  /translator/models      OpenNMT-py's model list (one model, id 0)
    GET  /translator/health      {"status": "ok"}
    POST /translate              {"text": ["..."], "beam": k, "nbest": n, "attention": bool} -> {"translations": [...]}
    GET  /health                 model, vocabularies, device, precision, uptime, counters, limits
    GET  /                       a page: a text box, the translation and its attention heatmap

The sentences of concurrent requests are gathered, for at most `wait_ms` after the oldest arrived and at most
`max_batch` sentences of the same decoding settings, into one decoding batch. Batches are decoded one at a
time on a worker thread, so the event loop never waits for the model. The searches treat each sentence on
its own, so a sentence translates to the same output and score alone or inside any batch.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import ipaddress
import json
import logging
import math
import signal
import socket
import sys
import threading
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from importlib import resources
from typing import TYPE_CHECKING, Any, AsyncIterator, Callable, Iterator, NamedTuple, Sequence

from seq2seq.errors import ConfigError

try:  # the serve extra is optional: `require_extra` says how to install it
    import uvicorn
    from starlette.applications import Starlette
    from starlette.exceptions import HTTPException
    from starlette.middleware import Middleware
    from starlette.requests import ClientDisconnect, Request
    from starlette.responses import HTMLResponse, Response
    from starlette.routing import Route
except ImportError as e:
    _MISSING: str | None = e.name or "starlette"
else:
    _MISSING = None

if TYPE_CHECKING:
    from seq2seq.extras.results import Result
    from seq2seq.translator import Translator

SERVE_EXTRA = "pip install 'seq2seq[serve]'"
MODEL_ID = 0  # the id of the one model, as OpenNMT-py's clients name it
DEFAULT_WAIT_MS = 5.0  # how long a request may wait for others to share its decoding batch
GRACE_S = 60  # on SIGINT / SIGTERM, how long requests in flight may take to finish
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
PAGE_CSP = "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; img-src data:"
_INFO = "seq2seq.request"  # the scope key of the per-request log record
_DRAIN_FACTOR = 8  # a body up to this many times the limit is read (and dropped) before the 413
log = logging.getLogger("seq2seq")


def require_extra() -> None:
    """Raise a ConfigError that says how to install the serve extra when Starlette or uvicorn is missing."""
    if _MISSING is not None:
        raise ConfigError(f"seq2seq serve needs the serve extra ({_MISSING} is not installed): {SERVE_EXTRA}")


@dataclass(frozen=True)
class Limits:
    """What one request may ask for; longer sources are not refused but truncated to `max_src_len` tokens (reported)."""

    max_sentences: int = 256  # per request
    max_body_bytes: int = 1 << 20
    max_beam: int = 64  # also the largest n-best
    max_src_len: int = 250  # the model's decode.max_src_len


class Settings(NamedTuple):
    """How a sentence is decoded; only sentences with equal settings share a batch."""

    beam: int
    nbest: int
    attention: bool


class Decoded(NamedTuple):
    result: Result  # the best translation; its tokens are empty when nbest > 1; attention when asked for
    nbest: list[tuple[float, str]]  # the n best (score, output), best first ([] for an empty input with nbest > 1)
    src_length: int  # source tokens before truncation to max_src_len, <eos> not counted


def decode_texts(t: Translator, texts: list[str], settings: Settings, batch_size: int) -> list[Decoded]:
    """Translate `texts` with `settings` in one call of the Translator, which batches them by `batch_size`."""
    from seq2seq.extras.results import Result, make_results

    lengths = [len(t.src.ids(text)) if text.strip() else 0 for text in texts]
    if settings.nbest == 1:
        hyps = t.hypotheses(texts, batch_size, return_attention=settings.attention, beam_size=settings.beam)
        return [Decoded(r, [(r.score, r.output)], n) for r, n in zip(make_results(t, texts, hyps), lengths)]
    out = []
    for text, block, n in zip(texts, t.nbest(texts, settings.nbest, settings.beam, batch_size), lengths):
        score, output = block[0] if block else (0.0, "")
        out.append(Decoded(Result(text, output, score, [], [], None), block, n))
    return out


@dataclass
class _Job:
    texts: list[str]
    settings: Settings
    future: asyncio.Future[list[Decoded]]
    arrived: float  # event-loop time


class Batcher:
    """Gathers the sentences of concurrent requests into decoding batches, decoded one at a time on a worker thread.

    A batch takes the oldest waiting job's settings and the jobs with those settings, oldest first, up to
    `max_batch` sentences (a larger request goes alone). It waits for more at most `wait_s` after the oldest
    job arrived, and only while other requests are open (being read): a lone client waits for nothing.
    """

    def __init__(self, decode: Callable[[list[str], Settings], list[Decoded]], max_batch: int, wait_s: float) -> None:
        self.decode, self.max_batch, self.wait_s = decode, max_batch, wait_s
        self.batches = 0  # decoding batches run; a request of more than max_batch sentences counts as several
        self.sentences = 0
        self.in_flight = 0  # requests waiting or being decoded
        self.open_requests = 0  # HTTP requests being handled, counted by the RequestLog middleware
        self._pending: list[_Job] = []
        self._arrived: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="seq2seq-decode")

    def start(self) -> None:
        self._arrived = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for job in self._pending:
            job.future.cancel()
        self._executor.shutdown(wait=True)

    async def submit(self, texts: list[str], settings: Settings) -> list[Decoded]:
        """The decoded `texts`, in order, once the batch holding them has run."""
        assert self._arrived is not None, "Batcher.start() runs at application startup"
        loop = asyncio.get_running_loop()
        job = _Job(texts, settings, loop.create_future(), loop.time())
        self._pending.append(job)
        self._arrived.set()
        self.in_flight += 1
        try:
            return await job.future
        finally:
            self.in_flight -= 1

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._gather()
            jobs = self._take()
            if not jobs:
                continue
            texts = [text for job in jobs for text in job.texts]
            try:
                decoded = await loop.run_in_executor(self._executor, self.decode, texts, jobs[0].settings)
            except Exception as e:  # noqa: BLE001 (handed to the waiting requests; the request log reports it)
                for job in jobs:
                    if not job.future.done():
                        job.future.set_exception(e)
                continue
            self.batches += -(-len(texts) // self.max_batch)
            self.sentences += len(texts)
            start = 0
            for job in jobs:
                if not job.future.done():  # a request whose client went away is cancelled
                    job.future.set_result(decoded[start : start + len(job.texts)])
                start += len(job.texts)

    async def _gather(self) -> None:
        """Wait for a job, then for `max_batch` sentences with its settings, until `wait_s` after it arrived."""
        assert self._arrived is not None
        loop = asyncio.get_running_loop()
        while not self._pending:
            self._arrived.clear()
            await self._arrived.wait()
        first = self._pending[0]
        while sum(len(j.texts) for j in self._pending if j.settings == first.settings) < self.max_batch:
            remaining = first.arrived + self.wait_s - loop.time()
            if remaining <= 0 or self.open_requests <= self.in_flight:  # no other request on its way
                break
            self._arrived.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), remaining)

    def _take(self) -> list[_Job]:
        """The jobs of the next batch; the others keep waiting, in order."""
        self._pending = [j for j in self._pending if not j.future.done()]
        if not self._pending:
            return []
        settings = self._pending[0].settings
        taken: list[_Job] = []
        rest: list[_Job] = []
        n = 0
        for job in self._pending:
            if job.settings == settings and (not taken or n + len(job.texts) <= self.max_batch):
                taken.append(job)
                n += len(job.texts)
            else:
                rest.append(job)
        self._pending = rest
        return taken


@dataclass
class ServeState:
    translator: Translator
    batcher: Batcher
    limits: Limits
    beam: int  # the beam of requests that name none: --beam, else the model's decode.beam_size
    quantize: str | None
    started: float = field(default_factory=time.monotonic)
    requests: int = 0


# ---- requests: parsing and validation ----------------------------------------------------------------------


class RequestError(Exception):
    """A bad request, answered with `status` and {"status": "error", "error": message}."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def _kind(value: Any) -> str:
    """How JSON calls the type of `value`."""
    if isinstance(value, bool):
        return "a boolean"
    names = {dict: "an object", list: "a list", str: "a string", int: "a number", float: "a number", type(None): "null"}
    return names.get(type(value), type(value).__name__)


def _show(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 40 else text[:39] + "\u2026"


async def read_json(request: Request, limit: int) -> Any:
    """The request body parsed as JSON; a body over `limit` bytes, not UTF-8 or not JSON is a RequestError."""
    declared = request.headers.get("content-length", "")
    too_large = f"request body over the limit of {limit} bytes"
    if declared.isdigit() and int(declared) > _DRAIN_FACTOR * limit:
        raise RequestError(f"{too_large} ({int(declared)} bytes)", 413)
    # A body somewhat over the limit is read and dropped: a client still sending it would otherwise see the
    # connection reset instead of the answer.
    body, size = bytearray(), 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size <= limit:
                body += chunk
            elif size > _DRAIN_FACTOR * limit:
                break
    except ClientDisconnect:
        raise RequestError("the client went away before sending the whole body") from None
    if size > limit:
        raise RequestError(f"{too_large} ({declared if declared.isdigit() else 'more'} bytes)", 413)
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
    if type(value) is not int or not low <= value <= high:
        raise RequestError(f"{where} must be an integer from {low} to {high}, got {_show(value)}")
    return value


def _beam_for(asked: int | None, nbest: int, default: int, names: tuple[str, str]) -> int:
    """The beam to decode with: the one asked for, else the default widened to `nbest`."""
    if asked is None:
        return max(default, nbest)
    if nbest > asked:
        raise RequestError(f"'{names[1]}' {nbest} needs '{names[0]}' {nbest} or more, got {asked}")
    return asked


PLAIN_FIELDS = ("text", "beam", "nbest", "attention")


def parse_plain(obj: Any, state: ServeState) -> tuple[list[str], Settings]:
    """The sentences and settings of a POST /translate body: {"text": [...], "beam": k, "nbest": n, "attention": b}."""
    limits = state.limits
    if not isinstance(obj, dict):
        raise RequestError(f'expected a JSON object like {{"text": ["..."]}}, got {_kind(obj)}')
    _check_fields(obj, PLAIN_FIELDS, "")
    if "text" not in obj:
        raise RequestError("missing field 'text' (a list of sentences)")
    texts = [obj["text"]] if isinstance(obj["text"], str) else obj["text"]
    if not isinstance(texts, list):
        raise RequestError(f"'text' must be a list of strings, got {_kind(texts)}")
    if not texts:
        raise RequestError("'text' is an empty list: give at least one sentence")
    if len(texts) > limits.max_sentences:
        raise RequestError(f"'text' holds {len(texts)} sentences, over the limit of {limits.max_sentences} per request", 413)
    for i, text in enumerate(texts):
        _check_string(text, f"text[{i}]")
    beam = None if obj.get("beam") is None else _int_value(obj["beam"], "'beam'", 1, limits.max_beam)
    nbest = _int_value(obj.get("nbest", 1), "'nbest'", 1, limits.max_beam)
    attention = obj.get("attention", False)
    if not isinstance(attention, bool):
        raise RequestError(f"'attention' must be true or false, got {_show(attention)}")
    if attention and nbest > 1:
        raise RequestError("'attention' shows one translation per input: leave out 'nbest' or set it to 1")
    return texts, Settings(_beam_for(beam, nbest, state.beam, ("beam", "nbest")), nbest, attention)


ONMT_FIELDS = ("src", "id", "n_best")


def parse_onmt(obj: Any, state: ServeState) -> tuple[list[str], Settings]:
    """The sentences and settings of an OpenNMT-py request: [{"src": "...", "id": 0, "n_best": n}, ...]."""
    limits = state.limits
    if not isinstance(obj, list):
        raise RequestError(f'expected a JSON list like [{{"src": "...", "id": {MODEL_ID}}}], got {_kind(obj)}')
    if not obj:
        raise RequestError('empty list: give at least one {"src": "..."} item')
    if len(obj) > limits.max_sentences:
        raise RequestError(f"{len(obj)} items, over the limit of {limits.max_sentences} per request", 413)
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
        n = _int_value(item.get("n_best", 1), f"{where}: 'n_best'", 1, limits.max_beam)
        if nbest is not None and n != nbest:
            raise RequestError(f"{where}: 'n_best' {n} differs from item 0's {nbest} (one n_best per request)")
        nbest = n
    assert nbest is not None
    return texts, Settings(_beam_for(None, nbest, state.beam, ("beam", "n_best")), nbest, False)


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
    return obj


def onmt_answer(texts: list[str], decoded: list[Decoded], nbest: int) -> list[list[dict[str, Any]]]:
    """OpenNMT-py's answer: a list per rank of the n best, each holding an entry per input, in input order."""
    out: list[list[dict[str, Any]]] = [[] for _ in range(nbest)]
    for text, d in zip(texts, decoded):
        ranked = d.nbest + [(0.0, "")] * (nbest - len(d.nbest))  # an empty input gives empty translations
        for rank, (score, tgt) in enumerate(ranked[:nbest]):
            out[rank].append({"src": text, "tgt": tgt, "n_best": nbest, "pred_score": _number(score)})
    return out


def health_info(state: ServeState) -> dict[str, Any]:
    t = state.translator
    return {
        "status": "ok",
        "model": str(t.path),
        "src_lang": t.cfg.data.src_lang,
        "tgt_lang": t.cfg.data.tgt_lang,
        "src_vocab": len(t.src.vocab),
        "tgt_vocab": len(t.tgt.vocab),
        "device": str(t.device),
        "precision": t.precision,
        "quantize": state.quantize,
        "beam": state.beam,
        "max_batch": state.batcher.max_batch,
        "uptime_s": round(time.monotonic() - state.started, 3),
        "requests": state.requests,
        "in_flight": state.batcher.in_flight,
        "batches_decoded": state.batcher.batches,
        "sentences_decoded": state.batcher.sentences,
        "limits": asdict(state.limits),
    }


def _json(obj: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(json.dumps(obj, ensure_ascii=False), status, headers, media_type="application/json")


def _error(message: str, status: int, headers: dict[str, str] | None = None) -> Response:
    return _json({"status": "error", "error": message}, status, headers)


# ---- the application ---------------------------------------------------------------------------------------


def _state(request: Request) -> ServeState:
    return request.app.state.serve


def _count_sentences(request: Request, n: int) -> None:
    request.scope[_INFO]["sentences"] = n


async def _translate(request: Request) -> Response:
    state = _state(request)
    texts, settings = parse_plain(await read_json(request, state.limits.max_body_bytes), state)
    _count_sentences(request, len(texts))
    decoded = await state.batcher.submit(texts, settings)
    return _json({"translations": [plain_translation(d, settings, state.limits.max_src_len) for d in decoded]})


async def _onmt_translate(request: Request) -> Response:
    state = _state(request)
    texts, settings = parse_onmt(await read_json(request, state.limits.max_body_bytes), state)
    _count_sentences(request, len(texts))
    return _json(onmt_answer(texts, await state.batcher.submit(texts, settings), settings.nbest))


async def _onmt_models(request: Request) -> Response:
    state = _state(request)
    opt = {"beam_size": state.beam, "n_best": 1, "batch_size": state.batcher.max_batch}
    return _json([{"model_id": MODEL_ID, "models": [str(state.translator.path)], "loaded": True, "timeout": -1, "opt": opt}])


async def _onmt_health(request: Request) -> Response:
    return _json({"status": "ok"})


async def _health(request: Request) -> Response:
    return _json(health_info(_state(request)))


@functools.lru_cache(maxsize=1)
def page_html() -> str:
    """The page at /, shipped as package data beside this module."""
    return resources.files("seq2seq.extras").joinpath("serve_page.html").read_text(encoding="utf-8")


async def _page(request: Request) -> Response:
    return HTMLResponse(page_html(), headers={"Content-Security-Policy": PAGE_CSP, "X-Content-Type-Options": "nosniff"})


async def _on_request_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestError)
    return _error(str(exc), exc.status)


async def _on_http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    where = f"{request.method} {request.url.path}"
    message = {404: f"no such endpoint: {where} (see GET /health)", 405: f"method not allowed: {where}"}.get(exc.status_code, str(exc.detail))
    return _error(message, exc.status_code, exc.headers)


class RequestLog:
    """ASGI middleware: one stderr line per request (method, path, status, sentences, ms); any exception -> JSON 500."""

    def __init__(self, app: Any, state: ServeState) -> None:
        self.app, self.state = app, state

    async def __call__(self, scope: dict[str, Any], receive: Callable[..., Any], send: Callable[..., Any]) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        info = scope[_INFO] = {"status": 500, "sentences": 0, "started": False}
        start = time.perf_counter()
        self.state.batcher.open_requests += 1

        async def send_and_note(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                info["status"], info["started"] = message["status"], True
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        except Exception as e:  # noqa: BLE001 (the catch-all: logged here, never a traceback to the client)
            log.error("error: %s %s: %s", scope["method"], scope["path"], "".join(traceback.format_exception(e)).rstrip())
            if not info["started"]:
                await _error(f"internal error ({type(e).__name__}); the server log has the details", 500)(scope, receive, send_and_note)
        finally:
            self.state.batcher.open_requests -= 1
            self.state.requests += 1
            ms = (time.perf_counter() - start) * 1000
            log.info("%s %s %s %d sentences %.1f ms", scope["method"], scope["path"], info["status"], info["sentences"], ms)


def build_app(state: ServeState) -> Starlette:
    """The Starlette application serving `state`'s model; its lifespan starts and stops the batcher."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        state.batcher.start()
        try:
            yield
        finally:
            await state.batcher.stop()

    routes = [
        Route("/", _page, methods=["GET"]),
        Route("/health", _health, methods=["GET"]),
        Route("/translate", _translate, methods=["POST"]),
        Route("/translator/translate", _onmt_translate, methods=["POST"]),
        Route("/translator/models", _onmt_models, methods=["GET"]),
        Route("/translator/health", _onmt_health, methods=["GET"]),
    ]
    app = Starlette(
        routes=routes,
        middleware=[Middleware(RequestLog, state=state)],
        exception_handlers={RequestError: _on_request_error, HTTPException: _on_http_error},
        lifespan=lifespan,
    )
    app.state.serve = state
    return app


# ---- running -----------------------------------------------------------------------------------------------


def listen(host: str, port: int) -> socket.socket:
    """A socket bound to host:port (port 0: any free one) and listening; a ConfigError when that fails."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
    except socket.gaierror as e:
        raise ConfigError(f"--host {host}: cannot resolve it ({e.strerror})") from None
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(2048)
    except OSError as e:
        sock.close()
        raise ConfigError(f"cannot listen on {host} port {port}: {e.strerror or e} (choose another --host or --port)") from None
    return sock


def _graceful_server(config: uvicorn.Config, stopped_by: list[int]) -> uvicorn.Server:
    """A uvicorn server that, on SIGINT or SIGTERM, finishes the requests in flight and returns (exit code 0).

    uvicorn itself raises the signal again once it has shut down, which would end the process with 128 + signal.
    A second Ctrl-C stops waiting for the requests in flight.
    """

    class GracefulServer(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            if threading.current_thread() is not threading.main_thread():
                yield
                return

            def on_signal(sig: int, frame: object) -> None:
                stopped_by.append(sig)
                if self.should_exit and sig == signal.SIGINT:
                    self.force_exit = True
                self.should_exit = True

            previous = {sig: signal.signal(sig, on_signal) for sig in STOP_SIGNALS}
            try:
                yield
            finally:
                for sig, handler in previous.items():
                    signal.signal(sig, handler)

    return GracefulServer(config)


def _setup_logging() -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    # The answer reports truncation per sentence; the translator's warning numbers lines of a merged batch.
    handler.addFilter(lambda record: record.funcName != "encode_sources")
    for old in list(log.handlers):
        log.removeHandler(old)
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False


def _url(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"


def serve(
    model: str | None, host: str = "127.0.0.1", port: int = 5000, beam: int | None = None, max_batch: int | None = None,
    quantize: str | None = None, wait_ms: float = DEFAULT_WAIT_MS,
) -> None:
    """Load the model once and serve it until SIGINT or SIGTERM; the requests in flight finish first."""
    require_extra()
    _setup_logging()
    sock = listen(host, port)  # a busy port fails before the model loads
    from seq2seq.translator import Translator

    t = Translator.load(model, quantize=quantize)
    batch = max_batch or t.cfg.decode.batch_size
    batcher = Batcher(lambda texts, settings: decode_texts(t, texts, settings, batch), batch, wait_ms / 1000)
    state = ServeState(t, batcher, Limits(max_src_len=t.cfg.decode.max_src_len), beam or t.cfg.decode.beam_size, t.cfg.decode.quantize)
    config = uvicorn.Config(
        build_app(state), log_level="warning", access_log=False, lifespan="on", ws="none",
        timeout_graceful_shutdown=GRACE_S, server_header=False,
    )
    stopped_by: list[int] = []
    server = _graceful_server(config, stopped_by)
    address = sock.getsockname()[0]
    if not ipaddress.ip_address(address.split("%")[0]).is_loopback:
        log.warning("warning: listening on %s: reachable from other machines, and the server has no authentication", address)
    log.info(
        "serving %s (%s -> %s, %s, beam %d, max batch %d) on %s; Ctrl-C stops",
        t.path, t.cfg.data.src_lang, t.cfg.data.tgt_lang, t.device, state.beam, batch, _url(sock),
    )
    server.run(sockets=[sock])
    how = signal.Signals(stopped_by[0]).name if stopped_by else "the server"
    log.info("stopped by %s after %d requests (%d sentences in %d batches)", how, state.requests, batcher.sentences, batcher.batches)
