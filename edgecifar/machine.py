"""What machine this is: the one CPU probe behind every report that names it (export's host line, benchmark's machine block)."""

from __future__ import annotations

import os
import platform

# CPU features that change int8 kernels (onnxruntime's U8S8 path on x86 without VNNI saturates; ARM dot products).
INT8_FEATURES = {"avx2", "avx512f", "avx512_vnni", "avx_vnni", "asimd", "asimddp", "i8mm"}


def _cpuinfo_value(*keys: str) -> str | None:
    """The first /proc/cpuinfo line starting with one of `keys`, after its colon (None off Linux)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith(keys):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def cpu_model() -> str:
    return _cpuinfo_value("model name") or platform.processor() or platform.machine()


def cpu_flags() -> set[str]:
    return set((_cpuinfo_value("flags", "Features") or "").split())


def int8_products_exact(flags=None, arch: str | None = None) -> bool:
    """Whether onnxruntime's fused int8 kernels on this CPU add 8-bit x 8-bit products without saturating.

    ARM (aarch64) accumulates in int32, and x86 with VNNI uses vpdpbusd (int32). x86 without VNNI
    (AVX2, AVX-512 without VNNI) sums pairs of u8 x s8 products in int16 (vpmaddubsw): with 8-bit
    weights that saturates (measured: seed002_m1 lost 7 pp fused on an AVX2 host). Anything else
    is unknown, so it counts as not exact."""
    arch = (arch if arch is not None else platform.machine()).lower()
    if arch in ("aarch64", "arm64"):
        return True
    flags = cpu_flags() if flags is None else set(flags)
    return bool({"avx512_vnni", "avx_vnni"} & flags)


def int8_features() -> list[str]:
    return sorted(INT8_FEATURES & cpu_flags())


def memory_gb() -> float | None:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    return None


def usable_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def load_note(start: float, end: float, cores: int | None = None) -> str:
    """'load average S at start, E at end', and whether that means other jobs shared the CPU.

    A measurement keeps about one core busy itself, so only a load above three quarters of the cores says
    that something else ran; reports must not claim it (or hide it) unconditionally."""
    cores = cores or usable_cores()
    shared = max(start, end) > 0.75 * cores
    return (f"load average {start:.2f} at start, {end:.2f} at end ("
            + ("other jobs shared the CPU: absolute times are upper bounds for an idle machine)" if shared
               else f"below {0.75 * cores:.1f} on {cores} cores: no other job was busy)"))
