"""What the search decodes with: the Backend protocol (encode, step, take), a step's result, and a model opened.

Three kinds serve it: the torch model (decode/torch_backend), an export's ONNX graphs (decode/onnx_backend) and an
ensemble of either (decode/ensemble). The search (decode/search) and the Translator (decode/translator) know only
this protocol, so they never ask which one they hold. No torch here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ContextManager, NamedTuple, Protocol, Sequence

import numpy as np

from seq2seq.config import Config
from seq2seq.data.encoding import Encoder, Example
from seq2seq.data.vocab import EOS


class Step(NamedTuple):
    """One decoding step of R rows in groups of `width` (a sentence's beams): each group's c best continuations by
    the row's score so far plus the next token's log-probability, best first."""

    scores: np.ndarray  # (R / width, c) float32 those sums
    index: np.ndarray  # (R / width, c) int64: row within the group * V + token
    attention: np.ndarray  # (R, S) float32 this step's attention weights
    state: Any  # the decoder's state after the step, the backend's own type


class Backend(Protocol):
    """A model as the search sees it. `memory` (the encoder's rows) and `state` (the decoder's) are the backend's own
    types; the search keeps them whole and asks the backend to keep some of their rows (`take`, `take_state`)."""

    vocab_size: int  # target vocabulary

    def decoding(self) -> ContextManager[Any]:
        """The context one search runs its encode, steps and takes in, entered once per search, not once a step (the
        torch model: inference mode and its precision's autocast, whose cast weights it then keeps for every step)."""
        ...

    def encode(self, src: np.ndarray, src_lengths: np.ndarray) -> tuple[Any, Any]:
        """src (B, S), src_lengths (B,) int64 -> (memory, the decoder's first state), B rows each."""
        ...

    def log_probs(self, prev: np.ndarray, memory: Any, state: Any) -> tuple[np.ndarray, np.ndarray, Any]:
        """prev (R,) int64 -> log-probabilities (R, V) float32, attention (R, S) float32, the new state."""
        ...

    def step(self, prev: np.ndarray, memory: Any, state: Any, c: int, ban_eos: bool, base: np.ndarray | None, width: int) -> Step:
        """After `prev` (R,), the c best continuations of each group of `width` rows, scored `base` (R,) float32 (None:
        0) plus the token's log-probability; `ban_eos`: <eos> is none of them (before min_len)."""
        ...

    def take(self, memory: Any, rows: np.ndarray) -> Any:
        """Keep the memory's rows `rows` (1-D int64, repeats allowed)."""
        ...

    def take_state(self, state: Any, rows: np.ndarray) -> Any:
        """Keep the decoder state's rows `rows`."""
        ...

    def loss(self, examples: Sequence[Example], batch_size: int) -> tuple[float, int] | None:
        """Teacher-forced summed NLL over the real target tokens and their number; None where the backend has no
        training graph (an export, an ensemble)."""
        ...


def best_of(log_probs: np.ndarray, c: int, ban_eos: bool, base: np.ndarray | None, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Backend.step's choice in numpy: log_probs (R, V) -> Step.scores and Step.index, (R / width, c) each.
    `ban_eos` sets <eos> to -inf first, in place."""
    if ban_eos:
        log_probs[:, EOS] = -np.inf
    candidates = log_probs if base is None else base[:, None] + log_probs  # (R, V)
    candidates = candidates.reshape(-1, width * log_probs.shape[1])  # (R / width, width * V)
    if c == 1:
        index = candidates.argmax(axis=1)  # (G,)
        return candidates[np.arange(len(index)), index][:, None], index[:, None]
    return top(candidates, c)


SORT_BELOW = 256  # rows of fewer values are sorted whole: one argsort is cheaper than a partition and a sort


def top(values: np.ndarray, c: int) -> tuple[np.ndarray, np.ndarray]:
    """The `c` largest values per row of `values` (R, N) and their indices, largest first. Indexing with arrays, not
    np.take_along_axis, which costs ~10 us a call: a beam step makes several of these calls on small arrays."""
    rows = np.arange(values.shape[0])[:, None]  # (R, 1)
    if values.shape[1] < SORT_BELOW or c >= values.shape[1]:
        index = np.argsort(-values, axis=1, kind="stable")[:, :c]
        return values[rows, index], index
    index = np.argpartition(-values, c - 1, axis=1)[:, :c]
    found = values[rows, index]
    order = np.argsort(-found, axis=1, kind="stable")
    return found[rows, order], index[rows, order]


class Loaded(NamedTuple):
    """One model opened for decoding (a checkpoint or an export): its backend, config, text sides and origin."""

    backend: Backend
    cfg: Config  # its decode section gives the decoding defaults
    src: Encoder
    tgt: Encoder
    path: Path  # the checkpoint file or the export directory
    kind: str  # checkpoint | export
    device: str  # cpu, cuda, ...
    precision: str  # fp32 | bf16: the autocast it decodes under (exports and int8: fp32)
    quantize: str  # none | int8, as it runs
    step: int | None = None  # updates it was trained for, when known
    best: float | None = None  # its best validation score of train.metric (cfg.train.metric), when known


def recorded_best(scores: dict[str, Any] | None, metric: str) -> float | None:
    """The score of train.metric `metric` in a validation record (a checkpoint's or an export's), when it holds one."""
    best = (scores or {}).get(f"val_{metric}")
    return best if isinstance(best, (int, float)) else None
