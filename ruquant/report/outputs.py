"""The saving stage of a run: checkpoint, reload check, figures, ``report.json`` and model card.

The order guarantees that a model card never describes a checkpoint that does not load: the
card and ``report.json`` are written only after the saved folder was reloaded with transformers
and matched the quantized model in memory (``CheckpointVerificationError`` otherwise).
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import PreTrainedTokenizerBase

from ruquant.config import FLOAT_BITS, QuantConfig
from ruquant.export.checkpoint import save_quantized_checkpoint
from ruquant.export.tensors import resolve_float_dtype
from ruquant.export.verify import load_checkpoint, verify_checkpoint
from ruquant.report.card import write_model_card
from ruquant.report.figures import (
    ACTIVATION_BINS_FILE,
    LAYER_ERRORS_FILE,
    PERPLEXITY_FILE,
    plot_activation_bins,
    plot_layer_errors,
    plot_perplexity,
)
from ruquant.report.source import describe_base_model
from ruquant.report.zero_shot import requested_tasks, run_zero_shot

__all__ = ["REPORT_FILE", "bins_figure_layer", "pick_bins_site", "write_quantized_outputs"]

logger = logging.getLogger(__name__)

REPORT_FILE = "report.json"
# Windows of the calibration set the reload check runs.
VERIFY_WINDOWS = 2


def bins_figure_layer(num_layers: int) -> int:
    """Return the decoder layer whose activations the bins figure shows (the middle one)."""
    return num_layers // 2


def pick_bins_site(layer_record: dict[str, Any] | None, samples: dict[str, Any]) -> str | None:
    """Return the site with the largest activation quantization error before the transform."""
    if not samples:
        return None
    sites = (layer_record or {}).get("sites") or {}
    scored = [(metrics.get("act_error_before") or 0.0, site) for site, metrics in sites.items() if site in samples]
    return max(scored)[1] if scored else next(iter(samples))


def _figures(
    output: Path, report: dict[str, Any], quant: QuantConfig, samples: dict[str, dict[str, torch.Tensor]]
) -> dict[str, Any]:
    figures: dict[str, Any] = {}
    layers = report.get("layers") or []
    layer_index = bins_figure_layer(len(layers)) if layers else None
    record = layers[layer_index] if layer_index is not None and layer_index < len(layers) else None
    site = pick_bins_site(record, samples)
    if site is not None:
        bits = quant.a_bits if quant.a_bits != FLOAT_BITS else 4
        clip = quant.resolved_a_clip_ratio if quant.a_bits != FLOAT_BITS else 1.0
        plot_activation_bins(
            samples[site]["raw"],
            samples[site]["transformed"],
            bits,
            clip,
            output / ACTIVATION_BINS_FILE,
            title=f"{site} activations of decoder layer {layer_index} on the {bits}-bit per-token grid "
            f"(method {quant.method.value})",
        )
        figures.update(activation_bins=ACTIVATION_BINS_FILE, activation_bins_site=site, activation_bins_layer=layer_index)
    if plot_layer_errors(layers, output / LAYER_ERRORS_FILE) is not None:
        figures["layer_errors"] = LAYER_ERRORS_FILE
    if report.get("fp_perplexity") is not None and report.get("quantized_perplexity") is not None:
        data = (report.get("evaluation") or {}).get("data", "the evaluation text")
        plot_perplexity(report["fp_perplexity"], report["quantized_perplexity"], quant.preset, data, output / PERPLEXITY_FILE)
        figures["perplexity"] = PERPLEXITY_FILE
    return figures


def write_quantized_outputs(
    model: nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    output: Path,
    report: dict[str, Any],
    *,
    quant: QuantConfig,
    verify_ids: torch.Tensor,
    device: torch.device,
    source_folder: Path | None,
    samples: dict[str, dict[str, torch.Tensor]],
    context: dict[str, Any] | None = None,
    started: float | None = None,
) -> dict[str, Any]:
    """Save the checkpoint, check the reload, then write figures, ``report.json`` and ``README.md``.

    ``report`` is the run's report so far (settings, perplexities, per-layer metrics); the
    checkpoint, reload check, sizes, zero-shot results, base model and figure names are added to
    it in place, and it is returned. ``started`` (a ``time.perf_counter`` value) sets
    ``total_seconds``. Raises ``CheckpointVerificationError`` before writing the
    report and card when the reloaded checkpoint does not match ``model``.
    """
    dtype = next(model.parameters()).dtype
    summary = save_quantized_checkpoint(model, tokenizer, output, quant, float_dtype=resolve_float_dtype(dtype))
    verification = verify_checkpoint(model, output, verify_ids[:VERIFY_WINDOWS], device=device)
    base = describe_base_model(str(report["model"]), source_folder, context)
    report["checkpoint"] = summary.to_dict()
    report["verification"] = verification.to_dict()
    report["base_model"] = {"id": base.base_model, "license": base.license, "license_source": base.license_source}
    report["zero_shot"] = run_zero_shot(lambda: load_checkpoint(output, dtype).to(device), tokenizer, requested_tasks())
    report["figures"] = _figures(output, report, quant, samples)
    if started is not None:
        report["total_seconds"] = time.perf_counter() - started
    (output / REPORT_FILE).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    write_model_card(output, report, str(output))
    logger.info(
        "wrote %s: %.1f MiB of weights (%.1f%% of float16), reload check rel error %.2e",
        output, summary.weight_bytes / 2**20, 100 * summary.weight_bytes / max(summary.float16_bytes, 1),
        verification.logits_rel_error,
    )
    return report
