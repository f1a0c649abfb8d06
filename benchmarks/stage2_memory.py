"""Stage 2's extra memory, measured on one SmolLM2 decoder layer under CPU quick protocol v1.

    python -m benchmarks.stage2_memory               # writes results/stage2-memory.json
    python -m benchmarks.stage2_memory --allocators default --token-chunks 0 256

Quantizes only the first decoder layer of SmolLM2-135M on the protocol's 32 calibration windows,
without stage 2 and with stage 2 at each ``--token-chunks`` value (tokens per MLP pass; 0 runs
each window's MLP in one pass), under two settings of glibc's allocator:

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
The results file keeps the rows of cases that an invocation does not measure, so a subset can be
measured again. Each row carries its own date and commit.
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

__all__ = ["ALLOCATORS", "main", "measure", "merge_rows", "write_markdown"]

logger = logging.getLogger("benchmarks.stage2_memory")

RESULTS = Path(__file__).parent / "results"

# Environment variables of each allocator setting. glibc reads them once, when the process starts.
ALLOCATORS: dict[str, dict[str, str]] = {"default": {}, "pinned": {"MALLOC_MMAP_THRESHOLD_": "131072"}}


def measure(
    stage2: bool, w_bits: int, a_bits: int, seed: int, layers: int, token_chunk: int = 0
) -> dict[str, Any]:
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
        stage2_token_chunk=token_chunk,
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
        "token_chunk": token_chunk if stage2 else None,
        "layers": layers,
        "windows": int(calibration.shape[0]),
        "growth_bytes": result.peak_memory_bytes - baseline,
        "peak_phase": phase.get("phase"),
        "saved_bytes_per_step": saved_bytes / steps if steps else 0.0,
        "stage2_seconds": result.timings["stage2"],
        "quantize_seconds": seconds,
    }


def _child(args: argparse.Namespace) -> int:
    figures = measure(args.stage2, args.w_bits, args.a_bits, args.seed, args.layers, args.token_chunk)
    sys.stdout.write(json.dumps(figures) + "\n")
    return 0


def _run_case(allocator: str, token_chunk: int | None, args: argparse.Namespace) -> dict[str, Any]:
    """Measure one case in a fresh process. A ``token_chunk`` of None means no stage 2."""
    command = [
        sys.executable, "-m", "benchmarks.stage2_memory", "--child",
        "--w-bits", str(args.w_bits), "--a-bits", str(args.a_bits),
        "--seed", str(args.seed), "--layers", str(args.layers),
    ]  # fmt: skip
    if token_chunk is not None:
        command += ["--stage2", "--token-chunk", str(token_chunk)]
    env = {**os.environ, **ALLOCATORS[allocator]}
    logger.info("measuring allocator=%s token_chunk=%s", allocator, "no stage 2" if token_chunk is None else token_chunk)
    completed = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if completed.returncode != 0:
        raise RuntimeError(
            f"case allocator={allocator} token_chunk={token_chunk} failed:\n{completed.stderr[-4000:]}"
        )
    figures = json.loads(completed.stdout.strip().splitlines()[-1])
    return {"allocator": allocator, **figures}


def _case(row: dict[str, Any]) -> tuple[str, int | None]:
    """Return a row's (allocator, token chunk). Rows written before chunking ran one pass (0)."""
    if not row["stage2"]:
        return row["allocator"], None
    return row["allocator"], int(row.get("token_chunk") or 0)


def _sort_key(row: dict[str, Any]) -> tuple[int, int]:
    allocator, chunk = _case(row)
    order = list(ALLOCATORS).index(allocator) if allocator in ALLOCATORS else len(ALLOCATORS)
    return order, -1 if chunk is None else chunk


def write_markdown(rows: list[dict[str, Any]], path: Path) -> None:
    """Write the cases as a Markdown table, with stage 2's growth over the matching no-stage-2 row."""
    base = {row["allocator"]: row["growth_bytes"] for row in rows if not row["stage2"]}
    mib = 2**20
    lines = [
        "| allocator | stage 2 | token chunk | peak growth (MiB) | stage 2's share (MiB) | peak phase "
        "| saved per step (MiB) | stage 2 time (s) | quantize time (s) | measured |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in sorted(rows, key=_sort_key):
        _, chunk = _case(row)
        share = (row["growth_bytes"] - base[row["allocator"]]) / mib if row["stage2"] and row["allocator"] in base else None
        chunk_text = ""
        if chunk is not None:
            chunk_text = str(chunk) if chunk else "whole window"
        lines.append(
            f"| {row['allocator']} | {'1 epoch' if row['stage2'] else 'no'} | {chunk_text} | "
            f"{row['growth_bytes'] / mib:.0f} | {'' if share is None else f'{share:.0f}'} | {row['peak_phase']} | "
            f"{row['saved_bytes_per_step'] / mib:.0f} | {row.get('stage2_seconds', 0.0):.0f} | "
            f"{row['quantize_seconds']:.0f} | {str(row.get('date', ''))[:16].replace('T', ' ')} |"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")


def merge_rows(old: list[dict[str, Any]], new: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Return ``new`` plus the rows of ``old`` whose case ``new`` did not measure again."""
    measured = {_case(row) for row in new}
    return sorted([row for row in old if _case(row) not in measured] + new, key=_sort_key)


def main(argv: list[str] | None = None) -> int:
    """Measure each (allocator, stage 2 case) in its own process and write JSON and Markdown."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.stage2_memory",
        description=__doc__.split("\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--w-bits", type=int, default=4, help="weight bits")
    parser.add_argument("--a-bits", type=int, default=4, help="activation bits")
    parser.add_argument("--seed", type=int, default=444, help="seed of RUQuant's random targets")
    parser.add_argument("--layers", type=int, default=1, help="decoder layers to quantize (from the first)")
    parser.add_argument(
        "--allocators",
        nargs="+",
        default=list(ALLOCATORS),
        choices=list(ALLOCATORS),
        help="glibc allocator settings: default, or pinned (MALLOC_MMAP_THRESHOLD_=131072, so every block "
        "over 128 KiB gets its own mapping)",
    )
    parser.add_argument(
        "--token-chunks",
        nargs="+",
        type=int,
        default=[0, QuantConfig().stage2_token_chunk],
        help="stage 2 cases: tokens per MLP pass (0: the whole window)",
    )
    parser.add_argument(
        "--results",
        type=Path,
        default=RESULTS / "stage2-memory.json",
        help="JSON file of the rows (merged with the rows it already has); the table goes next to it as .md",
    )
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--stage2", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--token-chunk", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.layers < 1:
        parser.error("--layers must be at least 1")
    if any(chunk < 0 for chunk in args.token_chunks):
        parser.error("--token-chunks must be 0 or positive")
    if args.child:
        return _child(args)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    meta = {"date": datetime.now(UTC).isoformat(timespec="seconds"), "machine": _machine(), "commit": _git_commit()}
    cases: list[int | None] = [None, *dict.fromkeys(args.token_chunks)]
    rows = [{**_run_case(allocator, chunk, args), **meta} for allocator in args.allocators for chunk in cases]
    old = json.loads(args.results.read_text()) if args.results.exists() else []
    rows = merge_rows(old, rows)
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(json.dumps(rows, indent=2) + "\n")
    write_markdown(rows, args.results.with_suffix(".md"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
