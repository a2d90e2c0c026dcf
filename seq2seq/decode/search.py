"""Batched decoding, greedy and beam. Finished sentences leave the active batch, so a long sentence does not slow the rest.

`decode` is the one entry: every setting (beam size, batch size, length limits, length penalty, minimum
length) comes from a DecodeConfig; a caller that overrides one (the CLI's --beam) passes
`dataclasses.replace(decode_cfg, beam_size=...)`. Both searches treat each sentence on its own (no score,
length or stopping rule is shared across the batch), so a sentence decodes to the same output alone or
inside any batch.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import NamedTuple, Sequence

import torch
from tqdm import tqdm

from seq2seq.config import DecodeConfig
from seq2seq.data.batch import pad
from seq2seq.errors import ConfigError
from seq2seq.model.network import EncoderOutput, Seq2Seq
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
    model: Seq2Seq, src: torch.Tensor, src_lengths: torch.Tensor, decode_cfg: DecodeConfig, return_attention: bool = False
) -> list[Hypothesis]:
    """Greedy decoding of a padded batch src (B, S), src_lengths (B,). Returns one Hypothesis per sentence.

    At most decode_cfg.max_len_a * source length + max_len_b tokens; <eos> is forbidden before decode_cfg.min_len
    tokens (unless the maximum length ends the sentence first). Its beam_size and length_penalty are not read.
    """
    device = src.device
    batch_size = src.size(0)
    enc = model.encode(src, src_lengths)
    max_lens = max_output_lengths(src_lengths, decode_cfg.max_len_a, decode_cfg.max_len_b).to(device)  # (B,)
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
        if t < decode_cfg.min_len:
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


@dataclass
class Beams:
    """The live beams of the sentences still decoding, `width` consecutive rows per sentence: what a step extends."""

    sentences: list[int]  # the original batch index of each active sentence (A of them)
    width: int  # live beams per sentence: 1 before the first step, then k
    enc: EncoderOutput  # the encoder output of every row (all beams of a sentence share theirs)
    hidden: torch.Tensor  # (L, A * width, H)
    prev: torch.Tensor  # (A * width,) each beam's last token
    scores: torch.Tensor  # (A * width,) summed log-probabilities
    history: torch.Tensor  # (A * width, t) the tokens so far
    attention: torch.Tensor | None  # (A * width, t, S) the attention so far, when asked for

    @classmethod
    def start(cls, enc: EncoderOutput, return_attention: bool) -> "Beams":
        """One beam per sentence, before the first step: <bos>, score 0."""
        B, S = enc.src_pad_mask.shape
        device = enc.states.device
        attention = torch.zeros(B, 0, S, device=device) if return_attention else None
        zeros = torch.zeros(B, device=device)
        return cls(list(range(B)), 1, enc, enc.hidden, torch.full((B,), BOS, dtype=torch.long, device=device), zeros,
                   torch.zeros(B, 0, dtype=torch.long, device=device), attention)

    def top_continuations(self, log_probs: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """log_probs (A * width, V) -> the 2k best continuations of each sentence's beams by summed log-probability:
        their scores, the rows they extend and their tokens, (A, C) each, best first."""
        n_active, vocab_size = len(self.sentences), log_probs.size(1)
        candidates = (self.scores[:, None] + log_probs).view(n_active, self.width * vocab_size)  # (A, width * V)
        top_scores, top_index = candidates.topk(min(2 * k, self.width * vocab_size), dim=1)  # (A, C)
        offsets = torch.arange(n_active, device=log_probs.device)[:, None] * self.width
        top_rows = torch.div(top_index, vocab_size, rounding_mode="floor") + offsets  # (A, C) beam rows they extend
        return top_scores, top_rows, top_index % vocab_size

    def ended(self, row: int, token: int, weights: torch.Tensor, src_length: int) -> tuple[list[int], torch.Tensor | None]:
        """The ids (without <eos>) and attention (t + 1, src_length) of beam `row` extended by `token`;
        weights (A * width, S) are this step's."""
        ids = self.history[row].tolist() + ([] if token == EOS else [token])
        if self.attention is None:
            return ids, None
        steps = torch.cat([self.attention[row], weights[row][None].float()], dim=0)  # (t + 1, S)
        return ids, steps[:, :src_length].cpu()

    def advance(self, keep: list[int], top: tuple[torch.Tensor, torch.Tensor, torch.Tensor], hidden: torch.Tensor,
                weights: torch.Tensor, k: int) -> "Beams":
        """The beams of the sentences `keep` (indices into `sentences`) after this step: each carries on with its k
        best continuations without <eos> among `top` (top_continuations'); hidden (L, A * width, H), weights (A * width, S)."""
        top_scores, top_rows, top_tokens = top
        n_active = len(self.sentences)
        is_eos = top_tokens == EOS
        # At most `width` <= k candidates are <eos>, so each sentence has k others among its 2k: they carry on.
        carry = ~is_eos & ((~is_eos).cumsum(dim=1) <= k)  # (A, C), k True per row
        keep_t = torch.tensor(keep, device=top_rows.device)
        rows = top_rows[carry].view(n_active, k)[keep_t].view(-1)  # (A' * k,) beams extended by the survivors
        prev = top_tokens[carry].view(n_active, k)[keep_t].view(-1)  # (A' * k,)
        scores = top_scores[carry].view(n_active, k)[keep_t].view(-1)
        history = torch.cat([self.history[rows], prev[:, None]], dim=1)  # (A' * k, t + 1)
        attention = None
        if self.attention is not None:
            attention = torch.cat([self.attention[rows], weights[rows][:, None].float()], dim=1)  # (A' * k, t + 1, S)
        enc = self.enc
        if len(keep) < n_active or self.width != k:
            # every beam of a sentence shares its encoder rows: re-select them only when sentences leave
            enc = enc.select((keep_t * self.width).repeat_interleave(k))
        return Beams([self.sentences[a] for a in keep], k, enc, hidden[:, rows], prev, scores, history, attention)


