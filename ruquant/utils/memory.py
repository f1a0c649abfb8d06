"""Peak memory of the compute device (CUDA allocator) or of the process (CPU)."""

from __future__ import annotations

import ctypes
import ctypes.util
import re
import resource
import sys
from functools import cache
from pathlib import Path
from typing import Any

import torch
from torch import nn

__all__ = [
    "MemoryTrace",
    "copy_cpu_parameters",
    "current_memory_bytes",
    "peak_memory_bytes",
    "peak_phase",
    "release_free_memory",
    "reset_peak_memory",
]

_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


def _status_kib(field: str) -> int | None:
    try:
        match = re.search(rf"^{field}:\s+(\d+) kB", _STATUS.read_text(), flags=re.MULTILINE)
    except OSError:
        return None
    return int(match.group(1)) if match else None


def reset_peak_memory(device: torch.device) -> None:
    """Reset the peak counter: CUDA's allocator peak, or on Linux the process's peak resident set.

    Elsewhere the CPU peak (max RSS since start) cannot be reset and keeps counting from start.
    """
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        return
    try:
        _CLEAR_REFS.write_text("5")  # "5" resets VmHWM to the current RSS (Linux >= 4.0)
    except OSError:
        pass


def peak_memory_bytes(device: torch.device) -> int:
    """Return the peak bytes allocated on a CUDA device, or the process's peak resident set on CPU.

    On Linux the CPU peak is VmHWM, which ``reset_peak_memory`` resets; elsewhere it is the max
    RSS since the process started.
    """
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    hwm = _status_kib("VmHWM")
    if hwm is not None:
        return hwm * 1024
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # ru_maxrss is in kilobytes on Linux and in bytes on macOS.
    return int(peak if sys.platform == "darwin" else peak * 1024)


def current_memory_bytes(device: torch.device) -> int | None:
    """Return the bytes allocated on a CUDA device now, or the process's resident set (Linux only)."""
    if device.type == "cuda":
        return int(torch.cuda.memory_allocated(device))
    rss = _status_kib("VmRSS")
    return None if rss is None else rss * 1024


@cache
def _malloc_trim() -> ctypes._CFuncPtr | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return libc.malloc_trim
    except (OSError, AttributeError):  # not glibc (musl has no malloc_trim)
        return None


def release_free_memory() -> None:
    """Return the C heap's free pages to the operating system (glibc ``malloc_trim``; no-op elsewhere).

    Tensors below glibc's mmap threshold (which grows up to 32 MiB as large blocks are freed) come
    from the heap, and the holes they leave between tensors that stay alive (quantized weights)
    are not returned on free. Trimming once per decoder layer keeps the resident set close to the
    live tensors.
    """
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


@torch.no_grad()
def copy_cpu_parameters(module: nn.Module) -> None:
    """Give every CPU parameter and buffer of ``module`` its own memory, in place (tied weights stay tied).

    transformers loads safetensors checkpoints on the CPU as views of a memory-mapped file. Each
    page read stays resident for as long as any view of the file lives, so the float weights of
    layers already quantized would keep counting against the resident set. Owned copies are freed
    as soon as their layer is replaced; the file is unmapped once the last view goes.
    """
    for tensor in [*module.parameters(), *module.buffers()]:
        if tensor.device.type == "cpu":
            tensor.data = tensor.data.clone()


class MemoryTrace:
    """Memory readings taken after each phase of a run, to tell which phase set the peak.

    Each mark stores the phase name, the layer index (or None), the current memory and the peak
    since the last ``reset_peak_memory``. The peak only grows, so the phase that set it is the
    first mark that reached the final peak.
    """

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.marks: list[dict[str, int | str | None]] = []

    def mark(self, phase: str, layer: int | None = None) -> None:
        current = current_memory_bytes(self.device)
        peak = max(peak_memory_bytes(self.device), current or 0)
        if self.marks:
            # Linux can report a lower VmHWM than before: pages that malloc_trim hands back with
            # madvise leave the RSS without updating the recorded high-water mark.
            peak = max(peak, int(self.marks[-1]["peak_bytes"] or 0))
        self.marks.append(
            {
                "phase": phase,
                "layer": layer,
                "current_bytes": current,
                "peak_bytes": peak,
            }
        )


def peak_phase(marks: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Return the first ``MemoryTrace`` mark that reached the final peak (None for no marks)."""
    if not marks:
        return None
    final = marks[-1]["peak_bytes"]
    return next(m for m in marks if m["peak_bytes"] == final)
