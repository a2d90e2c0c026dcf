"""Where and in which precision the model runs.

`device: auto` picks CUDA when present. `precision: auto` picks bf16 only where the hardware runs it natively:
on a CUDA device that supports it, or on a CPU with AVX512_BF16 or AMX-BF16, as torch's own capability report
says. Elsewhere bf16 matmuls fall back to an emulated kernel (about 100x slower than fp32 on an AVX2 CPU), so
`auto` picks fp32 there, and an explicit `bf16` warns once. Decoding under `auto` (translate, eval, serve, validation)
takes fp32 on a CPU for a model below SMALL_DECODE_PARAMETERS, which decodes faster so (`choose_decoding_precision`).
oneDNN runs the bf16 matmuls, so a user who caps its instruction set (`ONEDNN_MAX_CPU_ISA`, or the older
`DNNL_MAX_CPU_ISA`) below AVX512_CORE_BF16 gets the emulated kernel even on a native-bf16 CPU: `auto` reads the cap
and picks fp32 there too.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import functools
import logging
import os
from typing import Any, ContextManager, NamedTuple

import torch

from seq2seq.errors import ConfigError

log = logging.getLogger("seq2seq")

NATIVE_BF16_FEATURES = ("avx512_bf16", "amx_bf16")  # CPU features with bf16 matmul instructions

# oneDNN's ISA names in its own order (oneDNN's `cpu_isa_t`, dnnl_cpu_isa_*); AVX512_CORE_BF16 is the first with bf16
# dot products. A cap below it means oneDNN emulates bf16 whatever the CPU has.
ONEDNN_ISAS = (
    "SSE41", "AVX", "AVX2", "AVX2_VNNI", "AVX2_VNNI_2", "AVX512_CORE", "AVX512_CORE_VNNI", "AVX512_CORE_BF16",
    "AVX10_1_512", "AVX512_CORE_FP16", "AVX10_1_512_AMX", "AVX512_CORE_AMX", "AVX10_1_512_AMX_FP16",
    "AVX512_CORE_AMX_FP16", "AVX10_2_512", "AVX10_2_512_AMX_2", "DEFAULT", "ALL",
)
ISA_CAP_VARIABLES = ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA")


def resolve_device(name: str) -> torch.device:
    """`auto`: CUDA when present, else the CPU."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("train.device: 'cuda' was asked for but no CUDA device is available (use auto or cpu)")
    return torch.device(name)


@functools.cache
def cpu_capabilities() -> dict[str, Any]:
    """torch's report of this CPU: `torch.cpu.get_capabilities()` where torch has it, else /proc/cpuinfo's flags.

    Always holds `cpu_name`, `capability` (the kernels torch dispatches to, e.g. AVX2 or AVX512) and one bool
    per feature in NATIVE_BF16_FEATURES.
    """
    report: dict[str, Any] = {}
    get = getattr(torch.cpu, "get_capabilities", None)
    if get is not None:
        try:
            report = dict(get())
        except RuntimeError:
            report = {}
    if not report:
        report = _cpuinfo_flags()
    report.setdefault("cpu_name", "unknown CPU")
    report["capability"] = torch.backends.cpu.get_cpu_capability()
    for feature in NATIVE_BF16_FEATURES:
        report[feature] = bool(report.get(feature, False))
    cap = next((os.environ[v].strip().upper() for v in ISA_CAP_VARIABLES if os.environ.get(v, "").strip()), None)
    if cap is not None:
        report["onednn_isa_cap"] = cap
    return report


def isa_cap_blocks_bf16(capabilities: dict[str, Any]) -> bool:
    """True when `onednn_isa_cap` (from ONEDNN_MAX_CPU_ISA) is an ISA below AVX512_CORE_BF16; an unknown name caps nothing."""
    cap = capabilities.get("onednn_isa_cap")
    if cap not in ONEDNN_ISAS:
        return False
    return ONEDNN_ISAS.index(cap) < ONEDNN_ISAS.index("AVX512_CORE_BF16")


def _cpuinfo_flags() -> dict[str, Any]:
    """The first processor's model name and flags from /proc/cpuinfo (Linux); {} elsewhere."""
    try:
        text = open("/proc/cpuinfo", encoding="utf-8", errors="replace").read()
    except OSError:
        return {}
    report: dict[str, Any] = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name" and "cpu_name" not in report:
            report["cpu_name"] = value.strip()
        elif key == "flags" and "flags" not in report:
            report["flags"] = True
            report.update({flag: True for flag in value.split()})
    report.pop("flags", None)
    return report


def cpu_has_native_bf16(capabilities: dict[str, Any] | None = None) -> bool:
    """The CPU has a bf16 matmul feature and oneDNN is allowed to use it."""
    caps = cpu_capabilities() if capabilities is None else capabilities
    return any(caps.get(feature) for feature in NATIVE_BF16_FEATURES) and not isa_cap_blocks_bf16(caps)


