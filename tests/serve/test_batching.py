"""The cross-request batcher without HTTP: client threads submit to a Batcher running on an event loop of its
own, and a stand-in decode function records every batch it is given."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from typing import Iterator

import pytest

from seq2seq.data.results import Result
from seq2seq.serve.batching import Batcher, Decoded, Settings

GREEDY = Settings(beam=1, nbest=1, attention=False)


def translated(text: str, settings: Settings) -> str:
    """What the stand-in decoder makes of `text`: a function of the text and the settings, nothing shared."""
    return f"{text[::-1]}@beam{settings.beam}"


class RecordingDecode:
    """Decodes like a translator would be called (a batch of texts, one settings) and records each batch."""

    def __init__(self, fail_on: str | None = None) -> None:
        self.fail_on = fail_on
        self.calls: list[tuple[list[str], Settings]] = []

    def __call__(self, texts: list[str], settings: Settings) -> list[Decoded]:
        self.calls.append((list(texts), settings))
        if self.fail_on is not None and self.fail_on in texts:
            raise ValueError(f"cannot decode {self.fail_on!r}")
        return [Decoded(Result(t, translated(t, settings), -1.0, [], [], None), [(-1.0, translated(t, settings))], len(t)) for t in texts]


class Running:
    """A Batcher on an event loop in a background thread; `request` is called from any thread, as a client."""

    def __init__(self, batcher: Batcher, loop: asyncio.AbstractEventLoop) -> None:
        self.batcher, self.loop = batcher, loop

    def open(self, n: int) -> None:
        """`n` requests are being received, as the server's request log counts them before their bodies arrive."""
        self.loop.call_soon_threadsafe(setattr, self.batcher, "open_requests", n)

    def request(self, texts: list[str], settings: Settings, timeout: float = 10) -> list[Decoded]:
        async def one() -> list[Decoded]:
            try:
                return await self.batcher.submit(texts, settings)
            finally:  # answered: no longer open
                self.batcher.open_requests = max(0, self.batcher.open_requests - 1)

        return asyncio.run_coroutine_threadsafe(one(), self.loop).result(timeout)


