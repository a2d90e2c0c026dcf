"""int8 weights for CPU decoding (`decode.quantize: int8`, `translate/eval/serve --quantize int8`).

Applied when a checkpoint is loaded for decoding, never saved: the checkpoint format does not change. The
weights of the linear layers (the output projection over the vocabulary, the pre-output, the attention
projections, the bridge) and of the GRUs that run as nn.GRU calls become int8, with activations quantized on
the fly per batch (PyTorch's dynamic quantization, fbgemm kernels on x86). Decoding only: quantized modules
have no gradients.

PyTorch 2.13 marks `torch.ao.quantization` as deprecated (its replacement, torchao, quantizes linear layers
but not GRUs, and targets GPUs). The deprecation notices are ours to handle, not the user's: they are silenced
here, around the one call, and nowhere else.
"""

from __future__ import annotations

import warnings

import torch
from torch import nn

from seq2seq.config import choices
from seq2seq.errors import ConfigError

QUANTIZE_CHOICES = choices("decode", "quantize")


def quantize_for_decoding(model: nn.Module, mode: str, device: torch.device) -> nn.Module:
    """`model` with int8 weights (`mode` int8), or `model` itself (`mode` none). CPU only; eval mode."""
    if mode not in QUANTIZE_CHOICES:
        raise ConfigError(f"decode.quantize: {mode!r} is not one of {', '.join(QUANTIZE_CHOICES)}")
    if mode == "none":
        return model
    if device.type != "cpu":
        raise ConfigError(f"decode.quantize: int8 runs on the CPU only, not on {device.type} (use decode.quantize: none)")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*torch\.ao\.quantization is deprecated.*")
        warnings.filterwarnings("ignore", message=r".*quantize_per_tensor.*deprecated.*")
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        from torch.ao.quantization import quantize_dynamic

        return quantize_dynamic(model.eval(), {nn.Linear, nn.GRU}, dtype=torch.qint8)


def quantization_of(model: nn.Module) -> str:
    """The decode.quantize choice `model` runs with: int8 when any of its modules is dynamically quantized, else none.

    Read from the modules themselves, not from a config, so that a report names what actually ran.
    """
    quantized = any(type(m).__module__.startswith("torch.ao.nn.quantized") for m in model.modules())
    return "int8" if quantized else "none"
