"""Peak memory of the compute device (CUDA allocator) or of the process (CPU)."""

from __future__ import annotations

import resource
import sys

import torch

__all__ = ["peak_memory_bytes", "reset_peak_memory"]


def reset_peak_memory(device: torch.device) -> None:
    """Reset the CUDA peak counter; the CPU peak (process max RSS) cannot be reset."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory_bytes(device: torch.device) -> int:
    """Return the peak bytes allocated on a CUDA device, or the process's peak resident set on CPU."""
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # ru_maxrss is in kilobytes on Linux and in bytes on macOS.
    return int(peak if sys.platform == "darwin" else peak * 1024)
