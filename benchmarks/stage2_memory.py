"""Stage 2's extra memory, measured on one SmolLM2 decoder layer under CPU quick protocol v1.

    python -m benchmarks.stage2_memory               # writes results/stage2-memory.json

Quantizes only the first decoder layer of SmolLM2-135M on the protocol's 32 calibration windows,
with and without stage 2, under two settings of glibc's allocator:

- ``default``: glibc raises its mmap threshold each time a large block is freed (up to 32 MiB
  on 64-bit), so later tensors of that size come from the heap, whose freed pages the process
  keeps;
- ``pinned``: ``MALLOC_MMAP_THRESHOLD_=131072`` fixes the threshold, so every tensor above
  128 KiB is mapped on its own and returned to the system when freed.

Each case runs in a fresh process and records four figures:

- the growth of the resident set over the process with the one-layer model loaded (unlike the
  grid's memory column, which also counts the model);
- the phase that set the peak;
- the bytes autograd saves for backward in one stage-2 step;
- the wall time of the quantization.

The stage 2 row minus the no-stage-2 row of the same allocator is what stage 2 adds to the peak.
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

from benchmarks.protocol import Protocol
from benchmarks.run import _git_commit, _machine
from ruquant.config import Method, QuantConfig
from ruquant.pipeline import quantize_model
from ruquant.utils.memory import current_memory_bytes, peak_phase, release_free_memory

__all__ = ["ALLOCATORS", "main", "measure"]

logger = logging.getLogger("benchmarks.stage2_memory")

RESULTS = Path(__file__).parent / "results"

# Environment variables of each allocator setting. glibc reads them once, when the process starts.
ALLOCATORS: dict[str, dict[str, str]] = {"default": {}, "pinned": {"MALLOC_MMAP_THRESHOLD_": "131072"}}


def measure(stage2: bool, w_bits: int, a_bits: int, seed: int, layers: int) -> dict[str, Any]:
    """Quantize the first ``layers`` decoder layers in this process and return the memory figures."""
    protocol = Protocol()
    cpu = torch.device("cpu")
    model, _ = protocol.load()
    del model.model.layers[layers:]
    model.config.num_hidden_layers = layers
    calibration = protocol.calibration.input_ids
    config = QuantConfig(
        method=Method.RUQUANT,
        w_bits=w_bits,
        a_bits=a_bits,
        block_size=protocol.block_size,
        seed=seed,
        stage2=stage2,
        stage2_epochs=1,
    )
    saved_bytes = 0

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        # Only stage 2 runs with autograd on, so this counts the state kept for its backward passes.
        nonlocal saved_bytes
        saved_bytes += tensor.numel() * tensor.element_size()
        return tensor

    gc.collect()
    release_free_memory()
    baseline = current_memory_bytes(cpu) or 0
    started = time.perf_counter()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        result = quantize_model(model, calibration, config)
    seconds = time.perf_counter() - started
    steps = calibration.shape[0] * layers if stage2 else 0
    phase = peak_phase(result.memory_trace) or {}
    return {
        "stage2": stage2,
        "layers": layers,
        "windows": int(calibration.shape[0]),
        "growth_bytes": result.peak_memory_bytes - baseline,
        "peak_phase": phase.get("phase"),
        "saved_bytes_per_step": saved_bytes / steps if steps else 0.0,
        "stage2_seconds": result.timings["stage2"],
        "quantize_seconds": seconds,
    }


def _child(args: argparse.Namespace) -> int:
    figures = measure(args.stage2, args.w_bits, args.a_bits, args.seed, args.layers)
    sys.stdout.write(json.dumps(figures) + "\n")
    return 0


def _run_case(allocator: str, stage2: bool, args: argparse.Namespace) -> dict[str, Any]:
    command = [
        sys.executable, "-m", "benchmarks.stage2_memory", "--child",
        "--w-bits", str(args.w_bits), "--a-bits", str(args.a_bits),
        "--seed", str(args.seed), "--layers", str(args.layers),
    ]  # fmt: skip
    if stage2:
        command.append("--stage2")
    env = {**os.environ, **ALLOCATORS[allocator]}
    logger.info("measuring allocator=%s stage2=%s", allocator, stage2)
    completed = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if completed.returncode != 0:
        raise RuntimeError(f"case allocator={allocator} stage2={stage2} failed:\n{completed.stderr[-4000:]}")
    figures = json.loads(completed.stdout.strip().splitlines()[-1])
    return {"allocator": allocator, **figures}


def write_markdown(rows: list[dict[str, Any]], path: Path) -> None:
    """Write the cases as a Markdown table, with stage 2's growth over the matching no-stage-2 row."""
    base = {row["allocator"]: row["growth_bytes"] for row in rows if not row["stage2"]}
    mib = 2**20
    lines = [
        "| allocator | stage 2 | peak growth (MiB) | stage 2's share (MiB) | peak phase | saved per step (MiB) "
        "| quantize time (s) |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        share = (row["growth_bytes"] - base[row["allocator"]]) / mib if row["stage2"] and row["allocator"] in base else None
        lines.append(
            f"| {row['allocator']} | {'1 epoch' if row['stage2'] else 'no'} | {row['growth_bytes'] / mib:.0f} | "
            f"{'' if share is None else f'{share:.0f}'} | {row['peak_phase']} | "
            f"{row['saved_bytes_per_step'] / mib:.0f} | {row['quantize_seconds']:.0f} |"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    """Measure every (allocator, stage 2) case in its own process and write JSON and Markdown."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.stage2_memory", description=__doc__.split("\n")[0])
    parser.add_argument("--w-bits", type=int, default=4)
    parser.add_argument("--a-bits", type=int, default=4)
    parser.add_argument("--seed", type=int, default=444)
    parser.add_argument("--layers", type=int, default=1, help="decoder layers to quantize (from the first)")
    parser.add_argument("--allocators", nargs="+", default=list(ALLOCATORS), choices=list(ALLOCATORS))
    parser.add_argument("--results", type=Path, default=RESULTS / "stage2-memory.json")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--stage2", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.layers < 1:
        parser.error("--layers must be at least 1")
    if args.child:
        return _child(args)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    meta = {"date": datetime.now(UTC).isoformat(timespec="seconds"), "machine": _machine(), "commit": _git_commit()}
    rows = [
        {**_run_case(allocator, stage2, args), **meta} for allocator in args.allocators for stage2 in (False, True)
    ]
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(json.dumps(rows, indent=2) + "\n")
    write_markdown(rows, args.results.with_suffix(".md"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
