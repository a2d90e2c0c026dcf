"""Batched decoding, greedy and beam. Finished sentences leave the active batch, so a long sentence does not slow the rest.

`decode` is the one entry: every setting (beam size, batch size, length limits, length penalty, minimum
length) comes from a DecodeConfig; a caller that overrides one (the CLI's --beam) passes
`dataclasses.replace(decode_cfg, beam_size=...)`. Both searches treat each sentence on its own (no score,
length or stopping rule is shared across the batch), so a sentence decodes to the same output alone or
inside any batch.
"""

from __future__ import annotations

import sys
from typing import NamedTuple, Sequence

import torch
from tqdm import tqdm

from seq2seq.config import DecodeConfig
from seq2seq.data.batch import pad
from seq2seq.errors import ConfigError
from seq2seq.model.network import Seq2Seq
from seq2seq.data.vocab import BOS, EOS


class Hypothesis(NamedTuple):
    ids: list[int]  # target ids, without <bos> / <eos>
    score: float  # sum of token log-probabilities (<eos> included when produced); beam search divides it by the length penalty
    attention: torch.Tensor | None  # (steps, S) over the real source, when asked for: a row per id, + the <eos> step when produced


def max_output_lengths(src_lengths: torch.Tensor, a: float, b: int) -> torch.Tensor:
    """Maximum number of generated tokens (<eos> included) per sentence: a * |source| + b, at least 1."""
    return (a * (src_lengths - 1).float() + b).floor().long().clamp(min=1)  # source length without its <eos>


@torch.inference_mode()
def greedy_search(
    model: Seq2Seq,
    src: torch.Tensor,
    src_lengths: torch.Tensor,
    max_len_a: float,
    max_len_b: int,
    min_len: int = 0,
    return_attention: bool = False,
) -> list[Hypothesis]:
    """Greedy decoding of a padded batch src (B, S), src_lengths (B,). Returns one Hypothesis per sentence.

    At most max_len_a * source length + max_len_b tokens; <eos> is forbidden before `min_len` tokens (unless
    the maximum length ends the sentence first). `min_len` 0 is no constraint, not a setting's default.
    """
    device = src.device
    batch_size = src.size(0)
    enc = model.encode(src, src_lengths)
    max_lens = max_output_lengths(src_lengths, max_len_a, max_len_b).to(device)  # (B,)
    steps = int(max_lens.max())
    # NOT_DECODED marks the steps a sentence did not take (it stopped earlier), so that its length is its own
    # and not the batch's: an <eos> filler here would read as an <eos> the sentence produced.
    tokens = torch.full((batch_size, steps), NOT_DECODED, dtype=torch.long, device=device)  # (B, steps)
    scores = torch.zeros(batch_size, device=device)
    attention = torch.zeros(batch_size, steps, src.size(1), device=device) if return_attention else None
    active = torch.arange(batch_size, device=device)  # rows of the original batch still decoding
    prev = torch.full((batch_size,), BOS, dtype=torch.long, device=device)
    hidden = enc.hidden
    for t in range(steps):
        logits, hidden, weights = model.decode_step(prev, enc, hidden)  # (A, V), (L, A, H), (A, S)
        log_probs = torch.log_softmax(logits.float(), dim=-1)
        if t < min_len:
            log_probs[:, EOS] = float("-inf")
        best_scores, best = log_probs.max(dim=-1)  # (A,)
        tokens[active, t] = best
        scores[active] += best_scores
        if attention is not None:
            attention[active, t] = weights.float()
        done = (best == EOS) | (max_lens[active] <= t + 1)
        if bool(done.all()):
            break
        if bool(done.any()):
            keep = (~done).nonzero().squeeze(1)
            active, enc, hidden, best = active[keep], enc.select(keep), hidden[:, keep], best[keep]
        prev = best
    return _hypotheses(tokens, scores, attention, src_lengths)


NOT_DECODED = -1  # greedy_search's filler for the steps after a sentence stopped (no token id is negative)


