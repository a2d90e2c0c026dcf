"""Decoding the sentences of concurrent requests together: the cross-request batcher (no HTTP here).

The sentences of concurrent requests are gathered, for at most `wait_s` after the oldest arrived and at most
`max_batch` sentences of the same decoding settings, into one decoding batch. Batches are decoded one at a
time on a worker thread, so the event loop never waits for the model. The searches treat each sentence on
its own, so a sentence translates to the same output and score alone or inside any batch.
"""

from __future__ import annotations

import asyncio
import contextlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, NamedTuple

from seq2seq.data.results import Result
from seq2seq.decode.results import make_results

if TYPE_CHECKING:
    from seq2seq.decode.translator import Translator


DEFAULT_WAIT_MS = 5.0  # how long a request may wait for others to share its decoding batch


class Settings(NamedTuple):
    """How a sentence is decoded; only sentences with equal settings share a batch."""

    beam: int
    nbest: int
    attention: bool


class Decoded(NamedTuple):
    result: Result  # the best translation; its tokens are empty when nbest > 1; attention when asked for
    nbest: list[tuple[float, str]]  # the n best (score, output), best first ([] for an empty input with nbest > 1)
    src_length: int  # source tokens before truncation to max_src_len, <eos> not counted


DecodeFn = Callable[[list[str], Settings], list[Decoded]]


def decode_texts(t: Translator, texts: list[str], settings: Settings, batch_size: int) -> list[Decoded]:
    """Translate `texts` with `settings` in one call of the translator (any model: a checkpoint, an export, an
    ensemble), which batches them by `batch_size`."""
    # Each answer says whether its sentence was truncated (Decoded.src_length) and whether most of its tokens are
    # unknown (Result.warning): no log line naming lines of a merged batch, which would mean nothing to any client.
    sources = t.sources(texts, warn_truncated=False)
    if settings.nbest == 1:
        hyps = t.hypotheses(sources, batch_size, return_attention=settings.attention, beam_size=settings.beam)
        results = make_results(t, sources, hyps, warn_unknown=False)
        return [Decoded(r, [(r.score, r.output)], s.length) for r, s in zip(results, sources)]
    out = []
    for source, block in zip(sources, t.nbest(sources, settings.nbest, settings.beam, batch_size)):
        score, output = block[0] if block else (0.0, "")
        out.append(Decoded(Result(source.text, output, score, [], [], None), block, source.length))
    return out


@dataclass
class _Job:
    """One request's sentences, waiting for the batch that decodes them."""

    texts: list[str]
    settings: Settings
    future: asyncio.Future[list[Decoded]]
    arrived: float  # event-loop time


class Batcher:
    """Gathers the sentences of concurrent requests into decoding batches, decoded one at a time on a worker thread.

    A batch takes the oldest waiting job's settings and the jobs with those settings, oldest first, up to
    `max_batch` sentences (a larger request goes alone). It waits for more at most `wait_s` after the oldest
    job arrived, and only while other requests are open (being read): a lone client waits for nothing.
    `decode(texts, settings)` runs on the worker thread and returns one Decoded per text, in order.
    """

    def __init__(self, decode: DecodeFn, max_batch: int, wait_s: float) -> None:
        self.decode, self.max_batch, self.wait_s = decode, max_batch, wait_s
        self.batches = 0  # decoding batches run; a request of more than max_batch sentences counts as several
        self.sentences = 0
        self.in_flight = 0  # requests waiting or being decoded
        self.open_requests = 0  # requests being received, counted by the caller (the server's request log)
        self._pending: list[_Job] = []
        self._arrived: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="seq2seq-decode")

    def start(self) -> None:
        """Start gathering on the running event loop (the one `submit` is awaited on)."""
        self._arrived = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        """Stop gathering, cancel the jobs still waiting and wait for the worker thread to finish its batch."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for job in self._pending:
            job.future.cancel()
        self._executor.shutdown(wait=True)

    async def submit(self, texts: list[str], settings: Settings) -> list[Decoded]:
        """The decoded `texts`, in order, once the batch holding them has run; decode's exception if it raised."""
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
