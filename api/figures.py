"""The job page's view of a report: summary rows and an SVG bar chart of the perplexities."""

from __future__ import annotations

from html import escape
from typing import Any

__all__ = ["report_figure", "report_perplexities", "report_summary"]

# Perplexity fields of the report that ``ruquant.runner.run_quantization`` writes.
_PERPLEXITY_FIELDS = {"float": "fp_perplexity", "quantized": "quantized_perplexity"}


def _number(value: Any) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return None


def report_perplexities(report: dict[str, Any] | None) -> dict[str, float]:
    """Return ``{"float": ..., "quantized": ...}``, with whichever perplexities the report has."""
    if not report:
        return {}
    values = {}
    for name, field in _PERPLEXITY_FIELDS.items():
        number = _number(report.get(field))
        if number is not None:
            values[name] = number
    return values


def _format(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, dict):
        return ", ".join(f"{key}={item}" for key, item in value.items() if item is not None)
    return str(value)


def report_summary(report: dict[str, Any] | None) -> list[tuple[str, str]]:
    """Return ``(label, value)`` rows of the report's main figures, in display order."""
    if not report:
        return []
    labels = {
        "preset": "Preset",
        "method": "Method",
        "block_size": "Block size",
        "fp_perplexity": "Float perplexity",
        "quantized_perplexity": "Quantized perplexity",
        "recovery": "Recovery (float / quantized perplexity)",
        "calibration": "Calibration",
        "evaluation": "Evaluation",
        "quantize_seconds": "Quantization time (s)",
        "total_seconds": "Total time (s)",
        "peak_memory_bytes": "Peak memory (bytes)",
        "device": "Device",
    }
    return [
        (label, _format(report[field]))
        for field, label in labels.items()
        if report.get(field) is not None
    ]


def report_figure(report: dict[str, Any] | None) -> str | None:
    """Return an inline SVG comparing the perplexities, or ``None`` when the report has none."""
    values = report_perplexities(report)
    if not values:
        return None
    width, bar_height, gap = 420, 28, 12
    top = max(values.values()) or 1.0
    rows = []
    for index, (name, value) in enumerate(values.items()):
        y = index * (bar_height + gap)
        length = max(2.0, 260 * value / top)
        rows.append(
            f'<text x="0" y="{y + 19}" font-size="14">{escape(name)}</text>'
            f'<rect x="90" y="{y}" width="{length:.1f}" height="{bar_height}" fill="#4a7bd0"/>'
            f'<text x="{96 + length:.1f}" y="{y + 19}" font-size="14">{value:.2f}</text>'
        )
    height = len(values) * (bar_height + gap)
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" '
        f'aria-label="perplexity, lower is better">{"".join(rows)}</svg>'
    )
