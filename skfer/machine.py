"""What machine and software a run ran on, for its report.

The same seed and code give the same figures only on the same kind of processor: the CPU
kernels that TensorFlow and oneDNN pick depend on the instruction set (AMX, AVX-512 BF16,
AVX2), and so do the sums' rounding and the run's speed. A run's ``results.json`` therefore
names the processor beside the versions.
"""

from __future__ import annotations

import os
import platform
import sys
from pathlib import Path

import keras

from . import __version__

__all__ = ["describe_machine", "machine_line", "processor_name"]

_CPUINFO = Path("/proc/cpuinfo")
_FLAGS_OF_NOTE = ("amx_bf16", "avx512_bf16", "avx512f", "avx2")


def processor_name(cpuinfo: Path = _CPUINFO) -> str:
    """The processor's model name and its widest vector units, e.g. ``'AMD EPYC (avx512_bf16,
    avx512f, avx2)'``; ``platform.processor()`` (or ``'unknown'``) without ``/proc/cpuinfo``."""
    try:
        text = cpuinfo.read_text()
    except OSError:
        return platform.processor() or "unknown"
    fields = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    name = fields.get("model name") or platform.processor() or "unknown"
    flags = set(fields.get("flags", "").split())
    noted = [flag for flag in _FLAGS_OF_NOTE if flag in flags]
    return f"{name} ({', '.join(noted)})" if noted else name


def describe_machine() -> dict:
    """The processor, the cores this process may use, the system and the versions of Python,
    skfer, Keras and Keras' backend."""
    backend = keras.backend.backend()
    module = sys.modules.get(backend)
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count()
    return {
        "processor": processor_name(),
        "cores": cores,
        "system": platform.platform(),
        "python": platform.python_version(),
        "skfer": __version__,
        "keras": keras.__version__,
        "backend": f"{backend} {getattr(module, '__version__', '')}".strip(),
    }


def machine_line(machine: dict) -> str:
    """One line of :func:`describe_machine`'s facts, for a log or a report."""
    return (
        f"{machine['processor']}, {machine['cores']} cores; {machine['system']}; Python "
        f"{machine['python']}, skfer {machine['skfer']}, Keras {machine['keras']} on "
        f"{machine['backend']}"
    )
