"""Batched decoding, greedy and beam, over any Backend (decode/backend): the torch model, an export's graphs or an
ensemble of either. numpy only, no torch: the one search of the package.

`decode` is the one entry: every setting (beam size, batch size, length limits, length penalty, minimum length)
comes from a DecodeConfig; a caller that overrides one (the CLI's --beam) passes `dataclasses.replace(decode_cfg,
beam_size=...)`. Finished sentences leave the active batch, so a long sentence does not slow the rest. Both searches
treat each sentence on its own (no score, length or stopping rule is shared across the batch), so a sentence
decodes to the same output alone or inside any batch.

A hypothesis's score is one thing everywhere: the raw sum of its token log-probabilities, <eos> included when
produced (OpenNMT's pred_score), greedy or beam. The beam ranks hypotheses by that sum divided by the GNMT length
penalty, and reports the sum.
"""

from __future__ import annotations

import functools
import sys
from typing import Callable, NamedTuple, Sequence, TypeVar

import numpy as np
from tqdm import tqdm

from seq2seq.config import DecodeConfig
from seq2seq.data.vocab import BOS, EOS, PAD
from seq2seq.decode.backend import Backend
from seq2seq.errors import ConfigError


class Hypothesis(NamedTuple):
    ids: list[int]  # target ids, without <bos> / <eos>
    score: float  # sum of the token log-probabilities, <eos> included when produced (no length penalty)
    attention: np.ndarray | None  # (steps, S) over the real source, when asked for: a row per id, + the <eos> step when produced


NOT_DECODED = -1  # greedy's filler for the steps after a sentence stopped (no token id is negative)


def pad(sources: Sequence[Sequence[int]]) -> tuple[np.ndarray, np.ndarray]:
    """Id lists -> src (B, S) int64 padded with <pad>, src_lengths (B,) int64."""
    lengths = np.array([len(s) for s in sources], dtype=np.int64)
    src = np.full((len(sources), int(lengths.max())), PAD, dtype=np.int64)
    for i, ids in enumerate(sources):
        src[i, : len(ids)] = ids
    return src, lengths


def max_output_lengths(src_lengths: np.ndarray, a: float, b: int) -> np.ndarray:
    """Maximum number of generated tokens (<eos> included) per sentence: floor(a * |source| + b) in float32, at least 1
    (|source| without its <eos>)."""
    value = np.float32(a) * (src_lengths - 1).astype(np.float32) + np.float32(b)
    return np.maximum(np.floor(value).astype(np.int64), 1)


def length_penalty(length: int, alpha: float) -> float:
    """The GNMT length penalty ((5 + length) / 6) ** alpha; alpha = 0 ranks by the plain sum of log-probabilities."""
    return ((5.0 + length) / 6.0) ** alpha


def nbest_beam(nbest: int, asked: int | None, default: int, names: tuple[str, str] = ("--beam", "--nbest")) -> int:
    """The beam an n-best list is searched with: the beam `asked` for, else `default` widened to `nbest`. The one
    place of the rule "n best need a beam of at least n"; `names` name the beam and the n-best in the error."""
    if asked is None:
        return max(default, nbest)
    if nbest > asked:
        raise ConfigError(f"{names[1]} {nbest} needs {names[0]} {nbest} or more, got {asked}")
    return asked


Result = TypeVar("Result")


def in_decoding(search: Callable[..., Result]) -> Callable[..., Result]:
    """Run `search(backend, ...)` inside `backend.decoding()`: one entry per search, not one per step."""

    @functools.wraps(search)
    def run(backend: Backend, *args: object, **kwargs: object) -> Result:
        with backend.decoding():
            return search(backend, *args, **kwargs)

    return run


