"""Run the benchmark grid under CPU quick protocol v1 and write JSON records and a Markdown table.

    python -m benchmarks.run                         # whole grid (hours on a 2-core CPU)
    python -m benchmarks.run --methods rtn ruquant --bits W4A4 --seeds 444
    python -m benchmarks.run --stage2-epochs 2 --methods ruquant-stage2 --bits W4A4
    python -m benchmarks.run --sites-only --methods duquant ruquant --bits W4A4 --seeds 444

The float forward time that every cost ratio divides by is measured by the first invocation after
each machine boot and reused by later ones (``--measure-fp-forward`` times it again).
Records already in the results file (same protocol, method, bits, stage-2 epochs and seed) are
skipped, so an interrupted grid resumes where it stopped.

``--sites-only`` quantizes without evaluating and without timing the float forward, and writes
its records to ``results/sites-quick-v1.json``: a cheaper way to measure the per-site errors
that ``benchmarks.quality`` summarises. Those records carry no perplexity or cost ratio.
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import platform
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

from benchmarks.protocol import Protocol
from benchmarks.tables import write_markdown
from ruquant.config import PRESETS, Method, QuantConfig
from ruquant.evaluate import evaluate_perplexity, forward_seconds
from ruquant.pipeline import quantize_model
from ruquant.runner import library_versions
from ruquant.utils.memory import (
    current_memory_bytes,
    peak_memory_bytes,
    peak_phase,
    release_free_memory,
)

__all__ = ["SITE_ERRORS_VERSION", "main", "run_record"]

logger = logging.getLogger("benchmarks.run")

# The library's presets plus two one-sided ablations that separate the weight error from the
# activation error of a bit width (W6A16 quantizes only weights, W16A6 only activations).
BENCH_PRESETS: dict[str, tuple[int, int]] = {**PRESETS, "W6A16": (6, 16), "W16A6": (16, 6)}

METHODS = ["rtn", "smoothquant", "hadamard", "duquant", "ruquant", "ruquant-stage2"]
RESULTS = Path(__file__).parent / "results"

# Version 2 applies the smoothing folded into the preceding module before it measures the error
# after the transform. Version 1 records (no field) applied only the online rotation there.
SITE_ERRORS_VERSION = 2


def _machine() -> dict[str, Any]:
    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


def _boot_id() -> str | None:
    """Return the kernel's boot id (Linux), which changes when the machine restarts."""
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return None


def _git_commit() -> str | None:
    """Return the checked-out commit, with ``-dirty`` if library or benchmark files have uncommitted changes.

    Returns None outside a git checkout.
    """
    root = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "--", "ruquant", "benchmarks/*.py"],
            cwd=root, capture_output=True, text=True, check=True, timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{commit}-dirty" if dirty else commit


def _key(record: dict[str, Any]) -> tuple[Any, ...]:
    return (record["protocol"], record["method"], record["w_bits"], record["a_bits"], record["stage2_epochs"], record["seed"])


