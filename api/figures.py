"""A small SVG bar chart of baseline and quantized perplexity for the job page."""

from __future__ import annotations

from html import escape
from typing import Any

__all__ = ["report_figure", "report_perplexities"]


def _number(value: Any) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, dict):
        return _number(value.get("perplexity"))
    return None


def report_perplexities(report: dict[str, Any] | None) -> dict[str, float]:
    """Return ``{"baseline": ..., "quantized": ...}`` from the report, whichever are present.

    The report layout is the library's; this reads ``baseline``/``quantized`` as numbers or as
    objects with a ``perplexity`` field, at the top level or under ``evaluation``.
    """
    if not report:
        return {}
    source = report.get("evaluation") if isinstance(report.get("evaluation"), dict) else report
    values = {}
    for name in ("baseline", "quantized"):
        number = _number(source.get(name)) if isinstance(source, dict) else None
        if number is not None:
            values[name] = number
    return values


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
