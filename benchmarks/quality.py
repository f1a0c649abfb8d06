"""Transform quality per site: activation quantization error before and after each method's transform.

    python -m benchmarks.quality                     # reads results/quick-v1.json and sites-quick-v1.json

Each grid record holds, for every site, the mean per-token activation quantization error
(MSE / signal power, averaged over tokens of a calibration sample and over layers) of the raw
activations and of the transformed ones. This script averages the records over seeds and sets the
errors beside two references of the same width, bit width and clip ratio (``uniformity``):

- the uniform floor: tokens spread evenly over their range, the case where the uniform quantizer
  is also the Lloyd-Max (MSE-optimal) quantizer, quantized with clip ratio 1.0 (clipping only
  adds error there);
- the Gaussian reference: tokens with no outliers but a bell-shaped spread, at the activation clip
  ratio in use.

Where a group of records (bits, method, stage-2 epochs) has records of the current site-error
version (``benchmarks.run.SITE_ERRORS_VERSION``, from the grid or from ``--sites-only`` runs), only
those are used. Some methods fold their smoothing into the preceding module. Their older records
measured the error after the transform without that smoothing, so their rows are marked
"before fix".

"Gap closed" is the share of the distance between the raw error and the uniform floor that the
transform removes: 0 means no better than no transform, 1 means uniform-like activations.
It writes a Markdown table and a PNG plot.
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections import defaultdict
from functools import cache
from pathlib import Path
from typing import Any

from benchmarks.run import SITE_ERRORS_VERSION
from benchmarks.tables import METHOD_ORDER
from benchmarks.uniformity import reference_error
from ruquant.config import QuantConfig
from ruquant.transforms.site import Site

__all__ = ["SMOLLM2_SITE_WIDTHS", "plot_quality", "site_quality", "write_quality_markdown"]

RESULTS = Path(__file__).parent / "results"

# Activation width at each site of SmolLM2-135M (hidden 576, 9 heads of 64, intermediate 1536).
SMOLLM2_SITE_WIDTHS = {Site.ATTN_IN.value: 576, Site.O_IN.value: 576, Site.MLP_IN.value: 576, Site.DOWN_IN.value: 1536}

# Methods with a smoothing step. Where it is folded into the preceding module, their version 1
# errors after the transform miss it.
SMOOTHING_METHODS = frozenset({"smoothquant", "duquant", "ruquant", "ruquant-stage2"})


@cache
def _references(width: int, a_bits: int) -> tuple[float, float]:
    clip = QuantConfig(w_bits=a_bits, a_bits=a_bits).resolved_a_clip_ratio
    uniform = reference_error(width, a_bits, 1.0, kind="uniform")
    gaussian = reference_error(width, a_bits, clip, kind="gaussian")
    return uniform, gaussian


def site_quality(records: list[dict[str, Any]], widths: dict[str, int] = SMOLLM2_SITE_WIDTHS) -> list[dict[str, Any]]:
    """Return one row per (bits, method, site) with the errors averaged over seeds and the references."""
    groups: dict[tuple[int, int, str, str], list[dict[str, float]]] = defaultdict(list)
    versions: dict[tuple[int, int, str, str], list[int]] = defaultdict(list)
    for record in records:
        if record["w_bits"] != record["a_bits"]:
            # One-sided ablations add nothing here: W16A6 repeats W6A6's activation errors and W6A16 has none.
            continue
        for site, errors in (record.get("site_errors") or {}).items():
            method = record["method"]
            if record.get("stage2_epochs"):
                method = f"{method} ({record['stage2_epochs']} ep.)"
            groups[(record["w_bits"], record["a_bits"], method, site)].append(errors)
            versions[(record["w_bits"], record["a_bits"], method, site)].append(record.get("site_errors_version", 1))
    rows = []
    for group, all_entries in groups.items():
        w_bits, a_bits, method, site = group
        newest = max(versions[group])
        entries = [e for e, v in zip(all_entries, versions[group], strict=True) if v == newest]
        current = newest >= SITE_ERRORS_VERSION or method.split(" ")[0] not in SMOOTHING_METHODS
        before = statistics.fmean(e["act_error_before"] for e in entries)
        after = statistics.fmean(e["act_error_after"] for e in entries)
        uniform, gaussian = _references(widths[site], a_bits)
        gap = before - uniform
        # Only records written since 2026-12-05 07:00 contain weight errors.
        weight_before = [e["weight_error_before"] for e in entries if "weight_error_before" in e]
        weight_after = [e["weight_error_after"] for e in entries if "weight_error_after" in e]
        rows.append(
            {
                "bits": f"W{w_bits}A{a_bits}",
                "method": method,
                "site": site,
                "records": len(entries),
                "current": current,
                "error_before": before,
                "error_after": after,
                "uniform_floor": uniform,
                "gaussian_reference": gaussian,
                "after_over_floor": after / uniform,
                "gap_closed": (before - after) / gap if gap > 0 else 0.0,
                "weight_error_before": statistics.fmean(weight_before) if weight_before else None,
                "weight_error_after": statistics.fmean(weight_after) if weight_after else None,
            }
        )
    site_order = [site.value for site in Site]
    rows.sort(key=lambda r: (r["bits"], _method_rank(r["method"]), site_order.index(r["site"])))
    return rows


def _method_rank(method: str) -> int:
    """Sort key of a method label such as ``ruquant`` or ``ruquant-stage2 (1 ep.)``."""
    base = method.split(" ")[0]
    if base not in METHOD_ORDER:
        return len(METHOD_ORDER)
    return METHOD_ORDER.index(base)


def _optional(value: float | None) -> str:
    return "" if value is None else f"{value:.2e}"


def write_quality_markdown(rows: list[dict[str, Any]], path: Path) -> None:
    """Write the per-site quality table of ``rows`` to ``path``."""
    lines = [
        "| bits | method | site | error before | error after | uniform floor | Gaussian ref. | after / floor | gap closed "
        "| weight error before | weight error after | measured |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        weights = [_optional(row.get(key)) for key in ("weight_error_before", "weight_error_after")]
        lines.append(
            f"| {row['bits']} | {row['method']} | {row['site']} | {row['error_before']:.2e} | {row['error_after']:.2e} | "
            f"{row['uniform_floor']:.2e} | {row['gaussian_reference']:.2e} | {row['after_over_floor']:.2f} | "
            f"{row['gap_closed']:.1%} | {weights[0]} | {weights[1]} | {'current' if row['current'] else 'before fix'} |"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")


def plot_quality(rows: list[dict[str, Any]], path: Path) -> None:
    """Plot, per bit width, the error after each method's transform at each site (log scale) with the references."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    bits = sorted({r["bits"] for r in rows})
    sites = [site.value for site in Site]
    # One colour per method across every panel (tab10 order).
    labels = ["no transform", *sorted({r["method"] for r in rows}, key=_method_rank)]
    colours = {label: f"C{index % 10}" for index, label in enumerate(labels)}
    figure, axes = plt.subplots(1, len(bits), figsize=(6.5 * len(bits), 5.2), squeeze=False)
    for axis, preset in zip(axes[0], bits, strict=True):
        subset = [r for r in rows if r["bits"] == preset]
        methods = sorted({r["method"] for r in subset}, key=_method_rank)
        width = 0.8 / (len(methods) + 1)
        for offset, label in enumerate(["no transform", *methods]):
            values = []
            for site in sites:
                match = [r for r in subset if r["site"] == site and (label == "no transform" or r["method"] == label)]
                key = "error_before" if label == "no transform" else "error_after"
                values.append(statistics.fmean(r[key] for r in match) if match else float("nan"))
            axis.bar([i + offset * width for i in range(len(sites))], values, width, label=label, color=colours[label])
        centre = [i + 0.4 - width / 2 for i in range(len(sites))]
        floors = [next((r["uniform_floor"] for r in subset if r["site"] == s), float("nan")) for s in sites]
        gaussians = [next((r["gaussian_reference"] for r in subset if r["site"] == s), float("nan")) for s in sites]
        axis.scatter(centre, floors, marker="_", s=900, color="black", label="uniform floor", zorder=3)
        axis.scatter(centre, gaussians, marker="_", s=900, color="grey", label="Gaussian reference", zorder=3)
        axis.set_xticks(centre, sites)
        axis.set_yscale("log")
        axis.set_ylabel("activation error (MSE / signal power)")
        axis.set_title(f"{preset}: per-token activation error by site")
        axis.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.08), ncol=4)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)


def main(argv: list[str] | None = None) -> int:
    """Summarise the site errors of a results file as a table and a plot."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.quality",
        description=__doc__.split("\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--results", type=Path, default=RESULTS / "quick-v1.json", help="grid records")
    parser.add_argument(
        "--sites", type=Path, default=RESULTS / "sites-quick-v1.json", help="records of --sites-only runs (optional)"
    )
    parser.add_argument("--markdown", type=Path, default=RESULTS / "quality-quick-v1.md", help="table written")
    parser.add_argument(
        "--plot",
        type=Path,
        default=Path(__file__).parent.parent / "docs" / "figures" / "transform-quality.png",
        help="figure written",
    )
    args = parser.parse_args(argv)
    records = json.loads(args.results.read_text())
    if args.sites.exists():
        records += json.loads(args.sites.read_text())
    rows = site_quality(records)
    write_quality_markdown(rows, args.markdown)
    plot_quality(rows, args.plot)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