@contextlib.contextmanager
def running(decode: RecordingDecode, max_batch: int = 64, wait_s: float = 5.0) -> Iterator[Running]:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    batcher = Batcher(decode, max_batch, wait_s)

    async def start() -> None:
        batcher.start()

    asyncio.run_coroutine_threadsafe(start(), loop).result(5)
    try:
        yield Running(batcher, loop)
    finally:
        asyncio.run_coroutine_threadsafe(batcher.stop(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()


def concurrently(run: Running, requests: list[tuple[list[str], Settings]]) -> list[list[Decoded] | Exception]:
    """Each request from its own thread, all released at once; the answer or the exception of each."""
    answers: list[list[Decoded] | Exception | None] = [None] * len(requests)
    barrier = threading.Barrier(len(requests))

    def client(i: int) -> None:
        barrier.wait()
        try:
            answers[i] = run.request(*requests[i])
        except Exception as e:  # noqa: BLE001 (the test looks at it)
            answers[i] = e

    threads = [threading.Thread(target=client, args=(i,)) for i in range(len(requests))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert all(a is not None for a in answers), "a client got no answer"
    return answers  # type: ignore[return-value]


def assert_own_results(requests: list[tuple[list[str], Settings]], answers: list) -> None:
    """Every caller got one Decoded per text it sent, in its order, decoded with its settings."""
    for (texts, settings), answer in zip(requests, answers):
        assert not isinstance(answer, Exception), answer
        assert [d.result.input for d in answer] == texts
        assert [d.result.output for d in answer] == [translated(t, settings) for t in texts]


def request_of(text: str) -> int:
    return int(text.split("s")[0][1:])  # "r7s2" -> 7


def sizes_requests(sizes: list[int], settings: list[Settings] | None = None) -> list[tuple[list[str], Settings]]:
    """Request i holds sizes[i] texts named r{i}s{j}, with settings[i] (greedy when not given)."""
    return [([f"r{i}s{j}" for j in range(n)], settings[i] if settings else GREEDY) for i, n in enumerate(sizes)]


def test_open_requests_are_decoded_together_and_each_gets_its_own_results():
    decode = RecordingDecode()
    requests = sizes_requests([1 + i % 3 for i in range(12)])
    with running(decode, wait_s=5.0) as run:
        run.open(len(requests))
        start = time.monotonic()
        answers = concurrently(run, requests)
        took = time.monotonic() - start
        batches, sentences = run.batcher.batches, run.batcher.sentences
    assert_own_results(requests, answers)
    assert len(decode.calls) == 1 < len(requests), [texts for texts, _ in decode.calls]
    (texts, settings), = decode.calls
    assert sorted(texts) == sorted(t for r, _ in requests for t in r) and settings == GREEDY
    for sent, _ in requests:  # each request's texts sit together in the batch, in its order
        start = texts.index(sent[0])
        assert texts[start : start + len(sent)] == sent, texts
    assert (batches, sentences) == (1, len(texts))
    assert took < 4.0, took  # it stopped waiting once every open request had arrived, not after wait_s


class GatedDecode(RecordingDecode):
    """Its first call holds the worker thread until `release` is set, as a long decode would."""

    def __init__(self) -> None:
        super().__init__()
        self.started, self.release = threading.Event(), threading.Event()

    def __call__(self, texts: list[str], settings: Settings) -> list[Decoded]:
        if not self.calls:
            self.started.set()
            assert self.release.wait(10), "the test never released the first decode"
        return super().__call__(texts, settings)


def test_requests_arriving_during_a_decode_form_the_next_batch():
    decode = GatedDecode()  # nothing counts open requests: the first one goes alone
    requests = sizes_requests([1] * 10)
    with running(decode) as run:
        answers: list = [None] * len(requests)

        def client(i: int) -> None:
            answers[i] = run.request(*requests[i])

        threads = [threading.Thread(target=client, args=(i,)) for i in range(len(requests))]
        threads[0].start()
        assert decode.started.wait(5), "the first request was never decoded"
        for t in threads[1:]:  # these arrive while the first is being decoded
            t.start()
        deadline = time.monotonic() + 5
        while run.batcher.in_flight < len(requests) and time.monotonic() < deadline:
            time.sleep(0.005)
        assert run.batcher.in_flight == len(requests), run.batcher.in_flight
        decode.release.set()
        for t in threads:
            t.join(10)
    assert_own_results(requests, answers)
    calls = [texts for texts, _ in decode.calls]
    assert len(calls) == 2 and calls[0] == ["r0s0"], calls  # the nine that arrived meanwhile: one batch
    assert sorted(calls[1]) == sorted(t for r, _ in requests[1:] for t in r), calls


def test_a_lone_request_waits_for_nothing():
    decode = RecordingDecode()
    with running(decode, wait_s=30.0) as run:
        start = time.monotonic()
        answer = run.request(["r0s0"], GREEDY)
        took = time.monotonic() - start
    assert [d.result.output for d in answer] == [translated("r0s0", GREEDY)]
    assert took < 2.0, took  # not the 30 s a batch may wait for others


def test_different_settings_are_never_decoded_in_one_batch():
    kinds = [Settings(3, 1, False), Settings(1, 1, True), Settings(2, 2, False)]
    requests = sizes_requests([1 + i % 2 for i in range(12)], [kinds[i % 3] for i in range(12)])
    decode = RecordingDecode()
    with running(decode) as run:
        run.open(len(requests))
        answers = concurrently(run, requests)
    assert_own_results(requests, answers)
    assert len(decode.calls) == len(kinds), decode.calls  # one batch per settings: all were waiting
    assert {settings for _, settings in decode.calls} == set(kinds)
    for texts, settings in decode.calls:
        assert all(requests[request_of(t)][1] == settings for t in texts), (texts, settings)


def test_no_batch_exceeds_max_batch_unless_one_request_does():
    sizes = [3, 2, 6, 1, 2, 1]
    requests = sizes_requests(sizes)
    decode = RecordingDecode()
    with running(decode, max_batch=4) as run:
        run.open(len(requests))
        answers = concurrently(run, requests)
        batches = run.batcher.batches
    assert_own_results(requests, answers)
    for texts, _ in decode.calls:
        held = {request_of(t) for t in texts}
        assert len(texts) <= 4 or len(held) == 1, texts
    assert [texts for texts, _ in decode.calls if request_of(texts[0]) == 2] == [requests[2][0]]  # the 6 go alone
    assert batches == sum(-(-len(texts) // 4) for texts, _ in decode.calls)


def test_an_exception_in_decoding_reaches_its_caller_and_the_batcher_goes_on():
    decode = RecordingDecode(fail_on="r0s1")
    with running(decode) as run:
        with pytest.raises(ValueError, match="cannot decode 'r0s1'"):
            run.request(["r0s0", "r0s1"], GREEDY)
        answer = run.request(["r1s0"], GREEDY)  # the next batch decodes as usual
        counted = run.batcher.batches, run.batcher.sentences
    assert [d.result.output for d in answer] == [translated("r1s0", GREEDY)]
    assert len(decode.calls) == 2 and counted == (1, 1)  # the failed batch is not counted as decoded


def test_decode_texts_tokenizes_each_sentence_once_and_logs_no_line_numbers_of_a_merged_batch():
    """The server reports truncation (src_length) and mostly unknown tokens (Result.warning) in each answer; the
    translator's log lines, which number the lines of the merged batch, are not asked for."""
    from seq2seq.serve.batching import decode_texts
    from tests.decode.test_results import Recorded, counting_translator

    t, counter = counting_translator(max_src_len=3)
    texts = ["a b c der die", "", "x", "zzz qqq"]
    for settings in (Settings(beam=1, nbest=1, attention=True), Settings(beam=2, nbest=2, attention=False)):
        counter.calls = 0
        with Recorded() as logged:
            decoded = decode_texts(t, texts, settings, batch_size=2)
        assert counter.calls == len(texts)
        assert [d.src_length for d in decoded] == [5, 0, 1, 2]
        assert logged.messages == []  # neither "truncated" nor "unknown to the model's source vocabulary"
        if settings.nbest == 1:
            assert [d.result.warning is not None for d in decoded] == [False, False, False, True]