def _load_records(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return list(json.loads(path.read_text()))


def _save_records(path: Path, records: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(records, indent=2) + "\n")
    tmp.replace(path)


def measure_fp_forward(protocol: Protocol) -> float:
    """Seconds of one plain float forward pass over the calibration windows, one window at a time."""
    fp_model, _ = protocol.load()
    windows = protocol.calibration.input_ids
    forward_seconds(fp_model, windows[:1], warmup=0)  # warm-up pass, not counted
    seconds = sum(forward_seconds(fp_model, windows[i : i + 1], warmup=0) for i in range(windows.shape[0]))
    logger.info("one float forward over the calibration tokens: %.1f s", seconds)
    return seconds


def float_record(protocol: Protocol, fp_forward: float) -> dict[str, Any]:
    """Evaluate the float model: the ``method: "fp"`` baseline record."""
    model, tokenizer = protocol.load()
    result = evaluate_perplexity(model, tokenizer, protocol.evaluation, text=protocol.evaluation_text)
    return {
        "protocol": protocol.name,
        "method": "fp",
        "w_bits": 16,
        "a_bits": 16,
        "stage2_epochs": 0,
        "seed": protocol.calibration_seed,
        "perplexity": result.perplexity,
        "eval_windows": result.windows,
        "eval_seconds": result.seconds,
        "quantize_seconds": 0.0,
        "fp_forward_seconds": fp_forward,
        "peak_memory_bytes": peak_memory_bytes(torch.device("cpu")),
    }


def memory_by_phase(marks: list[dict[str, Any]]) -> dict[str, dict[str, int]]:
    """Return, per phase name, the largest resident set and peak seen at the end of that phase."""
    summary: dict[str, dict[str, int]] = {}
    for mark in marks:
        entry = summary.setdefault(mark["phase"], {"max_current_bytes": 0, "max_peak_bytes": 0})
        entry["max_current_bytes"] = max(entry["max_current_bytes"], mark["current_bytes"] or 0)
        entry["max_peak_bytes"] = max(entry["max_peak_bytes"], mark["peak_bytes"] or 0)
    return summary


def run_record(
    protocol: Protocol,
    method: str,
    preset: str,
    seed: int,
    stage2_epochs: int,
    fp_forward: float | None,
    evaluate: bool = True,
) -> dict[str, Any]:
    """Quantize and (unless ``evaluate`` is False) evaluate one grid point; returns its record.

    Without evaluation the perplexity and evaluation fields are None.
    """
    w_bits, a_bits = BENCH_PRESETS[preset]
    stage2 = method == "ruquant-stage2"
    config = QuantConfig(
        method=Method.RUQUANT if stage2 else Method(method),
        w_bits=w_bits,
        a_bits=a_bits,
        block_size=protocol.block_size,
        seed=seed,
        stage2=stage2,
        stage2_epochs=max(stage2_epochs, 1),
    )
    cpu = torch.device("cpu")
    calibration = protocol.calibration.input_ids
    gc.collect()
    release_free_memory()  # so the baseline does not carry heap pages freed by the previous record
    baseline = current_memory_bytes(cpu)
    model, tokenizer = protocol.load()
    model_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    started = time.perf_counter()
    result = quantize_model(model, calibration, config)
    quantize_seconds = time.perf_counter() - started
    evaluation = (
        evaluate_perplexity(model, tokenizer, protocol.evaluation, text=protocol.evaluation_text) if evaluate else None
    )
    sites: dict[str, dict[str, float]] = {}
    for layer in result.layers:
        for site, metrics in layer["sites"].items():
            entry = sites.setdefault(site, {"act_error_before": 0.0, "act_error_after": 0.0})
            entry["act_error_before"] += metrics["act_error_before"] / len(result.layers)
            entry["act_error_after"] += metrics["act_error_after"] / len(result.layers)
        for site, errors in layer["weight_errors"].items():
            # Relative per-channel RTN error of the site's stacked consumer weights, before and
            # after the transform is folded in.
            entry = sites.setdefault(site, {})
            for when in ("before", "after"):
                key = f"weight_error_{when}"
                entry[key] = entry.get(key, 0.0) + errors[when] / len(result.layers)
    return {
        "protocol": protocol.name,
        "method": method,
        "w_bits": w_bits,
        "a_bits": a_bits,
        "stage2_epochs": stage2_epochs if stage2 else 0,
        # Tokens per MLP pass in stage 2 (0: one pass); records without it ran one pass.
        "stage2_token_chunk": config.stage2_token_chunk if stage2 else None,
        "seed": seed,
        "perplexity": evaluation.perplexity if evaluation else None,
        "eval_windows": evaluation.windows if evaluation else None,
        "eval_seconds": evaluation.seconds if evaluation else None,
        "quantize_seconds": quantize_seconds,
        "calibration_forward_seconds": result.timings["calibration_forward"],
        "transform_search_seconds": result.timings["transform_search"],
        "stage2_seconds": result.timings["stage2"],
        "invariance_check_seconds": result.timings["invariance_check"],
        "fp_forward_seconds": fp_forward,
        "peak_memory_bytes": peak_memory_bytes(cpu),
        # Memory goal: quantize peak - baseline <= 2 * model_bytes + calibration activations of one layer.
        "quantize_peak_memory_bytes": result.peak_memory_bytes,
        "baseline_memory_bytes": baseline,
        "model_bytes": model_bytes,
        "layer_activation_bytes": calibration.numel() * model.config.hidden_size * 4,
        "memory_peak_phase": peak_phase(result.memory_trace),
        "memory_by_phase": memory_by_phase(result.memory_trace),
        "site_errors": sites,
        "site_errors_version": SITE_ERRORS_VERSION,
        "invariance_logits_rel_error": result.invariance.get("logits_rel_error"),
    }


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.split("\n")[0])
    parser.add_argument("--methods", nargs="+", default=METHODS, choices=METHODS)
    parser.add_argument("--bits", nargs="+", default=["W4A4", "W6A6", "W8A8"], choices=sorted(BENCH_PRESETS))
    parser.add_argument(
        "--seeds",
        nargs="+",
        type=int,
        default=[444, 445, 446],
        help="seeds of the random methods (hadamard, ruquant, ruquant-stage2); the other methods run the first seed only",
    )
    parser.add_argument(
        "--stage2-epochs",
        type=int,
        default=20,
        help="epochs of the ruquant-stage2 runs (the library default; one epoch takes about as long as the rest of "
        "a run on SmolLM2, and the recorded runs use 1)",
    )
    parser.add_argument(
        "--measure-fp-forward",
        action="store_true",
        help="time the float forward again even when a record from this machine boot already stores it",
    )
    parser.add_argument("--full", action="store_true", help="evaluate all 148 test windows instead of 40")
    parser.add_argument(
        "--sites-only",
        action="store_true",
        help="quantize without evaluating, to measure per-site errors (default benchmarks/results/sites-quick-v1.json)",
    )
    parser.add_argument("--results", type=Path, default=None, help="JSON records file (default benchmarks/results/quick-v1.json)")
    parser.add_argument("--markdown", type=Path, default=None, help="Markdown table (default next to the JSON)")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the selected grid points that are not in the results file yet."""
    parser = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    if args.stage2_epochs < 1:
        parser.error(f"--stage2-epochs must be at least 1, got {args.stage2_epochs}")
    if args.sites_only and args.full:
        parser.error("--sites-only does not evaluate, so --full has no effect with it; drop one of them")
    protocol = Protocol(full=args.full)
    default_name = f"sites-{protocol.name}.json" if args.sites_only else f"{protocol.name}.json"
    results = args.results or RESULTS / default_name
    markdown = args.markdown or results.with_suffix(".md")
    records = _load_records(results)
    done = {_key(r) for r in records}
    meta = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": _machine(),
        "boot_id": _boot_id(),
        "commit": _git_commit(),  # the code that produced the record
        "versions": library_versions(),
    }

    if args.sites_only:
        _run_grid(args, protocol, records, done, results, meta, fp_forward=None, markdown=None)
        return 0

    fp_key = (protocol.name, "fp", 16, 16, 0, protocol.calibration_seed)
    # Cost ratios divide by a float forward timed on the same machine: the same VM type can run
    # twice as fast or slow after a restart, so a stored time is reused only within one boot.
    stored = [
        r["fp_forward_seconds"] for r in records if r.get("boot_id") == meta["boot_id"] and r.get("fp_forward_seconds")
    ]
    if stored and not args.measure_fp_forward:
        fp_forward = stored[-1]
        logger.info("one float forward over the calibration tokens: %.1f s (stored in this boot)", fp_forward)
    else:
        fp_forward = measure_fp_forward(protocol)
    if fp_key not in done:
        records.append({**float_record(protocol, fp_forward), **meta})
        _save_records(results, records)
        done.add(fp_key)
    _run_grid(args, protocol, records, done, results, meta, fp_forward=fp_forward, markdown=markdown)
    write_markdown(records, markdown)
    return 0


def _run_grid(
    args: argparse.Namespace,
    protocol: Protocol,
    records: list[dict[str, Any]],
    done: set[tuple[Any, ...]],
    results: Path,
    meta: dict[str, Any],
    fp_forward: float | None,
    markdown: Path | None,
) -> None:
    """Run every selected grid point missing from ``done`` and save the records after each one.

    With ``markdown`` None the runs skip evaluation and no table is written (``--sites-only``).
    """
    for preset in args.bits:
        for method in args.methods:
            seeds = args.seeds if method in ("hadamard", "ruquant", "ruquant-stage2") else [args.seeds[0]]
            for seed in seeds:
                epochs = args.stage2_epochs if method == "ruquant-stage2" else 0
                w_bits, a_bits = BENCH_PRESETS[preset]
                key = (protocol.name, method, w_bits, a_bits, epochs, seed)
                if key in done:
                    continue
                logger.info("running %s %s seed %d", method, preset, seed)
                record = run_record(protocol, method, preset, seed, epochs, fp_forward, evaluate=markdown is not None)
                records.append({**record, **meta})
                _save_records(results, records)
                done.add(key)
                if markdown is not None:
                    write_markdown(records, markdown)


if __name__ == "__main__":
    raise SystemExit(main())