@in_decoding
def greedy_search(
    backend: Backend, src: np.ndarray, src_lengths: np.ndarray, d: DecodeConfig, return_attention: bool = False
) -> list[Hypothesis]:
    """Greedy decoding of a padded batch src (B, S), src_lengths (B,). Returns one Hypothesis per sentence.

    At most d.max_len_a * source length + d.max_len_b tokens; <eos> is forbidden before d.min_len tokens (unless
    the maximum length ends the sentence first). Its beam_size and length_penalty are not read.
    """
    batch_size = src.shape[0]
    memory, state = backend.encode(src, src_lengths)
    max_lens = max_output_lengths(src_lengths, d.max_len_a, d.max_len_b)  # (B,)
    steps = int(max_lens.max())
    # NOT_DECODED marks the steps a sentence did not take (it stopped earlier), so that its length is its own
    # and not the batch's: an <eos> filler here would read as an <eos> the sentence produced.
    tokens = np.full((batch_size, steps), NOT_DECODED, dtype=np.int64)  # (B, steps)
    scores = np.zeros(batch_size, dtype=np.float32)
    attention = np.zeros((batch_size, steps, src.shape[1]), dtype=np.float32) if return_attention else None
    active, limits = np.arange(batch_size), max_lens  # rows of the original batch still decoding, and their limits
    prev = np.full(batch_size, BOS, dtype=np.int64)
    for t in range(steps):
        step = backend.step(prev, memory, state, 1, t < d.min_len, None, 1)  # (A, 1) each
        best = step.index[:, 0]  # (A,) the tokens (a group is one row)
        tokens[active, t] = best
        scores[active] += step.scores[:, 0]
        if attention is not None:
            attention[active, t] = step.attention
        done = (best == EOS) | (limits <= t + 1)
        finished = int(np.count_nonzero(done))  # one reduction a step: a step of a small model is ~0.1 ms
        if finished == len(done):
            break
        state = step.state
        if finished:
            keep = np.flatnonzero(~done)
            active, limits, best = active[keep], limits[keep], best[keep]
            memory, state = backend.take(memory, keep), backend.take_state(state, keep)
        prev = best
    out = []
    for i, row in enumerate(tokens.tolist()):
        taken = row.index(NOT_DECODED) if NOT_DECODED in row else len(row)
        n = taken - 1 if taken and row[taken - 1] == EOS else taken  # tokens without the <eos>
        att = None if attention is None else attention[i, :taken, : int(src_lengths[i])]  # a row per step taken
        out.append(Hypothesis(row[:n], float(scores[i]), att))
    return out