def describe_cpu(capabilities: dict[str, Any] | None = None) -> str:
    """One line, e.g. `AMD EPYC, torch kernels AVX2, no native bf16 (no avx512_bf16, amx_bf16)`."""
    caps = cpu_capabilities() if capabilities is None else capabilities
    native = [f for f in NATIVE_BF16_FEATURES if caps.get(f)]
    bf16 = f"native bf16 ({', '.join(native)})" if native else f"no native bf16 (no {', '.join(NATIVE_BF16_FEATURES)})"
    if native and isa_cap_blocks_bf16(caps):
        bf16 = f"no native bf16 (the CPU has {', '.join(native)} but ONEDNN_MAX_CPU_ISA={caps['onednn_isa_cap']} caps oneDNN below AVX512_CORE_BF16)"
    return f"{caps.get('cpu_name', 'unknown CPU')}, torch kernels {caps.get('capability', '?')}, {bf16}"


class PrecisionChoice(NamedTuple):
    precision: str  # fp32 | bf16
    reason: str  # why, for the training log, `info` and `bench`


def choose_precision(name: str, device: torch.device, capabilities: dict[str, Any] | None = None) -> PrecisionChoice:
    """The precision `name` (auto | fp32 | bf16) stands for on `device`, and why."""
    if device.type == "cuda":
        native = torch.cuda.is_bf16_supported()
        where = f"CUDA device {torch.cuda.get_device_name(device)}"
        if name == "auto":
            return PrecisionChoice("bf16", f"auto: {where} supports bf16") if native else PrecisionChoice(
                "fp32", f"auto: {where} has no bf16 support"
            )
        return PrecisionChoice(name, f"{name} as configured on {where}")
    caps = cpu_capabilities() if capabilities is None else capabilities
    native = cpu_has_native_bf16(caps)
    cpu = describe_cpu(caps)
    if name == "auto":
        return PrecisionChoice("bf16" if native else "fp32", f"auto: {cpu}")
    if name == "bf16" and not native:
        return PrecisionChoice("bf16", f"bf16 as configured, but the CPU has {cpu.split(', ', 2)[-1]}: emulated, far slower than fp32")
    return PrecisionChoice(name, f"{name} as configured ({cpu})")


# `auto` decodes a model below this size in fp32 on a CPU, native bf16 or not: at the batch sizes of decoding, bf16
# autocast's casts of every weight at every call cost more than its matmuls save on a small model (docs/performance.md,
# 2026-12-08, AVX-512 BF16 EPYC: a 0.48M-parameter G2P model decoded 2.9x faster in fp32 greedy at batch 1 and 1.35x at
# batch 256; a 7.5M-parameter Multi30k model 1.01-1.41x faster in bf16; on an AMX Xeon the 0.5M demo model 2-4x
# faster in fp32). The line lies between the sizes measured.
SMALL_DECODE_PARAMETERS = 4_000_000


def choose_decoding_precision(
    name: str, device: torch.device, parameters: int, capabilities: dict[str, Any] | None = None
) -> PrecisionChoice:
    """The precision a model of `parameters` decodes in on `device` when its train.precision (or --precision) says
    `name`: `choose_precision`'s, except that `auto` decodes a model below SMALL_DECODE_PARAMETERS in fp32 on a CPU."""
    choice = choose_precision(name, device, capabilities)
    if name == "auto" and device.type == "cpu" and choice.precision == "bf16" and parameters < SMALL_DECODE_PARAMETERS:
        return PrecisionChoice(
            "fp32",
            f"auto: a model of {parameters / 1e6:.2f}M parameters decodes faster in fp32 on a CPU "
            f"(bf16 from {SMALL_DECODE_PARAMETERS / 1e6:.0f}M; {choice.reason.removeprefix('auto: ')})",
        )
    return choice


def resolve_decoding_precision(name: str, device: torch.device, parameters: int) -> str:
    """`choose_decoding_precision(name, device, parameters).precision`; an explicit bf16 on an emulating CPU warns once."""
    if name == "bf16" and device.type == "cpu" and not cpu_has_native_bf16():
        _warn_emulated_bf16()
    return choose_decoding_precision(name, device, parameters).precision


def resolve_precision(name: str, device: torch.device) -> str:
    """`choose_precision(name, device).precision`; an explicit bf16 on a CPU without native bf16 warns once."""
    choice = choose_precision(name, device)
    if name == "bf16" and device.type == "cpu" and not cpu_has_native_bf16():
        _warn_emulated_bf16()
    return choice.precision


@functools.cache
def _warn_emulated_bf16() -> None:
    log.warning(
        "warning: precision bf16 on a CPU without native bf16 (%s): bf16 matmuls run in an emulated kernel, "
        "up to ~100x slower than fp32; use precision auto or fp32",
        describe_cpu(),
    )


def autocast(device: torch.device, precision: str) -> ContextManager[object]:
    """bf16 autocast for matmuls; the loss is always computed in fp32 (see model/loss.py)."""
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters (malloc.h)


@functools.cache
def keep_freed_memory() -> bool:
    """Ask glibc's malloc to reuse freed memory for large blocks instead of returning it to the system.

    A process-wide setting, so only the commands that train call it (trainer, bench). By default a block over
    32 MiB (the (tokens x vocabulary) logits, their fp32 copy and gradient) is a fresh mmap every time, and the
    kernel zero-fills each of its pages on first touch: on a 2-core CPU an exp() over a 62 MB tensor took 32 ms
    that way and 7 ms with this. Peak memory stays the same (freed blocks are reused, not added to). Returns
    False where the C library is not glibc; nothing changes there.
    """
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, 1 << 30)) and bool(mallopt(_M_TRIM_THRESHOLD, 1 << 30))
