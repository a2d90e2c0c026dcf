"""The Starlette application of `seq2seq serve`: routes, the request log, the page, JSON answers and errors.

    POST /translator/translate   OpenNMT-py's REST API: [{"src": "...", "id": 0}] -> [[{"src", "tgt", "n_best", "pred_score"}]]
    GET  /translator/models      OpenNMT-py's model list (one model, id 0)
    GET  /translator/health      {"status": "ok"}
    POST /translate              {"text": ["..."], "beam": k, "nbest": n, "attention": bool} -> {"translations": [...]}
    GET  /health                 model, vocabularies, device, precision, uptime, counters, limits
    GET  /                       a page: a text box, the translation and its attention heatmap

What a request means and what is answered is in `requests`; how sentences are decoded together, in `batching`.
This module only moves them over HTTP. It needs the serve extra: `run.require_extra` checks before importing it.
"""

from __future__ import annotations

import contextlib
import functools
import html
import json
import logging
import time
import traceback
import urllib.parse
from importlib import resources
from typing import Any, AsyncIterator, Callable, Sequence

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from seq2seq.serve.requests import (
    RequestError, ServeState, health_info, model_summary, onmt_answer, onmt_models, parse_json, parse_onmt, parse_plain,
    plain_translation,
)

PAGE_CSP = "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; img-src data:"
PAGE_MAX_BEAM = "{{max_beam}}"  # the page's placeholder for the largest beam a request may ask for
PAGE_MODEL = "{{model}}"  # ... for the model's description (serve/requests.model_summary)
PAGE_EXAMPLES = "{{examples}}"  # ... for the links that translate a validation sentence
_INFO = "seq2seq.request"  # the scope key of the per-request log record
_DRAIN_FACTOR = 8  # a body up to this many times the limit is read (and dropped) before the 413
log = logging.getLogger("seq2seq")


# ---- JSON in and out -----------------------------------------------------------------------------------------


async def read_body(request: Request, limit: int) -> bytes:
    """The request body; one over `limit` bytes is a RequestError (413), as is a client gone before the end."""
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
    return bytes(body)


def _json(obj: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(json.dumps(obj, ensure_ascii=False), status, headers, media_type="application/json")


def _error(message: str, status: int, headers: dict[str, str] | None = None) -> Response:
    return _json({"status": "error", "error": message}, status, headers)


# ---- the routes ----------------------------------------------------------------------------------------------


def _state(request: Request) -> ServeState:
    return request.app.state.serve


def _count_sentences(request: Request, n: int) -> None:
    request.scope[_INFO]["sentences"] = n


async def _read_request(request: Request) -> Any:
    state = _state(request)
    return parse_json(await read_body(request, state.limits.max_body_bytes))


async def _translate(request: Request) -> Response:
    state = _state(request)
    texts, settings = parse_plain(await _read_request(request), state.limits, state.beam)
    _count_sentences(request, len(texts))
    decoded = await state.batcher.submit(texts, settings)
    return _json({"translations": [plain_translation(d, settings, state.limits.max_src_len) for d in decoded]})


async def _onmt_translate(request: Request) -> Response:
    state = _state(request)
    texts, settings = parse_onmt(await _read_request(request), state.limits, state.beam)
    _count_sentences(request, len(texts))
    return _json(onmt_answer(texts, await state.batcher.submit(texts, settings), settings.nbest))


async def _onmt_models(request: Request) -> Response:
    return _json(onmt_models(_state(request)))


async def _onmt_health(request: Request) -> Response:
    return _json({"status": "ok"})


async def _health(request: Request) -> Response:
    return _json(health_info(_state(request)))


@functools.lru_cache(maxsize=1)
def _page_template() -> str:
    """The page at /, shipped as package data beside this module."""
    return resources.files("seq2seq.serve").joinpath("page.html").read_text(encoding="utf-8")


def page_html(max_beam: int, model: str = "", examples: Sequence[str] = ()) -> str:
    """The page with this server's limits, the model's description and the examples to try filled in (escaped), so
    the page repeats none of them; each example is a link to /?q=EXAMPLE, which translates it."""
    template = _page_template()
    assert all(p in template for p in (PAGE_MAX_BEAM, PAGE_MODEL, PAGE_EXAMPLES)), "page.html holds the placeholders"
    links = " ".join(f'<a class="example" href="/?q={urllib.parse.quote(text)}">{html.escape(text)}</a>' for text in examples)
    return (
        template.replace(PAGE_MAX_BEAM, str(max_beam)).replace(PAGE_MODEL, html.escape(model))
        .replace(PAGE_EXAMPLES, f"Try: {links}" if links else "")
    )


async def _page(request: Request) -> Response:
    state = _state(request)
    page = page_html(state.limits.max_beam, model_summary(state.translator), state.examples)
    return HTMLResponse(page, headers={"Content-Security-Policy": PAGE_CSP, "X-Content-Type-Options": "nosniff"})


async def _on_request_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestError)
    return _error(str(exc), exc.status)


async def _on_http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    where = f"{request.method} {request.url.path}"
    message = {404: f"no such endpoint: {where} (see GET /health)", 405: f"method not allowed: {where}"}.get(exc.status_code, str(exc.detail))
    return _error(message, exc.status_code, exc.headers)


# ---- the request log and the application ---------------------------------------------------------------------


class RequestLog:
    """ASGI middleware: one stderr line per request (method, path, status, sentences, ms); any exception -> JSON 500.

    It also counts the open requests for the batcher, which waits for a batch to fill only while some are open.
    """

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
            n = info["sentences"]
            log.info("%s %s %s %d %s %.1f ms", scope["method"], scope["path"], info["status"], n, "sentence" if n == 1 else "sentences", ms)


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
