"""Markdown summary of benchmark records: perplexity mean and spread over seeds, cost, memory."""

from __future__ import annotations

import statistics
from collections import defaultdict
from pathlib import Path
from typing import Any

__all__ = ["METHOD_ORDER", "summarize", "write_markdown"]

METHOD_ORDER = ["fp", "rtn", "smoothquant", "hadamard", "duquant", "ruquant", "ruquant-stage2"]


def summarize(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Group records by (protocol, method, bits, stage-2 epochs) and average over seeds."""
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = defaultdict(list)
    for record in records:
        key = (record["protocol"], record["method"], record["w_bits"], record["a_bits"], record["stage2_epochs"])
        groups[key].append(record)
    fp = {r["protocol"]: r["perplexity"] for r in records if r["method"] == "fp"}
    rows = []
    for (protocol, method, w_bits, a_bits, epochs), group in groups.items():
        perplexities = [r["perplexity"] for r in group]
        mean = statistics.fmean(perplexities)
        quantize = statistics.fmean(r["quantize_seconds"] for r in group)
        # Each record divides by the float forward time of its own machine boot.
        ratios = [r["quantize_seconds"] / r["fp_forward_seconds"] for r in group if r.get("fp_forward_seconds")]
        rows.append(
            {
                "protocol": protocol,
                "method": method,
                "bits": "float" if method == "fp" else f"W{w_bits}A{a_bits}",
                "w_bits": w_bits,
                "a_bits": a_bits,
                "stage2_epochs": epochs,
                "seeds": len(group),
                "perplexity": mean,
                "perplexity_std": statistics.stdev(perplexities) if len(group) > 1 else 0.0,
                "ratio_to_fp": mean / fp[protocol] if protocol in fp else None,
                "quantize_seconds": quantize,
                "cost_ratio": statistics.fmean(ratios) if ratios and method != "fp" else None,
                "calibration_forward_seconds": statistics.fmean(r.get("calibration_forward_seconds", 0.0) for r in group),
                "transform_search_seconds": statistics.fmean(r.get("transform_search_seconds", 0.0) for r in group),
                "stage2_seconds": statistics.fmean(r.get("stage2_seconds", 0.0) for r in group),
                "peak_memory_mib": max(r["peak_memory_bytes"] for r in group) / 2**20,
                **_quantize_memory(group),
            }
        )
    # Float first, then the presets (equal widths) by width, then one-sided ablations such as W6A16.
    rows.sort(
        key=lambda r: (
            r["protocol"],
            r["method"] != "fp",
            r["w_bits"] != r["a_bits"],
            min(r["w_bits"], r["a_bits"]),
            r["w_bits"],
            METHOD_ORDER.index(r["method"]),
        )
    )
    return rows


def _quantize_memory(group: list[dict[str, Any]]) -> dict[str, float | None]:
    """Peak RSS growth during quantization and the memory goal (2 x float model + one layer's inputs)."""
    measured = [r for r in group if r.get("quantize_peak_memory_bytes") and r.get("baseline_memory_bytes")]
    if not measured:
        return {"quantize_memory_mib": None, "quantize_memory_min_mib": None, "memory_budget_mib": None}
    growths = [r["quantize_peak_memory_bytes"] - r["baseline_memory_bytes"] for r in measured]
    budget = min(2 * r["model_bytes"] + r["layer_activation_bytes"] for r in measured)
    return {
        "quantize_memory_mib": max(growths) / 2**20,
        "quantize_memory_min_mib": min(growths) / 2**20,
        "memory_budget_mib": budget / 2**20,
    }


def _format(row: dict[str, Any]) -> str:
    method = row["method"] + (f" ({row['stage2_epochs']} ep.)" if row["stage2_epochs"] else "")
    spread = f" ± {row['perplexity_std']:.2f}" if row["seeds"] > 1 else ""
    ratio = "" if row["ratio_to_fp"] is None else f"{row['ratio_to_fp']:.3f}"
    cost = "" if not row["cost_ratio"] else f"{row['cost_ratio']:.2f}"
    memory = ""
    if row["quantize_memory_mib"] is not None:
        low, high = round(row["quantize_memory_min_mib"]), round(row["quantize_memory_mib"])
        # Seeds measured with different code can differ by hundreds of MiB, so the range is shown.
        growth = str(high) if low == high else f"{low}–{high}"
        memory = f"{growth} / {row['memory_budget_mib']:.0f}"
    return (
        f"| {row['bits']} | {method} | {row['seeds']} | {row['perplexity']:.2f}{spread} | {ratio} | "
        f"{row['quantize_seconds']:.0f} | {cost} | {row['calibration_forward_seconds']:.0f} | "
        f"{row['transform_search_seconds']:.0f} | {row['stage2_seconds']:.0f} | {row['peak_memory_mib']:.0f} | {memory} |"
    )


def write_markdown(records: list[dict[str, Any]], path: Path) -> None:
    """Write the summary table of ``records`` to ``path``."""
    lines = [
        "| bits | method | seeds | perplexity | ratio to float | quantize s | cost / float fwd | calib fwd s | search s "
        "| stage 2 s | peak RSS MiB | quantize growth / goal MiB |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    lines += [_format(row) for row in summarize(records)]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
