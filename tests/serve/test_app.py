"""`seq2seq serve` end to end: a real server process on a loopback port, both APIs, the page, errors over HTTP,
batching across concurrent requests, shutdown on SIGTERM, and the missing extra.

What a request may hold is tested without HTTP in test_requests.py, the batcher in test_batching.py; here
each error kind that HTTP adds (the body's size, the endpoint, the method) and one per API for the mapping."""

from __future__ import annotations

import http.client
import html
import json
import urllib.parse
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import asdict
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import pytest
import torch

from seq2seq.config import DecodeConfig, TrainConfig
from seq2seq.device import choose_decoding_precision
from seq2seq.model.checkpoint import Checkpoint
from seq2seq.model.network import count_parameters
from seq2seq.serve.requests import Limits
from tests.conftest import ONE_THREAD, ROOT, run_cli, toy_pairs

HAVE_EXTRA = find_spec("starlette") is not None and find_spec("uvicorn") is not None
needs_extra = pytest.mark.skipif(not HAVE_EXTRA, reason="needs the serve extra: pip install -e '.[serve]'")
INSTALL_HINT = "pip install -e '.[serve]'"  # the checkout form: `seq2seq` on the index is another project
DECODE = DecodeConfig()  # the tiny model's decode section, but for batch_size (64 in TINY_CONFIG)
LIMITS = Limits(max_src_len=DECODE.max_src_len)
# Sixteen sentences of different lengths (one empty, one long), as the concurrency test sends them.
SENTENCES = [s for s, _ in toy_pairs("test", 13)] + ["", "I love you", " ".join(s for s, _ in toy_pairs("val", 4))]


class Server:
    """A `seq2seq serve` process in `cwd`; with port 0 it picks a free loopback port, read from its first line."""

    def __init__(self, cwd: Path, *args: str, port: int = 0, startup_s: float = 90) -> None:
        env = {**os.environ, **ONE_THREAD, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
        command = [sys.executable, "-m", "seq2seq", "serve", "--port", str(port), *args]
        self.proc = subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self.lines: list[str] = []
        self.port = 0
        ready = threading.Event()
        threading.Thread(target=self._read, args=(ready,), daemon=True).start()
        if not ready.wait(startup_s) or not self.port:
            self.proc.kill()
            raise AssertionError(f"server did not start: {self.stderr()}")

    def _read(self, ready: threading.Event) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line.rstrip("\n"))
            found = re.search(r"serving .* on http://127\.0\.0\.1:(\d+)/", line)
            if found:
                self.port = int(found.group(1))
                ready.set()
        ready.set()  # the process ended

    def stderr(self) -> str:
        return "\n".join(self.lines)

    def stop(self, timeout: float = 60) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)


