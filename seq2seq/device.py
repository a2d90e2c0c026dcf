"""Where and in which precision the model runs: `device: auto` picks CUDA when present."""

from __future__ import annotations

import contextlib
from typing import ContextManager

import torch

from seq2seq.errors import ConfigError


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("train.device: 'cuda' was asked for but no CUDA device is available (use auto or cpu)")
    return torch.device(name)


def resolve_precision(name: str, device: torch.device) -> str:
    """`auto` means bf16 on CUDA and fp32 on the CPU."""
    if name == "auto":
        return "bf16" if device.type == "cuda" else "fp32"
    return name


def autocast(device: torch.device, precision: str) -> ContextManager[object]:
    """bf16 autocast for matmuls; the loss is always computed in fp32 (see loss.py)."""
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()
