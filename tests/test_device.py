"""seq2seq/device.py: precision chosen from the hardware, the emulated-bf16 warning, the capability report; and
oneDNN's cache cap set before torch loads (seq2seq/__init__.py), for every way of starting seq2seq."""

from __future__ import annotations

import logging
import os
import subprocess
import sys

import pytest
import torch

from seq2seq import device as dev
from tests.conftest import ROOT

AVX2_CPU = {"cpu_name": "AMD EPYC", "capability": "AVX2", "avx2": True, "avx512_bf16": False, "amx_bf16": False}
AVX512_EMULATING_CPU = {"cpu_name": "Intel Xeon (Cascade Lake)", "capability": "AVX512", "avx512_f": True, "avx512_bf16": False, "amx_bf16": False}
AVX512_BF16_CPU = {"cpu_name": "AMD EPYC (Genoa)", "capability": "AVX512", "avx512_f": True, "avx512_bf16": True, "amx_bf16": False}
AMX_CPU = {"cpu_name": "Intel Xeon (Sapphire Rapids)", "capability": "AVX512", "avx512_bf16": True, "amx_bf16": True}
CPU = torch.device("cpu")


@pytest.mark.parametrize(
    "caps, expected",
    [(AVX2_CPU, "fp32"), (AVX512_EMULATING_CPU, "fp32"), (AVX512_BF16_CPU, "bf16"), (AMX_CPU, "bf16")],
    ids=["avx2", "avx512-without-bf16", "avx512-bf16", "amx"],
)
def test_auto_precision_follows_the_cpus_native_bf16(caps, expected) -> None:
    choice = dev.choose_precision("auto", CPU, caps)
    assert choice.precision == expected
    assert caps["cpu_name"] in choice.reason and caps["capability"] in choice.reason
    assert ("no native bf16" in choice.reason) == (expected == "fp32")


def test_an_explicit_precision_is_kept_whatever_the_cpu() -> None:
    assert dev.choose_precision("bf16", CPU, AVX2_CPU).precision == "bf16"
    assert "emulated" in dev.choose_precision("bf16", CPU, AVX2_CPU).reason
    assert dev.choose_precision("fp32", CPU, AMX_CPU).precision == "fp32"


@pytest.mark.parametrize(
    "caps, parameters, expected",
    [
        (AMX_CPU, 480_000, "fp32"), (AVX512_BF16_CPU, dev.SMALL_DECODE_PARAMETERS - 1, "fp32"),
        (AVX512_BF16_CPU, dev.SMALL_DECODE_PARAMETERS, "bf16"), (AMX_CPU, 15_000_000, "bf16"), (AVX2_CPU, 15_000_000, "fp32"),
    ],
    ids=["small-amx", "just-below", "at-the-line", "large-amx", "large-avx2"],
)
def test_auto_decodes_a_small_model_in_fp32_on_a_cpu(caps, parameters, expected) -> None:
    choice = dev.choose_decoding_precision("auto", CPU, parameters, caps)
    assert choice.precision == expected
    assert caps["cpu_name"] in choice.reason
    assert ("parameters decodes faster in fp32" in choice.reason) == (expected == "fp32" and caps is not AVX2_CPU)


def test_an_explicit_decoding_precision_is_kept_whatever_the_size(monkeypatch) -> None:
    assert dev.choose_decoding_precision("bf16", CPU, 1_000, AMX_CPU).precision == "bf16"
    assert dev.choose_decoding_precision("fp32", CPU, 100_000_000, AMX_CPU).precision == "fp32"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a, **k: "Fake GPU")
    assert dev.choose_decoding_precision("auto", torch.device("cuda"), 1_000, AVX2_CPU).precision == "bf16"  # a GPU: no rule


@pytest.mark.parametrize("supported, expected", [(True, "bf16"), (False, "fp32")])
def test_auto_precision_on_cuda_asks_the_device(monkeypatch, supported, expected) -> None:
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: supported)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a, **k: "Fake GPU")
    choice = dev.choose_precision("auto", torch.device("cuda"), AVX2_CPU)
    assert choice.precision == expected and "Fake GPU" in choice.reason


def test_the_capability_report_names_the_cpu_and_its_bf16_features() -> None:
    caps = dev.cpu_capabilities()
    assert caps["capability"] == torch.backends.cpu.get_cpu_capability()
    assert isinstance(caps["cpu_name"], str) and caps["cpu_name"]
    assert all(isinstance(caps[f], bool) for f in dev.NATIVE_BF16_FEATURES)
    # /proc/cpuinfo (the fallback) and torch agree on this machine's bf16 features
    flags = dev._cpuinfo_flags()
    if flags:
        assert all(bool(flags.get(f)) == caps[f] for f in dev.NATIVE_BF16_FEATURES)