def _hypotheses(
    tokens: torch.Tensor, scores: torch.Tensor, attention: torch.Tensor | None, src_lengths: torch.Tensor
) -> list[Hypothesis]:
    """Greedy's rows: each row's steps are its tokens up to its first NOT_DECODED, the last one <eos> when produced;
    its attention has one row per step (the <eos> step included), whatever the batch's longest sentence."""
    out = []
    for i, row in enumerate(tokens.tolist()):
        steps = row.index(NOT_DECODED) if NOT_DECODED in row else len(row)
        n = steps - 1 if steps and row[steps - 1] == EOS else steps  # tokens without the <eos>
        att = None if attention is None else attention[i, :steps, : int(src_lengths[i])].cpu()
        out.append(Hypothesis(row[:n], float(scores[i]), att))
    return out


def length_penalty(length: int, alpha: float) -> float:
    """The GNMT length penalty ((5 + length) / 6) ** alpha; alpha = 0 ranks by the plain sum of log-probabilities."""
    return ((5.0 + length) / 6.0) ** alpha


@torch.inference_mode()
def beam_search(
    model: Seq2Seq,
    src: torch.Tensor,
    src_lengths: torch.Tensor,
    beam_size: int,
    alpha: float,
    nbest: int,
    max_len_a: float,
    max_len_b: int,
    min_len: int,
    return_attention: bool = False,
) -> list[list[Hypothesis]]:
    """Beam search on a padded batch src (B, S), src_lengths (B,): the `nbest` best hypotheses per sentence, best first.

    Each step, every active sentence extends its k beams (k = beam_size) to its 2k best continuations by summed
    log-probability. An <eos> among the first k ends a hypothesis, scored sum / length_penalty(len, alpha) with
    len counting the <eos>; the k best continuations without <eos> carry on. A sentence is done once it holds k
    ended hypotheses, or at its maximum length (a * source length + b tokens), where its k best continuations
    end as they are; then it leaves the batch. <eos> is forbidden before `min_len` tokens. With k = 1 this is
    greedy search, token for token.
    """
    vocab_size = model.output.out_features
    k = min(beam_size, vocab_size - 1)  # at least k continuations without <eos> must exist
    assert 1 <= nbest <= beam_size, (nbest, beam_size)
    device = src.device
    enc = model.encode(src, src_lengths)
    max_lens = max_output_lengths(src_lengths, max_len_a, max_len_b).tolist()
    src_len_list = src_lengths.tolist()
    finished: list[list[Hypothesis]] = [[] for _ in range(src.size(0))]
    active = list(range(src.size(0)))  # original index of each active sentence
    width = 1  # live beams per active sentence: 1 before the first step, then k
    hidden = enc.hidden  # (L, A * width, H)
    prev = torch.full((src.size(0),), BOS, dtype=torch.long, device=device)  # (A * width,)
    scores = torch.zeros(src.size(0), device=device)  # (A * width,) summed log-probabilities
    history = torch.zeros(src.size(0), 0, dtype=torch.long, device=device)  # (A * width, t)
    att_history = torch.zeros(src.size(0), 0, src.size(1), device=device) if return_attention else None  # (A * width, t, S)

    def ended(row: int, token: int, score: float, t: int, weights: torch.Tensor) -> Hypothesis:
        ids = history[row].tolist() + ([] if token == EOS else [token])
        att = None
        if att_history is not None:
            steps = torch.cat([att_history[row], weights[row][None].float()], dim=0)  # (t + 1, S)
            att = steps[:, : src_len_list[active[row // width]]].cpu()
        return Hypothesis(ids, score / length_penalty(t + 1, alpha), att)

    t = 0
    while active:
        n_active = len(active)
        logits, hidden, weights = model.decode_step(prev, enc, hidden)  # (A * width, V), (L, A * width, H), (A * width, S)
        log_probs = torch.log_softmax(logits.float(), dim=-1)  # (A * width, V)
        if t < min_len:
            log_probs[:, EOS] = float("-inf")
        candidates = (scores[:, None] + log_probs).view(n_active, width * vocab_size)  # (A, width * V)
        top_scores, top_index = candidates.topk(min(2 * k, width * vocab_size), dim=1)  # (A, C)
        offsets = torch.arange(n_active, device=device)[:, None] * width
        top_rows = torch.div(top_index, vocab_size, rounding_mode="floor") + offsets  # (A, C) beam rows they extend
        top_tokens = top_index % vocab_size  # (A, C)
        is_eos = top_tokens == EOS
        # At most `width` <= k candidates are <eos>, so each sentence has k others among its 2k: they carry on.
        carry = ~is_eos & ((~is_eos).cumsum(dim=1) <= k)  # (A, C), k True per row
        carry_rows = top_rows[carry].view(n_active, k)
        carry_tokens = top_tokens[carry].view(n_active, k)
        carry_scores = top_scores[carry].view(n_active, k)

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
        keep_t = torch.tensor(keep, device=device)
        rows = carry_rows[keep_t].view(-1)  # (A' * k,) beams extended by the survivors
        prev = carry_tokens[keep_t].view(-1)  # (A' * k,)
        scores = carry_scores[keep_t].view(-1)
        history = torch.cat([history[rows], prev[:, None]], dim=1)  # (A' * k, t + 1)
        if att_history is not None:
            att_history = torch.cat([att_history[rows], weights[rows][:, None].float()], dim=1)  # (A' * k, t + 1, S)
        hidden = hidden[:, rows]
        if len(keep) < n_active or width != k:
            # every beam of a sentence shares its encoder rows: re-select them only when sentences leave
            enc = enc.select((keep_t * width).repeat_interleave(k))
        active = [active[a] for a in keep]
        width = k
        t += 1
    return [sorted(hyps, key=lambda h: -h.score)[:nbest] for hyps in finished]


def decode(
    model: Seq2Seq,
    sources: Sequence[Sequence[int]],
    decode_cfg: DecodeConfig,
    device: torch.device,
    *,
    nbest: int = 1,
    return_attention: bool = False,
    progress: bool = False,
) -> list[list[Hypothesis]]:
    """The `nbest` best hypotheses of each source id list (each ending in <eos>), best first, in input order.

    Sources are sorted by length into batches of decode_cfg.batch_size (the order is restored after);
    decode_cfg.beam_size 1 is greedy search (one hypothesis each), else beam search, which needs
    beam_size >= nbest. `return_attention`: each hypothesis carries its (len(ids) [+ 1], S) attention.
    `progress`: a progress bar on stderr. Runs in the caller's autocast context.
    """
    if nbest > decode_cfg.beam_size:
        raise ConfigError(f"nbest {nbest} needs decode.beam_size {nbest} or more, got {decode_cfg.beam_size}")
    order = sorted(range(len(sources)), key=lambda i: len(sources[i]))
    results: list[list[Hypothesis]] = [[] for _ in sources]
    bar = tqdm(total=len(order), desc="decoding", unit=" sent", disable=not progress, leave=False, file=sys.stderr, dynamic_ncols=True)
    for start in range(0, len(order), decode_cfg.batch_size):
        chunk = order[start : start + decode_cfg.batch_size]
        src, src_lengths = pad([sources[i] for i in chunk])  # (B, S), (B,)
        for i, hyps in zip(chunk, _decode_batch(model, src.to(device), src_lengths.to(device), decode_cfg, nbest, return_attention)):
            results[i] = hyps
        bar.update(len(chunk))
    bar.close()
    return results


def _decode_batch(
    model: Seq2Seq, src: torch.Tensor, src_lengths: torch.Tensor, decode_cfg: DecodeConfig, nbest: int, return_attention: bool
) -> list[list[Hypothesis]]:
    """One padded batch src (B, S), src_lengths (B,): greedy when decode_cfg.beam_size is 1, else beam search."""
    d = decode_cfg
    if d.beam_size == 1:
        return [[h] for h in greedy_search(model, src, src_lengths, d.max_len_a, d.max_len_b, d.min_len, return_attention)]
    return beam_search(
        model, src, src_lengths, d.beam_size, d.length_penalty, nbest, d.max_len_a, d.max_len_b, d.min_len, return_attention
    )

