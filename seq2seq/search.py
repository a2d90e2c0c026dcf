"""Batched decoding. Finished sentences leave the active batch, so a long sentence does not slow the rest."""

from __future__ import annotations

import sys
from typing import NamedTuple, Sequence

import torch
from tqdm import tqdm

from seq2seq.data import pad
from seq2seq.model import Seq2Seq
from seq2seq.vocab import BOS, EOS


class Hypothesis(NamedTuple):
    ids: list[int]  # target ids, without <bos> / <eos>
    score: float  # sum of token log-probabilities, <eos> included when it was produced
    attention: torch.Tensor | None  # (len(ids) + 1, S) attention weights over the real source, when asked for


def max_output_lengths(src_lengths: torch.Tensor, a: float, b: int) -> torch.Tensor:
    """Maximum number of generated tokens (<eos> included) per sentence: a * |source| + b, at least 1."""
    return (a * (src_lengths - 1).float() + b).floor().long().clamp(min=1)  # source length without its <eos>


@torch.inference_mode()
def greedy_search(
    model: Seq2Seq,
    src: torch.Tensor,
    src_lengths: torch.Tensor,
    max_len_a: float = 1.5,
    max_len_b: int = 10,
    return_attention: bool = False,
) -> list[Hypothesis]:
    """Greedy decoding of a padded batch src (B, S), src_lengths (B,). Returns one Hypothesis per sentence."""
    device = src.device
    batch_size = src.size(0)
    enc = model.encode(src, src_lengths)
    max_lens = max_output_lengths(src_lengths, max_len_a, max_len_b).to(device)  # (B,)
    steps = int(max_lens.max())
    tokens = torch.full((batch_size, steps), EOS, dtype=torch.long, device=device)  # (B, steps)
    scores = torch.zeros(batch_size, device=device)
    attention = torch.zeros(batch_size, steps, src.size(1), device=device) if return_attention else None
    active = torch.arange(batch_size, device=device)  # rows of the original batch still decoding
    prev = torch.full((batch_size,), BOS, dtype=torch.long, device=device)
    hidden = enc.hidden
    for t in range(steps):
        logits, hidden, weights = model.decode_step(prev, enc, hidden)  # (A, V), (L, A, H), (A, S)
        log_probs = torch.log_softmax(logits.float(), dim=-1)
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


def _hypotheses(
    tokens: torch.Tensor, scores: torch.Tensor, attention: torch.Tensor | None, src_lengths: torch.Tensor
) -> list[Hypothesis]:
    out = []
    for i, row in enumerate(tokens.tolist()):
        n = row.index(EOS) if EOS in row else len(row)
        att = None
        if attention is not None:
            att = attention[i, : min(n + 1, len(row)), : int(src_lengths[i])].cpu()
        out.append(Hypothesis(row[:n], float(scores[i]), att))
    return out


def decode_corpus(
    model: Seq2Seq,
    sources: Sequence[Sequence[int]],
    device: torch.device,
    batch_size: int = 64,
    max_len_a: float = 1.5,
    max_len_b: int = 10,
    return_attention: bool = False,
    progress: bool = False,
) -> list[Hypothesis]:
    """Decode many source id lists (each ending in <eos>): sorted by length into batches, original order restored.

    `progress`: show a progress bar on stderr.
    """
    order = sorted(range(len(sources)), key=lambda i: len(sources[i]))
    results: list[Hypothesis | None] = [None] * len(sources)
    bar = tqdm(total=len(order), desc="decoding", unit=" sent", disable=not progress, leave=False, file=sys.stderr, dynamic_ncols=True)
    for start in range(0, len(order), batch_size):
        chunk = order[start : start + batch_size]
        src, src_lengths = pad([sources[i] for i in chunk])
        hyps = greedy_search(model, src.to(device), src_lengths.to(device), max_len_a, max_len_b, return_attention)
        for i, hyp in zip(chunk, hyps):
            results[i] = hyp
        bar.update(len(chunk))
    bar.close()
    return [h for h in results if h is not None]
