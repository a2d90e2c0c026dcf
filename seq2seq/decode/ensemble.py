"""An ensemble of models as one search Backend (decode/backend): checkpoints, exports or both.

As fairseq's EnsembleModel: each member encodes and steps on its own, and the ensemble's log-probability of a token
is the log of the members' mean probability, logsumexp over members - log n; its attention is the members' mean.
The c best tokens are chosen after the averaging. numpy only, no torch.
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterator, Sequence

import numpy as np

from seq2seq.data.encoding import Example
from seq2seq.decode.backend import Backend, Step, best_of


def mean_log_probs(log_probs: np.ndarray) -> np.ndarray:
    """(n, R, V) members' log-probabilities -> (R, V) the log of their mean probability (logsumexp - log n)."""
    peak = log_probs.max(axis=0)  # (R, V)
    peak = np.where(np.isfinite(peak), peak, np.float32(0.0))  # a token all members rule out stays -inf
    with np.errstate(divide="ignore"):
        total = np.log(np.exp(log_probs - peak).sum(axis=0))
    return (peak + total - np.float32(np.log(len(log_probs)))).astype(np.float32)


class Ensemble:
    """The members (Backends of one target vocabulary) decoding as one model. memory and state: a tuple, a member each."""

    def __init__(self, members: Sequence[Backend]):
        assert len(members) > 1 and len({m.vocab_size for m in members}) == 1
        self.members = tuple(members)
        self.vocab_size = members[0].vocab_size

    @contextlib.contextmanager
    def decoding(self) -> Iterator[None]:
        with contextlib.ExitStack() as stack:
            for m in self.members:
                stack.enter_context(m.decoding())
            yield

    def encode(self, src: np.ndarray, src_lengths: np.ndarray) -> tuple[tuple[Any, ...], tuple[Any, ...]]:
        encoded = [m.encode(src, src_lengths) for m in self.members]
        return tuple(memory for memory, _ in encoded), tuple(state for _, state in encoded)

    def log_probs(self, prev: np.ndarray, memory: tuple[Any, ...], state: tuple[Any, ...]) -> tuple[np.ndarray, np.ndarray, tuple[Any, ...]]:
        steps = [m.log_probs(prev, mem, st) for m, mem, st in zip(self.members, memory, state)]
        log_probs = mean_log_probs(np.stack([lp for lp, _, _ in steps]))  # (R, V)
        attention = np.mean([att for _, att, _ in steps], axis=0, dtype=np.float32)  # (R, S)
        return log_probs, attention, tuple(st for _, _, st in steps)

    def step(
        self, prev: np.ndarray, memory: tuple[Any, ...], state: tuple[Any, ...], c: int, ban_eos: bool,
        base: np.ndarray | None, width: int,
    ) -> Step:
        log_probs, attention, new_state = self.log_probs(prev, memory, state)
        return Step(*best_of(log_probs, c, ban_eos, base, width), attention, new_state)

    def take(self, memory: tuple[Any, ...], rows: np.ndarray) -> tuple[Any, ...]:
        return tuple(m.take(mem, rows) for m, mem in zip(self.members, memory))

    def take_state(self, state: tuple[Any, ...], rows: np.ndarray) -> tuple[Any, ...]:
        return tuple(m.take_state(st, rows) for m, st in zip(self.members, state))

    def loss(self, examples: Sequence[Example], batch_size: int) -> None:
        return None  # a loss of the mean distribution is not computed (members' teacher-forced passes differ in kind)