@torch.inference_mode()
def beam_search(
    model: Seq2Seq, src: torch.Tensor, src_lengths: torch.Tensor, decode_cfg: DecodeConfig, nbest: int = 1,
    return_attention: bool = False,
) -> list[list[Hypothesis]]:
    """Beam search on a padded batch src (B, S), src_lengths (B,): the `nbest` best hypotheses per sentence, best first.

    Each step, every active sentence extends its k beams (k = decode_cfg.beam_size) to its 2k best continuations by
    summed log-probability. An <eos> among the first k ends a hypothesis, scored sum / length_penalty(len, alpha)
    (alpha = decode_cfg.length_penalty) with len counting the <eos>; the k best continuations without <eos> carry
    on. A sentence is done once it holds k ended hypotheses, or at its maximum length (max_len_a * source length
    + max_len_b tokens), where its k best continuations end as they are; then it leaves the batch. <eos> is
    forbidden before decode_cfg.min_len tokens. With k = 1 this is greedy search, token for token.
    """
    d = decode_cfg
    k = min(d.beam_size, model.output.out_features - 1)  # at least k continuations without <eos> must exist
    assert 1 <= nbest <= d.beam_size, (nbest, d.beam_size)
    max_lens = max_output_lengths(src_lengths, d.max_len_a, d.max_len_b).tolist()
    src_len_list = src_lengths.tolist()
    finished: list[list[Hypothesis]] = [[] for _ in range(src.size(0))]
    beams = Beams.start(model.encode(src, src_lengths), return_attention)
    t = 0
    while True:
        logits, hidden, weights = model.decode_step(beams.prev, beams.enc, beams.hidden)  # (A * width, V), (L, A * width, H), (A * width, S)
        log_probs = torch.log_softmax(logits.float(), dim=-1)  # (A * width, V)
        if t < d.min_len:
            log_probs[:, EOS] = float("-inf")
        top = beams.top_continuations(log_probs, k)  # scores, rows, tokens (A, 2k)
        scores_l, rows_l, tokens_l = (x[:, :k].tolist() for x in top)
        keep: list[int] = []
        for a, sentence in enumerate(beams.sentences):
            last = max_lens[sentence] <= t + 1
            for j in range(k):
                if (last or tokens_l[a][j] == EOS) and scores_l[a][j] != float("-inf"):
                    ids, attention = beams.ended(rows_l[a][j], tokens_l[a][j], weights, src_len_list[sentence])
                    finished[sentence].append(Hypothesis(ids, scores_l[a][j] / length_penalty(t + 1, d.length_penalty), attention))
            if not last and len(finished[sentence]) < k:
                keep.append(a)
        if not keep:
            return [sorted(hyps, key=lambda h: -h.score)[:nbest] for hyps in finished]
        beams = beams.advance(keep, top, hidden, weights, k)
        t += 1


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
    if decode_cfg.beam_size == 1:
        return [[h] for h in greedy_search(model, src, src_lengths, decode_cfg, return_attention)]
    return beam_search(model, src, src_lengths, decode_cfg, nbest, return_attention)

