"""The torch model as a search Backend (decode/backend), and a checkpoint opened for decoding.

A search runs inside `decoding()`: inference mode and the model's precision (bf16 autocast or none), entered once
for the whole search (a step of a small model is ~0.1 ms, and leaving autocast drops its cast weights); log-softmax is taken in fp32,
and the c best continuations of each sentence's beams are chosen by torch (one topk over the sentence's width * V
candidates: on 640 rows of 197 tokens 3x faster than a topk per row), so only (R / width, c) values leave the device
per step. On the CPU `.numpy()` shares the tensors' memory: the search reads them without a copy.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch

from seq2seq.config import Config
from seq2seq.config import replace as config_replace
from seq2seq.data.batch import collate
from seq2seq.data.encoding import Encoder, Example
from seq2seq.data.vocab import EOS
from seq2seq.decode.backend import Loaded, Step, recorded_best
from seq2seq.device import autocast, resolve_decoding_precision, resolve_device
from seq2seq.errors import CheckpointError
from seq2seq.model.checkpoint import Checkpoint
from seq2seq.model.loss import masked_nll
from seq2seq.model.network import EncoderOutput, Seq2Seq, count_parameters
from seq2seq.model.quantize import quantization_of


class TorchBackend:
    """`model` (in eval mode) on `device`, decoding under `precision`'s autocast. memory: the EncoderOutput; state:
    the decoder's hidden state (L, R, H)."""

    def __init__(self, model: Seq2Seq, device: torch.device, precision: str):
        self.model, self.device, self.precision = model, device, precision
        self.vocab_size = model.output.out_features
        self.on_cpu = device.type == "cpu"  # a decoding step is ~0.1 ms on a small model: its fixed costs are paid once

    def _rows(self, rows: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(rows) if self.on_cpu else torch.from_numpy(rows).to(self.device)

    def _numpy(self, x: torch.Tensor) -> np.ndarray:
        return x.numpy() if self.on_cpu else x.cpu().numpy()

    @contextlib.contextmanager
    def decoding(self) -> Iterator[None]:
        # bf16: no_grad, not inference mode, in which autocast casts every weight again at every call (its cache of cast
        # weights holds only for tensors outside inference mode): 2-3x slower steps on a small model.
        with torch.inference_mode() if self.precision == "fp32" else torch.no_grad(), autocast(self.device, self.precision):
            yield

    def encode(self, src: np.ndarray, src_lengths: np.ndarray) -> tuple[EncoderOutput, torch.Tensor]:
        enc = self.model.encode(self._rows(src), self._rows(src_lengths))
        return enc, enc.hidden

    def _step(self, prev: np.ndarray, memory: EncoderOutput, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        logits, hidden, weights = self.model.decode_step(self._rows(prev), memory, state)  # (R, V), (L, R, H), (R, S)
        return torch.log_softmax(logits.float(), dim=-1), weights.float(), hidden  # float32, whatever the weights

    def log_probs(self, prev: np.ndarray, memory: EncoderOutput, state: torch.Tensor) -> tuple[np.ndarray, np.ndarray, torch.Tensor]:
        log_probs, weights, hidden = self._step(prev, memory, state)
        return self._numpy(log_probs), self._numpy(weights), hidden

    def step(
        self, prev: np.ndarray, memory: EncoderOutput, state: torch.Tensor, c: int, ban_eos: bool, base: np.ndarray | None,
        width: int,
    ) -> Step:
        log_probs, weights, hidden = self._step(prev, memory, state)  # (R, V)
        if ban_eos:
            log_probs[:, EOS] = float("-inf")
        candidates = log_probs if base is None else self._rows(base)[:, None] + log_probs
        candidates = candidates.view(-1, width * log_probs.size(1))  # (R / width, width * V): one topk over a sentence's beams
        scores, index = candidates.max(dim=-1, keepdim=True) if c == 1 else candidates.topk(c, dim=-1)  # (G, c)
        return Step(self._numpy(scores), self._numpy(index), self._numpy(weights), hidden)

    def take(self, memory: EncoderOutput, rows: np.ndarray) -> EncoderOutput:
        return memory.select(self._rows(rows))

    def take_state(self, state: torch.Tensor, rows: np.ndarray) -> torch.Tensor:
        return state[:, self._rows(rows)]

    def loss(self, examples: Sequence[Example], batch_size: int) -> tuple[float, int]:
        return corpus_loss(self.model, examples, self.device, self.precision, batch_size)


@torch.inference_mode()
def corpus_loss(
    model: Seq2Seq, examples: Sequence[Example], device: torch.device, precision: str, batch_size: int
) -> tuple[float, int]:
    """Teacher-forced summed NLL over real target tokens and their count (no label smoothing)."""
    was_training = model.training
    model.eval()
    order = sorted(range(len(examples)), key=lambda i: len(examples[i][1]))
    total, n_tokens = 0.0, 0
    for start in range(0, len(order), batch_size):
        batch = collate([examples[i] for i in order[start : start + batch_size]]).to(device)
        with autocast(device, precision):
            logits = model(batch.src, batch.src_lengths, batch.tgt_in)
        loss_sum, n = masked_nll(logits, batch.tgt_out)
        total += float(loss_sum)
        n_tokens += n
    model.train(was_training)
    return total, n_tokens


def check_finite(ckpt: Checkpoint) -> None:
    """Refuse weights holding NaN or infinity (a run that diverged): every output would be empty, every score NaN.

    A sum per tensor screens them (4 ms for 66 MB of weights, against 60 ms for `isfinite` over every
    element); only a tensor whose sum is not finite is looked at element by element, so huge finite
    weights whose sum overflows are not mistaken for broken ones.
    """
    for name, weight in ckpt.weights.items():
        if weight.is_floating_point() and not torch.isfinite(weight.sum()) and not bool(torch.isfinite(weight).all()):
            where = ckpt.path if ckpt.path is not None else "checkpoint"
            raise CheckpointError(f"{where}: weights {name} hold NaN or infinite values (the training diverged?): it cannot translate")


def open_checkpoint(ckpt: Checkpoint, device: str, precision: str | None, quantize: str | None = None) -> Loaded:
    """A checkpoint ready to decode. `device`: auto, cpu or cuda (auto is the CPU with int8 weights, which run there
    only); `precision` None: the checkpoint's train.precision, resolved for the device and the model's size
    (device.choose_decoding_precision); `quantize` None: the
    checkpoint's decode.quantize (none | int8: int8 weights on the CPU, decoding in fp32)."""
    cfg = ckpt.config
    if quantize is not None and quantize != cfg.decode.quantize:
        cfg = config_replace(cfg, "decode", quantize=quantize)
    dev = resolve_device("cpu" if device == "auto" and cfg.decode.quantize != "none" else device)
    check_finite(ckpt)
    net = ckpt.build_model().to(dev).eval()
    parameters = count_parameters(net)
    if cfg.decode.quantize != "none":
        from seq2seq.model.quantize import quantize_for_decoding

        net = quantize_for_decoding(net, cfg.decode.quantize, dev)
        precision = "fp32"  # int8 matmuls with fp32 activations; bf16 autocast has nothing left to do
    prec = resolve_decoding_precision(precision or cfg.train.precision, dev, parameters)
    src, tgt = Encoder(ckpt.src_tokenizer, ckpt.src_vocab), Encoder(ckpt.tgt_tokenizer, ckpt.tgt_vocab)
    loaded = loaded_model(net, cfg, src, tgt, dev, prec, ckpt.path or Path("checkpoint"))
    return loaded._replace(step=ckpt.step, best=recorded_best(ckpt.scores, cfg.train.metric))


def loaded_model(
    model: Seq2Seq, cfg: Config, src: Encoder, tgt: Encoder, device: torch.device, precision: str, path: Path = Path("model")
) -> Loaded:
    """A model in memory (in eval mode; validation during training passes the one it trains) as a Loaded model, for
    `Translator.of`: it decodes with `cfg.decode` under `precision`, and is not copied."""
    return Loaded(TorchBackend(model, device, precision), cfg, src, tgt, path, "checkpoint", str(device), precision, quantization_of(model))

