"""Search: beam k = 1 is greedy, batch invariance, n-best order and distinctness, length limits, corpus order, the
progress bar on stderr, and one meaning of a score (the raw sum of log-probabilities, greedy or beam)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from tests.conftest import random_examples, tiny_model
from seq2seq.config import DecodeConfig
from seq2seq.errors import ConfigError
from seq2seq.decode.search import beam_search, decode, greedy_search, length_penalty, max_output_lengths, pad
from seq2seq.decode.torch_backend import TorchBackend
from seq2seq.data.vocab import EOS

STYLES = ("bahdanau", "luong")


def peaked_model(attention: str, seed: int = 1, eos_bias: float = 0.3) -> torch.nn.Module:
    """A random tiny model in float64 with sharper output distributions and a nudge towards <eos>, so that
    hypotheses end at many different lengths (a plain random model never emits <eos>)."""
    model = tiny_model(seed, attention=attention).double()
    with torch.no_grad():
        model.output.weight *= 8
        model.output.bias[EOS] += eos_bias
    return model


def backend(model: torch.nn.Module) -> TorchBackend:
    return TorchBackend(model, torch.device("cpu"), "fp32")


def settings(beam: int, alpha: float = 1.0, min_len: int = 0, a: float = 1.5, b: int = 3) -> DecodeConfig:
    """The decode config of these tests: beam size, length penalty alpha, minimum length, max length a * |source| + b."""
    return DecodeConfig(beam_size=beam, length_penalty=alpha, min_len=min_len, max_len_a=a, max_len_b=b)


def sources(n: int, seed: int) -> list[list[int]]:
    return [s for s, _ in random_examples(n, seed)]


@pytest.mark.parametrize("style", STYLES)
@pytest.mark.parametrize("alpha,min_len", [(0.0, 0), (1.0, 0), (0.6, 3)])
def test_beam_of_one_is_greedy(style: str, alpha: float, min_len: int) -> None:
    model = peaked_model(style)
    src, src_lengths = pad(sources(16, 5))
    greedy = greedy_search(backend(model), src, src_lengths, settings(1, alpha, min_len=min_len))
    beam = beam_search(backend(model), src, src_lengths, settings(1, alpha, min_len=min_len))
    assert len({len(h.ids) for h in greedy}) > 2  # the outputs end at several lengths
    for g, (b,) in zip(greedy, beam):
        assert b.ids == g.ids
        assert b.score == g.score  # whatever the length penalty: a score is the sum of log-probabilities


@pytest.mark.parametrize("style", STYLES)
def test_beam_output_is_batch_invariant(style: str) -> None:
    """A sentence's n-best list is the same alone and inside a padded batch of other sentences."""
    model = peaked_model(style)
    batch = sources(10, 8)
    src, src_lengths = pad(batch)
    together = beam_search(backend(model), src, src_lengths, settings(4), nbest=4)
    for seq, nbest in zip(batch, together):
        alone = beam_search(backend(model), *pad([seq]), settings(4), nbest=4)[0]
        assert [h.ids for h in alone] == [h.ids for h in nbest]
        assert [h.score for h in alone] == pytest.approx([h.score for h in nbest], abs=1e-5)


@pytest.mark.parametrize("style", STYLES)
def test_nbest_is_sorted_distinct_and_within_lengths(style: str) -> None:
    model = peaked_model(style, seed=2)
    batch = sources(12, 9)
    src, src_lengths = pad(batch)
    max_lens = max_output_lengths(src_lengths, 1.5, 3).tolist()
    results = beam_search(backend(model), src, src_lengths, settings(5, 0.8, min_len=2), nbest=5)
    for nbest, max_len in zip(results, max_lens):
        assert len(nbest) == 5
        # ranked by the sum over the length penalty (steps taken: the tokens and <eos>, or the maximum length)
        ranks = [h.score / length_penalty(min(len(h.ids) + 1, max_len), 0.8) for h in nbest]
        assert ranks == sorted(ranks, reverse=True)
        assert len({tuple(h.ids) for h in nbest}) == 5
        for h in nbest:
            assert min(2, max_len) <= len(h.ids) <= max_len
            assert EOS not in h.ids


