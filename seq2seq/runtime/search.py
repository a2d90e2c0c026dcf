"""Greedy and beam search in numpy over an export's graphs, with the rules of `seq2seq.decode.search`, line for line.

Same maximum length (a * source length + b, in float32 as torch computes it), same <eos> ban before `min_len`,
same beam bookkeeping (2k candidates, k carry on, <eos> among the first k ends a hypothesis, GNMT length
penalty), scores summed in float32 as there. So in fp32 an export decodes to the same tokens as the checkpoint
it came from, with scores equal to rounding (tests/runtime/test_search.py). Each sentence is decoded on its own:
alone or in any batch it gets the same output.
"""

from __future__ import annotations

import sys
from typing import NamedTuple, Protocol, Sequence

import numpy as np
from tqdm import tqdm

from seq2seq.config import DecodeConfig
from seq2seq.data.vocab import BOS, EOS, PAD
from seq2seq.errors import ConfigError


class Encoded(NamedTuple):
    states: np.ndarray  # (B, S, D)
    keys: np.ndarray  # (B, S, A)
    src_pad_mask: np.ndarray  # (B, S) True on padding
    hidden: np.ndarray  # (L, B, H)

    def select(self, index: np.ndarray) -> "Encoded":
        """Keep rows `index` of the batch (the decoder state's batch dimension is 1)."""
        return Encoded(self.states[index], self.keys[index], self.src_pad_mask[index], self.hidden[:, index])


