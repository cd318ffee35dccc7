"""Cheap facts about this machine (no torch import): which device and dtype to default to.

bf16 is the right precision on GPUs and on CPUs with native bf16 (AMX, AVX-512 BF16),
where it is several times faster than fp32. On other CPUs (e.g. AVX2-only) PyTorch falls
back to a scalar bf16 convolution that is ~100× slower than fp32, so fp32 is the default there.
"""
from __future__ import annotations

import functools
import os
import platform
import sys


@functools.lru_cache(maxsize=None)
def cpu_flags() -> frozenset:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as handle:
            for line in handle:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def onednn_limits_bf16() -> bool:
    """True when ``ONEDNN_MAX_CPU_ISA`` caps oneDNN below its bf16 instructions (e.g. AVX2, to measure how
    an AVX2-only CPU fares): bf16 is then emulated, so the CPU counts as one without native bf16."""
    isa = os.environ.get("ONEDNN_MAX_CPU_ISA", "").strip().upper()
    return bool(isa) and isa not in ("ALL", "DEFAULT") and not any(k in isa for k in ("BF16", "AMX", "FP16", "AVX10"))


def cpu_has_native_bf16() -> bool:
    if onednn_limits_bf16():
        return False
    flags = cpu_flags()
    if sys.platform == "darwin" and platform.machine() == "arm64":
        return True  # Apple silicon (M2 and later) has bf16 instructions
    return bool(flags & {"avx512_bf16", "amx_bf16"})


def gpu_likely_present() -> bool:
    """True when an NVIDIA driver or Apple GPU is visible, without importing torch."""
    if os.environ.get("CUDA_VISIBLE_DEVICES", None) in ("", "-1"):
        return False
    if os.path.exists("/proc/driver/nvidia/version") or os.path.exists("/dev/nvidiactl"):
        return True
    return sys.platform == "darwin" and platform.machine() == "arm64"


def default_dtype(device: str | None) -> str:
    """bf16 on accelerators and bf16-capable CPUs, else fp32."""
    if device in (None, "auto"):
        on_cpu = not gpu_likely_present()
    else:
        on_cpu = device == "cpu"
    if on_cpu and not cpu_has_native_bf16():
        return "fp32"
    return "bf16"


DEVICES = "auto, cpu, cuda, cuda:N (N: a GPU's index) or mps"


def check_device(device: str | None) -> str | None:
    """``device`` as given when it names a device this machine can have, else a UserError naming
    the valid values — checked before anything loads (CLI, config, Python API, the app). Cheap:
    no torch import, so a GPU the driver files show is taken on trust."""
    from .errors import UserError

    if device is None or device == "auto":
        return device
    text = str(device)
    kind, _, index = text.partition(":")
    if kind not in ("cpu", "cuda", "mps") or (index and (kind != "cuda" or not index.isdigit())):
        hint = f" (did you mean {text.lower()}?)" if text.lower() in ("cpu", "cuda", "mps") else ""
        raise UserError(f"device {text!r} is not a device{hint}: use {DEVICES}")
    if kind == "mps" and not (sys.platform == "darwin" and platform.machine() == "arm64"):
        raise UserError(f"device 'mps' is Apple silicon's GPU, which this machine does not have: use {DEVICES}")
    if kind == "cuda" and not (gpu_likely_present() or os.path.exists("/dev/dxg")):  # /dev/dxg: WSL's GPU
        raise UserError(f"device {text!r}: no NVIDIA GPU is visible here (no driver in /proc/driver/nvidia, or "
                        f"CUDA_VISIBLE_DEVICES hides it): use cpu or auto")
    return text