def test_beam_search_finds_the_higher_probability_output_than_greedy_on_average() -> None:
    """With no length penalty, the best of a wider beam scores at least as well as greedy on most sentences
    (search is not exact, so not on every one), and strictly better on some."""
    model = peaked_model("bahdanau", seed=3, eos_bias=0.0)
    src, src_lengths = pad(sources(24, 4))
    greedy = greedy_search(backend(model), src, src_lengths, settings(1))
    beam = beam_search(backend(model), src, src_lengths, settings(6, 0.0))
    better_or_equal = sum(b[0].score >= g.score - 1e-9 for g, b in zip(greedy, beam))
    assert better_or_equal >= 20
    assert any(b[0].score > g.score + 1e-6 for g, b in zip(greedy, beam))


@pytest.mark.parametrize("search", ["greedy", "beam"])
def test_attention_rows_follow_the_hypothesis(search: str) -> None:
    """One attention row per decoding step the hypothesis took (its tokens, + the <eos> step when it produced one,
    which it did unless it stopped at its maximum length), each a distribution over the real source."""
    model = peaked_model("luong")
    batch = sources(12, 11)
    src, src_lengths = pad(batch)
    max_lens = max_output_lengths(src_lengths, 1.5, 3).tolist()
    if search == "greedy":
        results = [[h] for h in greedy_search(backend(model), src, src_lengths, settings(1), return_attention=True)]
    else:
        results = beam_search(backend(model), src, src_lengths, settings(3), nbest=3, return_attention=True)
    assert any(len(nbest[0].ids) == max_len for nbest, max_len in zip(results, max_lens))  # one stopped at its limit
    assert any(len(nbest[0].ids) < max_len for nbest, max_len in zip(results, max_lens))  # one produced <eos>
    for seq, nbest, max_len in zip(batch, results, max_lens):
        for h in nbest:
            assert h.attention is not None
            assert h.attention.shape == (min(len(h.ids) + 1, max_len), len(seq))
            assert np.allclose(h.attention.sum(-1), 1.0, atol=1e-5)


@pytest.mark.parametrize("style", STYLES)
def test_greedy_attention_is_the_same_alone_and_beside_a_longer_sentence(style: str) -> None:
    """A sentence that stops at its maximum length before the batch's last step has its own attention rows (no
    extra row for an <eos> it never produced), as it has alone."""
    model = peaked_model(style, eos_bias=-100.0)  # never <eos>: every sentence runs to its maximum length
    short, long = sources(12, 13)[:2]
    short, long = sorted((short, long), key=len)
    assert len(short) < len(long)
    alone = greedy_search(backend(model), *pad([short]), settings(1, a=1.0, b=0), return_attention=True)[0]
    together = greedy_search(backend(model), *pad([short, long]), settings(1, a=1.0, b=0), return_attention=True)[0]
    assert together.ids == alone.ids and len(alone.ids) == len(short) - 1  # stopped at its maximum length
    assert alone.attention is not None and together.attention is not None
    assert together.attention.shape == alone.attention.shape == (len(short) - 1, len(short))
    assert np.allclose(together.attention, alone.attention, atol=1e-6)


def test_decode_restores_input_order_and_reads_every_setting_from_the_config() -> None:
    model = peaked_model("bahdanau")
    batch = sources(9, 12)
    cfg = DecodeConfig(beam_size=3, batch_size=4, max_len_a=1.5, max_len_b=3, length_penalty=1.0, min_len=2)
    whole = decode(backend(model), batch, cfg, nbest=2)
    for seq, nbest in zip(batch, whole):
        alone = beam_search(backend(model), *pad([seq]), cfg, nbest=2)[0]
        assert [h.ids for h in nbest] == [h.ids for h in alone]
        assert [h.score for h in nbest] == pytest.approx([h.score for h in alone], abs=1e-6)
    assert [[h.ids for h in n] for n in decode(backend(model), batch, replace(cfg, batch_size=1), nbest=2)] == [
        [h.ids for h in n] for n in whole
    ]
    best = decode(backend(model), batch, cfg)
    assert [len(n) for n in best] == [1] * len(batch) and [n[0].ids for n in best] == [n[0].ids for n in whole]
    # beam 1 is greedy search, with the config's lengths and min_len
    greedy = decode(backend(model), batch, replace(cfg, beam_size=1), return_attention=True)
    for seq, (hyp,) in zip(batch, greedy):
        alone = greedy_search(backend(model), *pad([seq]), replace(cfg, beam_size=1))[0]
        assert hyp.ids == alone.ids and hyp.attention is not None and hyp.attention.shape[1] == len(seq)


