"""Running `seq2seq serve`: the extra's check, the listening socket, uvicorn with a graceful stop, the log.

The model loads once; its config gives every decoding default (beam, batch size, max_src_len, quantize)
that the command line leaves open. On SIGINT or SIGTERM the requests in flight finish, then it returns.
"""

from __future__ import annotations

import contextlib
import importlib
import ipaddress
import logging
import signal
import socket
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Iterator, Sequence

from seq2seq.errors import ConfigError, install_hint
from seq2seq.serve.batching import DEFAULT_WAIT_MS, Batcher, decode_texts
from seq2seq.serve.requests import Limits, ServeState, page_examples

if TYPE_CHECKING:
    import uvicorn

EXTRA_MODULES = ("starlette", "uvicorn")
GRACE_S = 60  # on SIGINT / SIGTERM, how long requests in flight may take to finish
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
log = logging.getLogger("seq2seq")


def require_extra() -> None:
    """Raise a ConfigError that says how to install the serve extra when Starlette or uvicorn is missing."""
    for name in EXTRA_MODULES:
        try:
            importlib.import_module(name)
        except ImportError:
            raise ConfigError(f"seq2seq serve needs the serve extra ({name} is not installed): {install_hint('serve')}") from None


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
    import uvicorn

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
    """One line per message on stderr, as the request log and the tests read them."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    for old in list(log.handlers):
        log.removeHandler(old)
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False


def _count(n: int, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"


def _url(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"


def serve(
    models: Sequence[str | None] | str | None, *, host: str, port: int, beam: int | None = None, max_batch: int | None = None,
    quantize: str | None = None, wait_ms: float = DEFAULT_WAIT_MS, lexicon: str | Path | None = None,
) -> None:
    """Load the model (one, or several decoding as an ensemble: decode/translator.open_model) once and serve it until
    SIGINT or SIGTERM; the requests in flight finish first.

    `beam`, `max_batch` and `quantize` None: the model's decode.beam_size, decode.batch_size, decode.quantize.
    `host` and `port` have their defaults in the command line only.
    """
    require_extra()
    import uvicorn

    from seq2seq.serve.app import build_app

    _setup_logging()
    sock = listen(host, port)  # a busy port fails before torch is imported and the model loads
    from seq2seq.decode.translator import open_model

    t = open_model(models, quantize=quantize).with_lexicon(lexicon)  # an export decodes on onnxruntime: torch is never imported
    decode = t.cfg.decode
    batch = max_batch or decode.batch_size
    batcher = Batcher(lambda texts, settings: decode_texts(t, texts, settings, batch), batch, wait_ms / 1000)
    state = ServeState(t, batcher, Limits(max_src_len=decode.max_src_len), beam or decode.beam_size, page_examples(t.cfg.data))
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
        "serving %s (%s, %s, beam %d, max batch %d) on %s; Ctrl-C stops",
        t.name, t.cfg.data.sides, t.device, state.beam, batch, _url(sock),
    )
    server.run(sockets=[sock])
    how = signal.Signals(stopped_by[0]).name if stopped_by else "the server"
    log.info(
        "stopped by %s after %s (%s in %s)", how, _count(state.requests, "request", "requests"),
        _count(batcher.sentences, "sentence", "sentences"), _count(batcher.batches, "batch", "batches"),
    )