class Graphs(Protocol):
    vocab_size: int

    def encode(self, src: np.ndarray, src_lengths: np.ndarray) -> Encoded: ...

    def step(self, prev: np.ndarray, enc: Encoded, hidden: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """prev (B,) -> log_probs (B, V), hidden (L, B, H), attention (B, S)."""
        ...


class Hypothesis(NamedTuple):
    ids: list[int]  # target ids, without <bos> / <eos>
    score: float  # as decode/search.Hypothesis.score
    attention: np.ndarray | None  # (len(ids) [+ 1], S) over the real source, when asked for


def pad(sources: Sequence[Sequence[int]]) -> tuple[np.ndarray, np.ndarray]:
    """Id lists -> src (B, S) int64 padded with <pad>, src_lengths (B,) int64."""
    lengths = np.array([len(s) for s in sources], dtype=np.int64)
    src = np.full((len(sources), int(lengths.max())), PAD, dtype=np.int64)
    for i, ids in enumerate(sources):
        src[i, : len(ids)] = ids
    return src, lengths


NOT_DECODED = -1  # greedy's filler for the steps after a sentence stopped (no token id is negative)


def max_output_lengths(src_lengths: np.ndarray, a: float, b: int) -> np.ndarray:
    """decode/search.max_output_lengths, in float32 as torch computes it: floor(a * (|source| - 1) + b), at least 1."""
    value = np.float32(a) * (src_lengths - 1).astype(np.float32) + np.float32(b)
    return np.maximum(np.floor(value).astype(np.int64), 1)


def greedy_search(
    graphs: Graphs, src: np.ndarray, src_lengths: np.ndarray, d: DecodeConfig, return_attention: bool = False
) -> list[Hypothesis]:
    """Greedy decoding of a padded batch src (B, S), src_lengths (B,) (decode/search.greedy_search)."""
    batch_size = src.shape[0]
    enc = graphs.encode(src, src_lengths)
    max_lens = max_output_lengths(src_lengths, d.max_len_a, d.max_len_b)  # (B,)
    steps = int(max_lens.max())
    tokens = np.full((batch_size, steps), NOT_DECODED, dtype=np.int64)  # (B, steps); the steps a sentence did not take
    scores = np.zeros(batch_size, dtype=np.float32)
    attention = np.zeros((batch_size, steps, src.shape[1]), dtype=np.float32) if return_attention else None
    active = np.arange(batch_size)
    prev = np.full(batch_size, BOS, dtype=np.int64)
    hidden = enc.hidden
    for t in range(steps):
        log_probs, hidden, weights = graphs.step(prev, enc, hidden)  # (A, V), (L, A, H), (A, S)
        if t < d.min_len:
            log_probs[:, EOS] = -np.inf
        best = log_probs.argmax(axis=-1)  # (A,)
        tokens[active, t] = best
        scores[active] += log_probs[np.arange(len(best)), best]
        if attention is not None:
            attention[active, t] = weights
        done = (best == EOS) | (max_lens[active] <= t + 1)
        if done.all():
            break
        if done.any():
            keep = np.flatnonzero(~done)
            active, enc, hidden, best = active[keep], enc.select(keep), hidden[:, keep], best[keep]
        prev = best
    out = []
    for i, row in enumerate(tokens.tolist()):
        taken = row.index(NOT_DECODED) if NOT_DECODED in row else len(row)
        n = taken - 1 if taken and row[taken - 1] == EOS else taken  # tokens without the <eos>
        att = None if attention is None else attention[i, :taken, : int(src_lengths[i])]  # a row per step taken
        out.append(Hypothesis(row[:n], float(scores[i]), att))
    return out


def length_penalty(length: int, alpha: float) -> float:
    """The GNMT length penalty ((5 + length) / 6) ** alpha (decode/search.length_penalty)."""
    return ((5.0 + length) / 6.0) ** alpha


def _top(candidates: np.ndarray, c: int) -> tuple[np.ndarray, np.ndarray]:
    """The `c` largest values per row and their indices, largest first (torch.topk)."""
    if c < candidates.shape[1]:
        index = np.argpartition(-candidates, c - 1, axis=1)[:, :c]
    else:
        index = np.broadcast_to(np.arange(candidates.shape[1]), candidates.shape)
    values = np.take_along_axis(candidates, index, axis=1)
    order = np.argsort(-values, axis=1, kind="stable")
    return np.take_along_axis(values, order, axis=1), np.take_along_axis(index, order, axis=1)


def beam_search(
    graphs: Graphs, src: np.ndarray, src_lengths: np.ndarray, d: DecodeConfig, nbest: int, return_attention: bool = False
) -> list[list[Hypothesis]]:
    """Beam search on a padded batch src (B, S), src_lengths (B,): the `nbest` best hypotheses per sentence, best
    first, by the rules of decode/search.beam_search (read its docstring; this is the same loop in numpy)."""
    vocab_size = graphs.vocab_size
    k = min(d.beam_size, vocab_size - 1)
    assert 1 <= nbest <= d.beam_size, (nbest, d.beam_size)
    enc = graphs.encode(src, src_lengths)
    max_lens = max_output_lengths(src_lengths, d.max_len_a, d.max_len_b).tolist()
    src_len_list = src_lengths.tolist()
    finished: list[list[Hypothesis]] = [[] for _ in range(src.shape[0])]
    active = list(range(src.shape[0]))
    width = 1
    hidden = enc.hidden  # (L, A * width, H)
    prev = np.full(src.shape[0], BOS, dtype=np.int64)  # (A * width,)
    scores = np.zeros(src.shape[0], dtype=np.float32)  # (A * width,)
    history = np.zeros((src.shape[0], 0), dtype=np.int64)  # (A * width, t)
    att_history = np.zeros((src.shape[0], 0, src.shape[1]), dtype=np.float32) if return_attention else None

    def ended(row: int, token: int, score: float, t: int, weights: np.ndarray) -> Hypothesis:
        ids = history[row].tolist() + ([] if token == EOS else [token])
        att = None
        if att_history is not None:
            steps = np.concatenate([att_history[row], weights[row][None]], axis=0)  # (t + 1, S)
            att = steps[:, : src_len_list[active[row // width]]]
        return Hypothesis(ids, score / length_penalty(t + 1, d.length_penalty), att)

    t = 0
    while active:
        n_active = len(active)
        log_probs, hidden, weights = graphs.step(prev, enc, hidden)  # (A * width, V), (L, A * width, H), (A * width, S)
        if t < d.min_len:
            log_probs[:, EOS] = -np.inf
        candidates = (scores[:, None] + log_probs).reshape(n_active, width * vocab_size)  # (A, width * V)
        top_scores, top_index = _top(candidates, min(2 * k, width * vocab_size))  # (A, C)
        top_rows = top_index // vocab_size + np.arange(n_active)[:, None] * width  # (A, C)
        top_tokens = top_index % vocab_size
        is_eos = top_tokens == EOS
        carry = ~is_eos & (np.cumsum(~is_eos, axis=1) <= k)  # (A, C), k True per row
        carry_rows = top_rows[carry].reshape(n_active, k)
        carry_tokens = top_tokens[carry].reshape(n_active, k)
        carry_scores = top_scores[carry].reshape(n_active, k)

        rows_l, tokens_l, scores_l = top_rows[:, :k].tolist(), top_tokens[:, :k].tolist(), top_scores[:, :k].tolist()
        keep: list[int] = []
        for a, sentence in enumerate(active):
            last = max_lens[sentence] <= t + 1
            for j in range(k):
                if (last or tokens_l[a][j] == EOS) and scores_l[a][j] != float("-inf"):
                    finished[sentence].append(ended(rows_l[a][j], tokens_l[a][j], scores_l[a][j], t, weights))
            if not last and len(finished[sentence]) < k:
                keep.append(a)
        if not keep:
            break
        keep_a = np.array(keep)
        rows = carry_rows[keep_a].reshape(-1)  # (A' * k,)
        prev = carry_tokens[keep_a].reshape(-1)
        scores = carry_scores[keep_a].reshape(-1)
        history = np.concatenate([history[rows], prev[:, None]], axis=1)
        if att_history is not None:
            att_history = np.concatenate([att_history[rows], weights[rows][:, None]], axis=1)
        hidden = hidden[:, rows]
        if len(keep) < n_active or width != k:
            enc = enc.select(np.repeat(keep_a * width, k))
        active = [active[a] for a in keep]
        width = k
        t += 1
    return [sorted(hyps, key=lambda h: -h.score)[:nbest] for hyps in finished]


def decode(
    graphs: Graphs, sources: Sequence[Sequence[int]], d: DecodeConfig, *, nbest: int = 1, return_attention: bool = False,
    progress: bool = False,
) -> list[list[Hypothesis]]:
    """The `nbest` best hypotheses of each source id list (each ending in <eos>), best first, in input order;
    batches of d.batch_size sources of similar length (decode/search.decode)."""
    if nbest > d.beam_size:
        raise ConfigError(f"nbest {nbest} needs decode.beam_size {nbest} or more, got {d.beam_size}")
    order = sorted(range(len(sources)), key=lambda i: len(sources[i]))
    results: list[list[Hypothesis]] = [[] for _ in sources]
    bar = tqdm(total=len(order), desc="decoding", unit=" sent", disable=not progress, leave=False, file=sys.stderr, dynamic_ncols=True)
    for start in range(0, len(order), d.batch_size):
        chunk = order[start : start + d.batch_size]
        src, src_lengths = pad([sources[i] for i in chunk])
        if d.beam_size == 1:
            found = [[h] for h in greedy_search(graphs, src, src_lengths, d, return_attention)]
        else:
            found = beam_search(graphs, src, src_lengths, d, nbest, return_attention)
        for i, hyps in zip(chunk, found):
            results[i] = hyps
        bar.update(len(chunk))
    bar.close()
    return results