@in_decoding
def beam_search(
    backend: Backend, src: np.ndarray, src_lengths: np.ndarray, d: DecodeConfig, nbest: int = 1, return_attention: bool = False
) -> list[list[Hypothesis]]:
    """Beam search on a padded batch src (B, S), src_lengths (B,): the `nbest` best hypotheses per sentence, best first.

    Each step, every active sentence extends its k beams (k = d.beam_size) to its 2k best continuations by summed
    log-probability (Backend.step chooses them). An <eos> among the first k
    ends a hypothesis, ranked by sum / length_penalty(len, alpha) (alpha = d.length_penalty, len counting the
    <eos>) and scored by the sum; the k best continuations without <eos> carry on. A sentence is done once it holds
    k ended hypotheses, or at its maximum length (max_len_a * source length + max_len_b tokens), where its k best
    continuations end as they are; then it leaves the batch. <eos> is forbidden before d.min_len tokens. With k = 1
    this is greedy search, token for token.
    """
    vocab_size = backend.vocab_size
    k = min(d.beam_size, vocab_size - 1)  # at least k continuations without <eos> must exist
    assert 1 <= nbest <= d.beam_size, (nbest, d.beam_size)
    batch_size, src_len = src.shape
    memory, state = backend.encode(src, src_lengths)
    max_lens = max_output_lengths(src_lengths, d.max_len_a, d.max_len_b).tolist()
    src_len_list = src_lengths.tolist()
    finished: list[list[tuple[float, Hypothesis]]] = [[] for _ in range(batch_size)]  # (rank, hypothesis)
    active = list(range(batch_size))  # the original batch index of each active sentence (A of them)
    width = 1  # live beams per sentence: 1 before the first step, then k
    prev = np.full(batch_size, BOS, dtype=np.int64)  # (A * width,) each beam's last token
    scores = np.zeros(batch_size, dtype=np.float32)  # (A * width,) summed log-probabilities
    history = np.zeros((batch_size, 0), dtype=np.int64)  # (A * width, t) the tokens so far
    att_history = np.zeros((batch_size, 0, src_len), dtype=np.float32) if return_attention else None  # (A * width, t, S)
    t = 0
    while True:
        n_active = len(active)
        step = backend.step(prev, memory, state, min(2 * k, width * vocab_size), t < d.min_len, scores, width)
        top_scores, top_index = step.scores, step.index  # (A, C), best first
        top_rows = top_index // vocab_size + np.arange(n_active)[:, None] * width  # (A, C) the beam rows they extend
        top_tokens = top_index % vocab_size  # (A, C)

        rows_l, tokens_l, scores_l = top_rows[:, :k].tolist(), top_tokens[:, :k].tolist(), top_scores[:, :k].tolist()
        keep: list[int] = []
        for a, sentence in enumerate(active):
            last = max_lens[sentence] <= t + 1
            for j in range(k):
                if (last or tokens_l[a][j] == EOS) and scores_l[a][j] != float("-inf"):
                    row, token = rows_l[a][j], tokens_l[a][j]
                    ids = history[row].tolist() + ([] if token == EOS else [token])
                    att = None
                    if att_history is not None:
                        att = np.concatenate([att_history[row], step.attention[row][None]], axis=0)[:, : src_len_list[sentence]]
                    rank = scores_l[a][j] / length_penalty(t + 1, d.length_penalty)
                    finished[sentence].append((rank, Hypothesis(ids, scores_l[a][j], att)))
            if not last and len(finished[sentence]) < k:
                keep.append(a)
        if not keep:
            break
        # At most `width` <= k candidates are <eos>, so each sentence has k others among its 2k: they carry on.
        is_eos = top_tokens == EOS
        carry = ~is_eos & (np.cumsum(~is_eos, axis=1) <= k)  # (A, C), k True per row
        keep_a = np.array(keep)
        rows = top_rows[carry].reshape(n_active, k)[keep_a].reshape(-1)  # (A' * k,) beams extended by the survivors
        prev = top_tokens[carry].reshape(n_active, k)[keep_a].reshape(-1)
        scores = top_scores[carry].reshape(n_active, k)[keep_a].reshape(-1)
        history = np.concatenate([history[rows], prev[:, None]], axis=1)  # (A' * k, t + 1)
        if att_history is not None:
            att_history = np.concatenate([att_history[rows], step.attention[rows][:, None]], axis=1)
        state = backend.take_state(step.state, rows)
        if len(keep) < n_active or width != k:
            # every beam of a sentence shares its encoder rows: re-select them only when sentences leave
            memory = backend.take(memory, np.repeat(keep_a * width, k))
        active = [active[a] for a in keep]
        width = k
        t += 1
    return [[h for _, h in sorted(hyps, key=lambda x: -x[0])[:nbest]] for hyps in finished]


def decode(
    backend: Backend, sources: Sequence[Sequence[int]], d: DecodeConfig, *, nbest: int = 1, return_attention: bool = False,
    progress: bool = False,
) -> list[list[Hypothesis]]:
    """The `nbest` best hypotheses of each source id list (each ending in <eos>), best first, in input order.

    Sources are sorted by length into batches of d.batch_size (the order is restored after); d.beam_size 1 is
    greedy search (one hypothesis each), else beam search, which needs beam_size >= nbest. `return_attention`: each
    hypothesis carries its (len(ids) [+ 1], S) attention. `progress`: a progress bar on stderr.
    """
    nbest_beam(nbest, d.beam_size, d.beam_size, ("decode.beam_size", "nbest"))
    order = sorted(range(len(sources)), key=lambda i: len(sources[i]))
    results: list[list[Hypothesis]] = [[] for _ in sources]
    # no bar object at all without a bar: a disabled tqdm costs ~10 us, which one sentence decoded alone notices
    bar = tqdm(total=len(order), desc="decoding", unit=" sent", leave=False, file=sys.stderr, dynamic_ncols=True) if progress else None
    for start in range(0, len(order), d.batch_size):
        chunk = order[start : start + d.batch_size]
        src, src_lengths = pad([sources[i] for i in chunk])  # (B, S), (B,)
        if d.beam_size == 1:
            found = [[h] for h in greedy_search(backend, src, src_lengths, d, return_attention)]
        else:
            found = beam_search(backend, src, src_lengths, d, nbest, return_attention)
        for i, hyps in zip(chunk, found):
            results[i] = hyps
        if bar is not None:
            bar.update(len(chunk))
    if bar is not None:
        bar.close()
    return results