def test_decode_uses_the_configured_length_penalty() -> None:
    """The length penalty is DecodeConfig's, wherever decoding starts: it ranks the hypotheses (their scores stay sums)."""
    model = peaked_model("luong")
    batch = sources(8, 13)
    plain = decode(backend(model), batch, DecodeConfig(beam_size=4, length_penalty=0.0), nbest=4)
    strong = DecodeConfig(beam_size=4, length_penalty=5.0)
    ranked = decode(backend(model), batch, strong, nbest=4)
    expected = [beam_search(backend(model), *pad([seq]), strong, nbest=4)[0] for seq in batch]
    scores = lambda nbests: [h.score for n in nbests for h in n]  # noqa: E731
    assert scores(ranked) == pytest.approx(scores(expected), abs=1e-6)
    assert [[h.ids for h in n] for n in ranked] != [[h.ids for h in n] for n in plain]
    for n in plain:  # alpha 0: ranked by the plain sum
        assert [h.score for h in n] == sorted((h.score for h in n), reverse=True)


def test_decode_refuses_more_hypotheses_than_the_beam_holds() -> None:
    model = peaked_model("bahdanau")
    with pytest.raises(ConfigError, match="nbest 3 needs decode.beam_size 3 or more, got 2"):
        decode(backend(model), sources(2, 1), DecodeConfig(beam_size=2), nbest=3)


def test_progress_bars_go_to_stderr_and_quiet_turns_them_off(capsys) -> None:
    model = peaked_model("luong")
    batch = sources(5, 14)
    cfg = DecodeConfig(batch_size=2)
    quiet = decode(backend(model), batch, cfg, progress=False)
    out, err = capsys.readouterr()
    assert out == "" and err == ""
    loud = decode(backend(model), batch, cfg, progress=True)
    out, err = capsys.readouterr()
    assert out == "" and "decoding" in err and "/5 " in err
    assert [n[0].ids for n in quiet] == [n[0].ids for n in loud]


def test_a_score_is_the_sum_of_log_probabilities_greedy_or_beam() -> None:
    """Issue 32 item 8: the same output has the same score from greedy and from a beam of 5 with a length penalty
    (the beam once divided its scores by the penalty: Wörterbuch -0.465 greedy, -0.199 beam 5), and that score is the
    teacher-forced sum of the output's log-probabilities, <eos> included."""
    model = peaked_model("bahdanau", seed=3)
    batch = sources(24, 4)
    src, src_lengths = pad(batch)
    greedy = greedy_search(backend(model), src, src_lengths, settings(1))
    beam = beam_search(backend(model), src, src_lengths, settings(5, alpha=1.0))
    same = [(g, b[0]) for g, b in zip(greedy, beam) if g.ids == b[0].ids]
    assert len(same) >= 5
    for g, b in same:
        assert b.score == pytest.approx(g.score, abs=1e-5)
    for seq, g in zip(batch, greedy):
        if len(g.ids) == max_output_lengths(np.array([len(seq)]), 1.5, 3)[0]:
            continue  # stopped at its maximum length: no <eos> to score
        tgt = torch.tensor([[2, *g.ids]])  # <bos> y
        with torch.no_grad():
            log_probs = torch.log_softmax(model(torch.tensor([seq]), torch.tensor([len(seq)]), tgt).float(), dim=-1)[0]
        forced = sum(float(log_probs[i, token]) for i, token in enumerate([*g.ids, EOS]))
        assert g.score == pytest.approx(forced, abs=1e-4)
