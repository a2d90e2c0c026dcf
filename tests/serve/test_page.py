"""The page of `seq2seq serve` in a real browser: headless Chromium loads /?q=TEXT, which fills the text box and
clicks Translate; the DOM it ends with must show the model's translation and a heatmap of shaded cells."""

from __future__ import annotations

import os
import subprocess
import tempfile
import urllib.parse
from html.parser import HTMLParser
from pathlib import Path

import pytest

from tests.serve.test_app import HAVE_EXTRA, Server, translate

CHROMIUM = Path("/usr/bin/chromium")
# .ci/run installs Chromium and sets this, so that in CI a missing browser fails the test instead of skipping it.
REQUIRED = os.environ.get("SEQ2SEQ_REQUIRE_BROWSER") == "1"
if REQUIRED and not (CHROMIUM.exists() and HAVE_EXTRA):
    raise RuntimeError(f"SEQ2SEQ_REQUIRE_BROWSER=1 but {'the serve extra' if CHROMIUM.exists() else CHROMIUM} is missing")
pytestmark = [
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Chromium at /usr/bin/chromium (Debian: apt-get install chromium)"),
    pytest.mark.skipif(not HAVE_EXTRA, reason="needs the serve extra: pip install -e '.[serve]'"),
]
FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync",
    "--virtual-time-budget=15000",  # let the page's fetch and drawing finish before the DOM is dumped
]


class PageDom(HTMLParser):
    """What the test reads from the dumped DOM: the texts of the outputs, each heatmap's cells, the body's state."""

    def __init__(self) -> None:
        super().__init__()
        self.outputs: dict[str, str] = {}
        self.cells: dict[str, list[float]] = {}
        self.shaded: dict[str, int] = {}
        self.state = ""
        self.status = ""
        self._in: str | None = None  # the id of the output or status element being read
        self._table: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "body":
            self.state = a.get("data-state") or ""
        elif tag == "p" and a.get("class") == "output":
            self._in = a.get("id") or ""
            self.outputs[self._in] = ""
        elif tag == "span" and a.get("id") == "status":
            self._in = "status"
        elif tag == "table" and a.get("class") == "heatmap":
            self._table = a.get("id") or ""
            self.cells[self._table], self.shaded[self._table] = [], 0
        elif tag == "td" and a.get("class") == "cell" and self._table is not None:
            self.cells[self._table].append(float(a.get("data-weight") or "nan"))
            self.shaded[self._table] += "background" in (a.get("style") or "")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("p", "span"):
            self._in = None
        elif tag == "table":
            self._table = None

    def handle_data(self, data: str) -> None:
        if self._in == "status":
            self.status += data
        elif self._in is not None:
            self.outputs[self._in] += data


def chromium_dom(url: str) -> PageDom:
    with tempfile.TemporaryDirectory(prefix="seq2seq-chromium-") as profile:
        proc = subprocess.run(
            [str(CHROMIUM), *FLAGS, f"--user-data-dir={profile}", "--dump-dom", url], capture_output=True, text=True, timeout=90
        )
    assert proc.returncode == 0, proc.stderr[-2000:]
    dom = PageDom()
    dom.feed(proc.stdout)
    return dom


@pytest.fixture(scope="module")
def server(tiny_run: Path):
    s = Server(tiny_run, "--model", "runs/tiny")
    yield s
    assert s.stop() == 0, s.stderr()


def test_page_translates_and_draws_the_attention(server: Server, tiny_run: Path):
    from seq2seq.decode.translator import Translator

    lines = ["I love you", "The girl sells them."]
    expected = Translator.load(tiny_run / "runs" / "tiny").translate(lines)
    dom = chromium_dom(f"http://127.0.0.1:{server.port}/?q=" + urllib.parse.quote("\n".join(lines)))
    assert dom.state == "done", (dom.state, dom.status)
    assert [dom.outputs.get(f"output-{i}") for i in range(len(lines))] == expected
    api = translate(server.port, {"text": lines, "attention": True})
    for i, t in enumerate(api):
        cells = dom.cells[f"heatmap-{i}"]
        assert len(cells) == len(t["attention_rows"]) * len(t["src_tokens"]) > 0
        assert dom.shaded[f"heatmap-{i}"] == len(cells)  # every cell carries its shade
        assert cells == [w for row in t["attention"] for w in row]
    assert any("POST /translate 200 2 sentences" in line for line in server.lines), server.stderr()
