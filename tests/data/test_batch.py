"""Batches: collate makes the shift and the padding in one place; the bucketed sampler (deterministic, complete,
shuffled, bounded by max_tokens, sharded over ranks) follows the plain bucketing rule."""

from __future__ import annotations

from collections import Counter

import pytest
import torch

from seq2seq.data.batch import BucketSampler, collate, decoder_steps, example_lengths

from seq2seq.data.encoding import Encoder, encode_pairs
from seq2seq.data.tokenizer import Tokenizer
from seq2seq.data.vocab import BOS, EOS, PAD, Vocab
from seq2seq.errors import DataError
from tests.conftest import random_examples


def test_collate_shifts_targets_once_and_pads_everywhere_else():
    examples = random_examples(11, 0)
    b = collate(examples)
    assert b.src.shape == (11, max(len(s) for s, _ in examples))
    assert b.tgt_in.shape == b.tgt_out.shape == (11, max(len(t) for _, t in examples) + 1)
    for i, (s, t) in enumerate(examples):
        n = len(t) + 1
        assert int(b.tgt_lengths[i]) == n and int(b.src_lengths[i]) == len(s)
        assert b.src[i, : len(s)].tolist() == s and (b.src[i, len(s) :] == PAD).all()
        assert b.tgt_in[i, :n].tolist() == [BOS] + t
        assert b.tgt_out[i, :n].tolist() == t + [EOS]
        assert torch.equal(b.tgt_in[i, 1:n], b.tgt_out[i, : n - 1])  # the shift, at real positions
        assert (b.tgt_in[i, n:] == PAD).all() and (b.tgt_out[i, n:] == PAD).all()
    assert all(t.device.type == "cpu" for t in b)


def _lengths(n: int, seed: int):
    ex = random_examples(n, seed, max_len=30)
    return example_lengths(ex)


def test_bucket_sampler_is_deterministic_complete_and_shuffled():
    src, tgt = _lengths(500, 1)
    a = BucketSampler(src, tgt, batch_size=16, seed=3)
    b = BucketSampler(src, tgt, batch_size=16, seed=3)
    assert a.batches(0) == b.batches(0)
    assert a.batches(0) != a.batches(1)
    assert a.batches(0) != BucketSampler(src, tgt, batch_size=16, seed=4).batches(0)
    for epoch in (0, 1):
        flat = sorted(i for batch in a.batches(epoch) for i in batch)
        assert flat == list(range(500))
        assert all(len(batch) <= 16 for batch in a.batches(epoch))


def test_bucket_sampler_max_tokens_bounds_padded_size_and_buckets_lengths():
    src, tgt = _lengths(800, 2)
    sampler = BucketSampler(src, tgt, batch_size=1, max_tokens=120, seed=0)
    batches = sampler.batches(0)
    assert sorted(i for b in batches for i in b) == list(range(800))
    real = padded = 0
    for batch in batches:
        longest = max(max(src[i], tgt[i]) for i in batch)
        assert len(batch) * longest <= 120 or len(batch) == 1
        padded += len(batch) * max(tgt[i] for i in batch)
        real += sum(tgt[i] for i in batch)
    assert 1 - real / padded < 0.10  # bucketing keeps target padding under 10%


def test_max_len_filters_training_pairs_only_when_asked():
    tok = Tokenizer()
    vocab = Vocab.build(Counter("a b c".split()))
    enc = Encoder(tok, vocab)
    pairs = [("a b c a b", "a"), ("a", "b"), ("a", "a b c a b c")]
    assert len(encode_pairs(pairs, enc, enc, max_len=3)) == 1
    assert len(encode_pairs(pairs, enc, enc)) == 3  # evaluation data: never filtered
    with pytest.raises(DataError, match=r"data.max_len: every training pair is longer than 0 tokens"):
        encode_pairs(pairs, enc, enc, max_len=0)


def test_source_ids_end_in_eos_and_decoder_steps_are_collates_target_lengths():
    import numpy as np

    enc = Encoder(Tokenizer(), Vocab.build(Counter("a b c".split())))
    assert enc.source_ids("a b z") == enc.ids("a b z") + [EOS] == [4, 5, 1, EOS]
    examples = encode_pairs([("a b", "c"), ("a", "b c a"), ("c", "")], enc, enc)
    assert [s for s, _ in examples] == [enc.source_ids(s) for s in ("a b", "a", "c")]
    b = collate(examples)
    assert b.tgt_lengths.tolist() == [decoder_steps(len(t)) for _, t in examples] == [2, 4, 1]
    assert b.tgt_in.shape[1] == decoder_steps(max(len(t) for _, t in examples))
    assert decoder_steps(np.array([0, 3])).tolist() == decoder_steps(torch.tensor([0, 3])).tolist() == [1, 4]


@pytest.mark.parametrize("world_size", [2, 3])
def test_sampler_shards_are_disjoint_equal_and_deterministic(world_size: int) -> None:
    src_lengths = [1 + (i * 7) % 13 for i in range(101)]
    tgt_lengths = [1 + (i * 5) % 11 for i in range(101)]
    for epoch in range(3):
        full = BucketSampler(src_lengths, tgt_lengths, batch_size=4, seed=3).batches(epoch)
        shards = [BucketSampler(src_lengths, tgt_lengths, batch_size=4, seed=3, rank=r, world_size=world_size).batches(epoch) for r in range(world_size)]
        assert len({len(s) for s in shards}) == 1 and len(shards[0]) == len(full) // world_size
        # step k takes global batches k*W .. k*W+W-1, one per rank
        steps = [batch for k in range(len(shards[0])) for batch in (s[k] for s in shards)]
        assert steps == full[: len(steps)]
        seen = [i for s in shards for batch in s for i in batch]
        assert len(seen) == len(set(seen))
        again = BucketSampler(src_lengths, tgt_lengths, batch_size=4, seed=3, rank=1, world_size=world_size).batches(epoch)
        assert again == shards[1]


def _reference_batches(src: list[int], tgt: list[int], batch_size: int, max_tokens: int | None, seed: int, epoch: int) -> list[list[int]]:
    """The bucketing rule written plainly (the sampler computes it with numpy, for large corpora)."""
    import random

    rng = random.Random(seed * 100_003 + epoch)
    noise = [rng.random() for _ in range(len(src))]
    batches: list[list[int]] = []
    current: list[int] = []
    longest = 0
    for i in sorted(range(len(src)), key=lambda i: (tgt[i], src[i], noise[i])):
        size = max(src[i], tgt[i])
        if current and ((len(current) + 1) * max(longest, size) > max_tokens if max_tokens else len(current) >= batch_size):
            batches.append(current)
            current, longest = [], 0
        current.append(i)
        longest = max(longest, size)
    if current:
        batches.append(current)
    rng.shuffle(batches)
    return batches


@pytest.mark.parametrize("max_tokens", [None, 40, 7])
def test_sampler_follows_the_plain_bucketing_rule(max_tokens: int | None) -> None:
    import random

    rng = random.Random(max_tokens or 0)
    for n in (0, 1, 5, 300):
        src = [rng.randint(1, 12) for _ in range(n)]
        tgt = [rng.randint(1, 12) for _ in range(n)]
        for epoch in (0, 1):
            got = BucketSampler(src, tgt, batch_size=6, max_tokens=max_tokens, seed=9).batches(epoch)
            assert got == _reference_batches(src, tgt, 6, max_tokens, 9, epoch)
            assert all(isinstance(i, int) for batch in got for i in batch)