def call(port: int, method: str, path: str, body: Any = None, raw: bytes | None = None, timeout: float = 60) -> tuple[int, Any, http.client.HTTPResponse]:
    """One request on a fresh connection; the answer parsed as JSON when it is JSON."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode("utf-8"))
    try:
        conn.request(method, path, body=data, headers={"Content-Type": "application/json"})
        response = conn.getresponse()
        payload = response.read()
    finally:
        conn.close()
    is_json = "application/json" in (response.getheader("content-type") or "")
    return response.status, json.loads(payload) if is_json else payload.decode("utf-8"), response


def translate(port: int, body: dict[str, Any]) -> list[dict[str, Any]]:
    status, answer, _ = call(port, "POST", "/translate", body)
    assert status == 200, answer
    return answer["translations"]


def health(port: int) -> dict[str, Any]:
    status, answer, _ = call(port, "GET", "/health")
    assert status == 200, answer
    return answer


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def close(x: Any, y: Any) -> bool:
    """Equal, but for floats within float32 rounding: the batch's shape changes how matmuls round.

    Outputs and tokens are identical in any batch; a score or attention weight may differ in its last bits.
    """
    if isinstance(x, float) and isinstance(y, float):
        return x == pytest.approx(y, rel=1e-5, abs=1e-4)
    if isinstance(x, dict) and isinstance(y, dict):
        return x.keys() == y.keys() and all(close(x[k], y[k]) for k in x)
    if isinstance(x, list) and isinstance(y, list):
        return len(x) == len(y) and all(close(a, b) for a, b in zip(x, y))
    return x == y


@pytest.fixture(scope="module")
def server(tiny_run: Path):
    """One server for the module, on the tiny model; at the end it must stop on SIGTERM with exit code 0."""
    if not HAVE_EXTRA:
        pytest.skip("needs the serve extra: pip install -e '.[serve]'")
    s = Server(tiny_run, "--model", "runs/tiny")
    yield s
    assert s.stop() == 0, s.stderr()


@pytest.fixture(scope="module")
def reference(tiny_run: Path) -> list[dict[str, Any]]:
    """`translate --json --attention -` on SENTENCES, run once: output, score, tokens and attention of each."""
    (tiny_run / "serve_in.txt").write_text("\n".join(SENTENCES) + "\n", encoding="utf-8")
    proc = run_cli("translate", "--model", "runs/tiny", "--input", "serve_in.txt", "--json", "--attention", "-", "--quiet", cwd=tiny_run)
    assert proc.returncode == 0, proc.stderr
    return [json.loads(line) for line in proc.stdout.splitlines()]


# ---- the two APIs and the page -------------------------------------------------------------------------------


@needs_extra
def test_health_describes_the_model(server: Server, tiny_run: Path):
    info = health(server.port)
    assert info["status"] == "ok" and info["model"].endswith("best.pt")
    served = Checkpoint.read(tiny_run / "runs" / "tiny" / "best.pt")  # decodes as device.choose_decoding_precision says for its size: fp32 for this small one
    precision = choose_decoding_precision(TrainConfig().precision, torch.device("cpu"), count_parameters(served.build_model())).precision
    assert info["src_vocab"] > 4 and info["tgt_vocab"] > 4 and info["device"] == "cpu" and info["precision"] == precision
    assert info["beam"] == DECODE.beam_size and info["max_batch"] == 64 and info["uptime_s"] > 0
    assert info["quantize"] == DECODE.quantize and info["limits"] == asdict(LIMITS)
    assert call(server.port, "GET", "/translator/health")[1] == {"status": "ok"}
    models = call(server.port, "GET", "/translator/models")[1]
    assert models[0]["model_id"] == 0 and models[0]["loaded"] is True and models[0]["models"][0].endswith("best.pt")


@needs_extra
def test_plain_api_equals_translate_json(server: Server, reference: list[dict[str, Any]]):
    got = translate(server.port, {"text": SENTENCES})
    assert [g["output"] for g in got] == [r["output"] for r in reference]
    assert [g["tokens"] for g in got] == [r["tokens"] for r in reference]
    assert close([g["score"] for g in got], [r["score"] for r in reference])
    assert got[13] == {"input": "", "output": "", "score": 0.0, "tokens": [], "src_length": 0, "truncated": False}
    assert all("attention" not in g for g in got)
    one = translate(server.port, {"text": "I love you"})  # a string is one sentence
    assert [one[0]["output"]] == [r["output"] for r in reference if r["input"] == "I love you"]


@needs_extra
def test_attention_equals_translate_json(server: Server, reference: list[dict[str, Any]]):
    got = translate(server.port, {"text": SENTENCES, "attention": True})
    for g, r in zip(got, reference):
        assert g["output"] == r["output"] and g["src_tokens"] == r["src_tokens"] and close(g["attention"], r["attention"])
        if g["input"].strip():
            assert len(g["attention"]) == len(g["attention_rows"]) and g["attention_rows"][: len(g["tokens"])] == g["tokens"]
            assert all(len(row) == len(g["src_tokens"]) and abs(sum(row) - 1) < 1e-2 for row in g["attention"])


@needs_extra
def test_plain_nbest_is_sorted_and_led_by_the_beam_output(server: Server):
    text = SENTENCES[:4] + [""]
    best = translate(server.port, {"text": text, "beam": 4})
    got = translate(server.port, {"text": text, "beam": 4, "nbest": 3})
    for b, g in zip(best[:4], got[:4]):
        scores = [h["score"] for h in g["nbest"]]
        assert len(g["nbest"]) == 3 and scores == sorted(scores, reverse=True)
        assert (g["output"], g["score"]) == (b["output"], b["score"]) == (g["nbest"][0]["output"], scores[0])
    assert got[4]["output"] == "" and got[4]["nbest"] == []
    wide = translate(server.port, {"text": text[:1], "nbest": 2})  # no beam named: the default beam widens to 2
    assert len(wide[0]["nbest"]) == 2


@needs_extra
def test_opennmt_api_answers_in_its_format(server: Server, reference: list[dict[str, Any]]):
    status, answer, _ = call(server.port, "POST", "/translator/translate", [{"src": s, "id": 0} for s in SENTENCES])
    assert status == 200 and len(answer) == 1 and len(answer[0]) == len(SENTENCES)
    for entry, r, s in zip(answer[0], reference, SENTENCES):
        assert close(entry, {"src": s, "tgt": r["output"], "n_best": 1, "pred_score": r["score"]})
    status, answer, _ = call(server.port, "POST", "/translator/translate", [{"src": s, "n_best": 2} for s in ["I love you", ""]])
    assert status == 200 and len(answer) == 2 and all(len(rank) == 2 for rank in answer)  # a list per rank, an entry per input
    assert answer[0][0]["pred_score"] >= answer[1][0]["pred_score"] and answer[0][0]["tgt"] != answer[1][0]["tgt"]
    assert [answer[0][1]["tgt"], answer[1][1]["tgt"]] == ["", ""]


@needs_extra
def test_long_input_is_truncated_and_reported(server: Server):
    n = LIMITS.max_src_len + 50
    got = translate(server.port, {"text": ["the dog sees the cat " * (n // 5)]})[0]
    assert got["truncated"] is True and got["src_length"] == n and got["output"]


@needs_extra
def test_the_page_is_served_from_the_package(server: Server):
    status, page, response = call(server.port, "GET", "/")
    assert status == 200 and response.getheader("content-type").startswith("text/html")
    for needle in ('<form id="form"', '<textarea id="text"', '<button id="translate"', 'fetch("translate"'):
        assert needle in page
    assert f'id="beam" type="number" min="1" max="{LIMITS.max_beam}"' in page and "{{" not in page  # filled by the server
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page), "the page loads nothing from elsewhere"
    assert "default-src 'none'" in response.getheader("content-security-policy")


@needs_extra
def test_the_page_names_the_model_and_offers_sentences_of_its_validation_data(server: Server, tiny_run: Path):
    """Issue 33 §6: the page says which model answers (what it maps, its steps and best validation score, its kind)
    and links two or three validation sources, each translating itself on the page (/?q=...)."""
    from seq2seq.model.checkpoint import Checkpoint

    _, page, _ = call(server.port, "GET", "/")
    ckpt = Checkpoint.read(tiny_run / "runs" / "tiny" / "best.pt")
    best = ckpt.scores[f"val_{ckpt.config.train.metric}"]
    assert f"en -&gt; de: runs/tiny/best.pt (checkpoint, {ckpt.step} steps, best val BLEU {best:.2f})" in page
    examples = list(dict.fromkeys(s for s, _ in toy_pairs("val", 120)))[:3]
    links = re.findall(r'<a class="example" href="/\?q=([^"]*)">([^<]*)</a>', page)
    assert [urllib.parse.unquote(q) for q, _ in links] == examples and [html.unescape(t) for _, t in links] == examples


@needs_extra
def test_an_ensemble_serves_as_its_model_and_says_it_is_one(tiny_run: Path, reference: list[dict[str, Any]]):
    s = Server(tiny_run, "--model", "runs/tiny", "--model", "runs/tiny")
    try:
        info = health(s.port)
        assert info["kind"] == "ensemble of 2 checkpoints" and info["model"] == "ensemble of 2: runs/tiny/best.pt + runs/tiny/best.pt"
        got = translate(s.port, {"text": SENTENCES, "beam": 1})
        assert [g["output"] for g in got] == [r["output"] for r in reference]
        assert [g["score"] for g in got] == pytest.approx([r["score"] for r in reference], abs=1e-4)
        _, page, _ = call(s.port, "GET", "/")
        assert "en -&gt; de, ensemble of 2 checkpoints: runs/tiny/best.pt (checkpoint" in page
    finally:
        assert s.stop() == 0, s.stderr()


def test_the_page_escapes_what_it_is_filled_with() -> None:
    from seq2seq.serve.app import page_html

    page = page_html(64, "<b>model</b>", ["a < b & c", "x"])
    assert "&lt;b&gt;model&lt;/b&gt;" in page and "<b>model" not in page
    assert '<a class="example" href="/?q=a%20%3C%20b%20%26%20c">a &lt; b &amp; c</a>' in page
    assert "Try:" not in page_html(64, "m", [])


# ---- errors over HTTP ------------------------------------------------------------------------------------------

LONG = "a " * (LIMITS.max_body_bytes * 3 // 5)  # a body over the limit, read and dropped before the 413
BAD_REQUESTS = [
    # (id, path, body: raw bytes or an object to encode, status, the error line holds)
    ("plain-request-error", "/translate", {"text": ["a", 3]}, 400, "text[1] must be a string, got a number"),
    ("onmt-request-error", "/translator/translate", [{"src": "a", "id": 7}], 404, "no model with id 7"),
    ("body-too-large", "/translate", {"text": [LONG]}, 413, f"over the limit of {LIMITS.max_body_bytes} bytes"),
    ("unknown-endpoint", "/translate/../admin", {"text": ["a"]}, 404, "no such endpoint"),
]


@needs_extra
@pytest.mark.parametrize("path,body,status,error", [case[1:] for case in BAD_REQUESTS], ids=[case[0] for case in BAD_REQUESTS])
def test_bad_request_gets_a_one_line_json_error(server: Server, path: str, body: Any, status: int, error: str):
    raw = body if isinstance(body, bytes) else json.dumps(body).encode("utf-8")
    got_status, answer, _ = call(server.port, "POST", path, raw=raw)
    assert got_status == status, answer
    assert answer["status"] == "error" and error in answer["error"], answer
    assert "\n" not in answer["error"] and "Traceback" not in answer["error"]


@needs_extra
def test_a_body_declared_far_over_the_limit_is_refused_unread(server: Server):
    declared = 9 * LIMITS.max_body_bytes  # over the size the server reads and drops: it answers at once
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
    try:
        conn.putrequest("POST", "/translate")
        conn.putheader("Content-Type", "application/json")
        conn.putheader("Content-Length", str(declared))
        conn.endheaders()  # and no body: a server that waited for it would time out
        response = conn.getresponse()
        answer = json.loads(response.read())
    finally:
        conn.close()
    assert response.status == 413 and answer["error"] == f"request body over the limit of {LIMITS.max_body_bytes} bytes ({declared} bytes)"


@needs_extra
def test_an_internal_failure_is_logged_and_answered_in_json(caplog: pytest.LogCaptureFixture):
    """The catch-all: an exception inside the application becomes a JSON 500 naming no internals, and a logged traceback."""
    import asyncio
    from types import SimpleNamespace

    from seq2seq.serve.app import RequestLog

    async def broken(scope: dict, receive: Any, send: Any) -> None:
        raise RuntimeError("secret internals")

    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    state = SimpleNamespace(requests=0, batcher=SimpleNamespace(open_requests=0))
    scope = {"type": "http", "method": "POST", "path": "/translate", "headers": []}
    log = logging.getLogger("seq2seq")
    log.addHandler(caplog.handler)  # directly: another test may have turned off propagation to the root logger
    try:
        with caplog.at_level("INFO", logger="seq2seq"):
            asyncio.run(RequestLog(broken, state)(scope, receive, send))
    finally:
        log.removeHandler(caplog.handler)
    assert sent[0]["type"] == "http.response.start" and sent[0]["status"] == 500
    answer = json.loads(b"".join(m.get("body", b"") for m in sent[1:]))
    assert answer == {"status": "error", "error": "internal error (RuntimeError); the server log has the details"}
    assert "Traceback" in caplog.text and "secret internals" in caplog.text
    assert "POST /translate 500 0 sentences" in caplog.text and state.requests == 1 and state.batcher.open_requests == 0


@needs_extra
def test_wrong_method_gets_405_json(server: Server):
    status, answer, response = call(server.port, "GET", "/translate")
    assert status == 405 and answer == {"status": "error", "error": "method not allowed: GET /translate"}
    assert response.getheader("allow") == "POST"


# ---- batching across requests ------------------------------------------------------------------------------------


def _concurrently(port: int, bodies: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """POST each body to /translate from its own thread, all released at once; the first translation of each."""
    results: list[Any] = [None] * len(bodies)
    barrier = threading.Barrier(len(bodies))

    def client(i: int) -> None:
        barrier.wait()
        results[i] = translate(port, bodies[i])[0]

    threads = [threading.Thread(target=client, args=(i,)) for i in range(len(bodies))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert all(r is not None for r in results)
    return results


@needs_extra
def test_concurrent_requests_share_batches_and_translate_as_alone(server: Server, reference: list[dict[str, Any]]):
    before = health(server.port)["batches_decoded"]
    together = _concurrently(server.port, [{"text": [s]} for s in SENTENCES])
    batches = health(server.port)["batches_decoded"] - before
    assert [g["output"] for g in together] == [r["output"] for r in reference]
    assert close([g["score"] for g in together], [r["score"] for r in reference])
    assert 1 <= batches < len(SENTENCES), batches
    alone = [translate(server.port, {"text": [s]})[0] for s in SENTENCES]  # sequential: one sentence per batch
    assert [g["output"] for g in together] == [a["output"] for a in alone]
    assert close(together, alone)


@needs_extra
def test_concurrent_requests_with_mixed_settings_translate_as_alone(server: Server):
    settings = [{"beam": 3}, {"beam": 1, "attention": True}, {"beam": 2, "nbest": 2}]
    bodies = [{"text": [s], **settings[i % 3]} for i, s in enumerate(SENTENCES[:12])]
    together = _concurrently(server.port, bodies)
    alone = [translate(server.port, body)[0] for body in bodies]
    assert [g["output"] for g in together] == [a["output"] for a in alone]
    assert close(together, alone)


# ---- stopping, errors of the command, the missing extra --------------------------------------------------------


@needs_extra
def test_sigterm_lets_the_request_in_flight_finish_then_exits_0(tiny_run: Path):
    port = free_port()
    s = Server(tiny_run, "--model", "runs/tiny", "--beam", "5", port=port)
    assert s.port == port
    long = " ".join(s_ for s_, _ in toy_pairs("val", 8))
    answer: dict[str, Any] = {}

    def client() -> None:
        answer["start"] = time.monotonic()
        answer["status"], answer["body"], _ = call(port, "POST", "/translate", {"text": [long] * LIMITS.max_sentences})

    thread = threading.Thread(target=client)
    thread.start()
    deadline = time.monotonic() + 30
    while health(port)["in_flight"] == 0:
        assert time.monotonic() < deadline and thread.is_alive(), "the request never reached the decoder"
        time.sleep(0.01)
    s.proc.send_signal(signal.SIGTERM)
    signalled = time.monotonic() - answer["start"]
    thread.join(60)
    assert s.proc.wait(60) == 0, s.stderr()
    assert answer["status"] == 200 and len(answer["body"]["translations"]) == LIMITS.max_sentences
    served = [line for line in s.lines if line.startswith(f"POST /translate 200 {LIMITS.max_sentences} sentences")]
    assert len(served) == 1, s.stderr()
    took = float(served[0].split()[-2]) / 1000
    assert took > signalled, (took, signalled)  # the request ended after the signal arrived
    assert "stopped by SIGTERM" in s.lines[-1], s.stderr()


def _one_line_error(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    return lines[0]


@pytest.mark.parametrize("blocked", ["starlette", "uvicorn"])
def test_without_the_extra_serve_says_how_to_install_it(tiny_run: Path, blocked: str):
    code = (
        f"import sys; sys.modules[{blocked!r}] = None; sys.argv = ['seq2seq', 'serve', '--model', 'runs/tiny']; "
        "from seq2seq.cli.app import main; main()"
    )
    env = {**os.environ, **ONE_THREAD, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-c", code], cwd=tiny_run, env=env, capture_output=True, text=True, timeout=60)
    line = _one_line_error(proc)
    assert INSTALL_HINT in line and blocked in line, line


@needs_extra
def test_busy_port_and_bad_options_fail_in_one_line(tiny_run: Path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = str(busy.getsockname()[1])
        line = _one_line_error(run_cli("serve", "--model", "runs/tiny", "--port", port, cwd=tiny_run, timeout=60))
    assert f"cannot listen on 127.0.0.1 port {port}" in line and "--port" in line
    assert "no such model" in _one_line_error(run_cli("serve", "--model", "runs/missing", cwd=tiny_run, timeout=60))
    assert "--quantize" in _one_line_error(run_cli("serve", "--model", "runs/tiny", "--quantize", "int4", cwd=tiny_run, timeout=60))


@needs_extra
def test_quantize_int8_is_passed_to_the_translator(tiny_run: Path):
    s = Server(tiny_run, "--model", "runs/tiny", "--quantize", "int8")
    try:
        assert health(s.port)["quantize"] == "int8"
        assert translate(s.port, {"text": ["I love you"]})[0]["output"]
    finally:
        assert s.stop() == 0, s.stderr()
    assert s.lines[-1].endswith("after 2 requests (1 sentence in 1 batch)"), s.stderr()  # singular where it is one


@needs_extra
def test_every_request_was_logged_and_none_failed_inside(server: Server):
    health(server.port)
    logged = [line for line in server.lines if re.fullmatch(r"(GET|POST|DELETE) \S+ \d{3} (1 sentence|\d+ sentences) \d+\.\d ms", line)]
    assert len(logged) >= len(BAD_REQUESTS) + 10, server.stderr()
    assert any(re.match(r"POST /translate 200 1 sentence \d", line) for line in logged), server.stderr()  # not "1 sentences"
    assert "Traceback" not in server.stderr() and not any(" 500 " in line for line in logged), server.stderr()