def test_explicit_bf16_on_an_emulating_cpu_warns_once(monkeypatch, caplog) -> None:
    monkeypatch.setattr(dev, "cpu_capabilities", lambda: AVX2_CPU)
    dev._warn_emulated_bf16.cache_clear()
    with caplog.at_level(logging.WARNING, logger="seq2seq"):
        assert dev.resolve_precision("bf16", CPU) == "bf16"
        assert dev.resolve_precision("bf16", CPU) == "bf16"
        assert dev.resolve_precision("auto", CPU) == "fp32"
    warnings = [r.getMessage() for r in caplog.records if "emulated" in r.getMessage()]
    assert len(warnings) == 1 and "AVX2" in warnings[0] and "slower than fp32" in warnings[0]
    dev._warn_emulated_bf16.cache_clear()


def test_native_bf16_cpu_gives_no_warning(monkeypatch, caplog) -> None:
    monkeypatch.setattr(dev, "cpu_capabilities", lambda: AMX_CPU)
    dev._warn_emulated_bf16.cache_clear()
    with caplog.at_level(logging.WARNING, logger="seq2seq"):
        assert dev.resolve_precision("bf16", CPU) == "bf16"
    assert not caplog.records


CACHE_VARIABLES = ("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "DNNL_PRIMITIVE_CACHE_CAPACITY", "LRU_CACHE_CAPACITY")


def _cache_env_seen_by_torch(entry: str, env: dict[str, str], variable: str = "ONEDNN_PRIMITIVE_CACHE_CAPACITY") -> str:
    """Run `entry` in a fresh interpreter; report `variable` as it stood when torch was first imported.

    The interpreter ends right there: what torch would read is known, and loading it would only cost seconds."""
    probe = (
        "import builtins, os, sys\n"
        "real = builtins.__import__\n"
        "def spy(name, *a, **k):\n"
        "    if name == 'torch' and 'torch' not in sys.modules:\n"
        f"        print('AT_TORCH_IMPORT', os.environ.get({variable!r}), flush=True)\n"
        "        os._exit(0)\n"
        "    return real(name, *a, **k)\n"
        "builtins.__import__ = spy\n"
        f"{entry}\n"
    )
    base = {k: v for k, v in os.environ.items() if k not in CACHE_VARIABLES}
    proc = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=120,
        env={**base, **env, "PYTHONPATH": str(ROOT)}, cwd=ROOT,
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("AT_TORCH_IMPORT")]
    assert lines, (proc.stdout, proc.stderr)
    return lines[0].split(" ", 1)[1]


@pytest.mark.parametrize(
    "entry",
    [
        "import seq2seq.model.network",
        "import sys; sys.argv = ['seq2seq', 'info', '--model', 'nowhere']\nfrom seq2seq.cli.app import main\ntry: main()\nexcept SystemExit: pass",
        "import runpy, sys; sys.argv = ['seq2seq', 'info', '--model', 'nowhere']\ntry: runpy.run_module('seq2seq', run_name='__main__')\nexcept SystemExit: pass",
    ],
    ids=["import", "console-script", "python-m"],
)
def test_the_cpu_cache_caps_are_set_before_torch_loads(entry) -> None:
    from seq2seq import IDEEP_CACHE_CAPACITY, ONEDNN_CACHE_CAPACITY

    assert _cache_env_seen_by_torch(entry, {}) == ONEDNN_CACHE_CAPACITY
    assert _cache_env_seen_by_torch(entry, {}, "LRU_CACHE_CAPACITY") == IDEEP_CACHE_CAPACITY


def test_a_cache_capacity_the_user_set_is_kept() -> None:
    assert _cache_env_seen_by_torch("import seq2seq.model.network", {"ONEDNN_PRIMITIVE_CACHE_CAPACITY": "300"}) == "300"
    assert _cache_env_seen_by_torch("import seq2seq.model.network", {"DNNL_PRIMITIVE_CACHE_CAPACITY": "5"}) == "None"
    assert _cache_env_seen_by_torch("import seq2seq.model.network", {"LRU_CACHE_CAPACITY": "64"}, "LRU_CACHE_CAPACITY") == "64"


@pytest.mark.parametrize(
    "cap, expected",
    [("AVX2", "fp32"), ("avx512_core", "fp32"), ("AVX512_CORE_VNNI", "fp32"), ("AVX512_CORE_BF16", "bf16"), ("ALL", "bf16"), ("NONSENSE", "bf16")],
)
def test_auto_precision_respects_a_onednn_isa_cap(cap, expected) -> None:
    """oneDNN runs the bf16 matmuls: capped below AVX512_CORE_BF16 it emulates them, so `auto` must give fp32."""
    caps = {**AVX512_BF16_CPU, "onednn_isa_cap": cap.upper()}
    choice = dev.choose_precision("auto", CPU, caps)
    assert choice.precision == expected
    if expected == "fp32":
        assert "ONEDNN_MAX_CPU_ISA" in choice.reason and "no native bf16" in choice.reason


def test_the_isa_cap_is_read_from_the_environment(monkeypatch) -> None:
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "avx2")
    dev.cpu_capabilities.cache_clear()
    try:
        assert dev.cpu_capabilities()["onednn_isa_cap"] == "AVX2"
        assert not dev.cpu_has_native_bf16()
    finally:
        monkeypatch.delenv("ONEDNN_MAX_CPU_ISA")
        dev.cpu_capabilities.cache_clear()
    assert "onednn_isa_cap" not in dev.cpu_capabilities()
