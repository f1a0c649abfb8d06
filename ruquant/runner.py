"""End-to-end run: load, evaluate float, quantize, evaluate quantized, save, report.

The CLI's ``ruquant quantize`` and the service worker both call ``run_quantization``.
"""

from __future__ import annotations

import logging
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

import ruquant
from ruquant.calibration.data import load_calibration_windows
from ruquant.config import RunConfig
from ruquant.evaluate import PerplexityResult, evaluate_perplexity
from ruquant.export.tensors import resolve_float_dtype, round_float_tensors
from ruquant.models.loading import load_model
from ruquant.models.mappings import get_mapping
from ruquant.pipeline import quantize_model, resolve_model_block_size
from ruquant.progress import ProgressCallback, ProgressEvent, StopCheck
from ruquant.report.outputs import REPORT_FILE, bins_figure_layer, write_quantized_outputs
from ruquant.utils.memory import peak_memory_bytes

__all__ = ["REPORT_SCHEMA_VERSION", "library_versions", "resolve_device", "resolve_dtype", "run_quantization"]

logger = logging.getLogger(__name__)

# Version 2 added checkpoint, verification, base_model, zero_shot, figures, seeds, per-layer
# weight errors and the perplexities inside evaluation (docs/report-schema.md).
REPORT_SCHEMA_VERSION = 2

# Share of the whole run given to each stage, for ProgressEvent.fraction.
_STAGE_SPAN = {
    "loading": (0.0, 0.05),
    "evaluating-float": (0.05, 0.2),
    "calibrating": (0.2, 0.75),
    "evaluating": (0.75, 0.9),
    "saving": (0.9, 1.0),
}


def resolve_device(device: str) -> torch.device:
    """Return the compute device: ``auto`` is CUDA when present, else CPU."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    resolved = torch.device(device)
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} was requested but CUDA is not available; use --device cpu")
    return resolved


def resolve_dtype(dtype: str, device: torch.device) -> torch.dtype:
    """Return the storage dtype: ``auto`` is bfloat16 on CUDA and float32 on CPU."""
    if dtype == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    return {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}[dtype]


def library_versions() -> dict[str, str]:
    """Return the versions of the libraries that determine the numbers in a report."""
    import safetensors
    import transformers

    return {
        "ruquant": ruquant.__version__,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "safetensors": safetensors.__version__,
        "python": platform.python_version(),
    }


def _stage_callback(callback: ProgressCallback | None, span: str, stage: str) -> ProgressCallback | None:
    if callback is None:
        return None
    low, high = _STAGE_SPAN[span]

    def forward(event: ProgressEvent) -> None:
        fraction = low + (high - low) * (event.step / max(event.total, 1))
        callback(ProgressEvent(stage, event.step, event.total, fraction, event.message))

    return forward


def _perplexity_dict(result: PerplexityResult) -> dict[str, Any]:
    return {
        "perplexity": result.perplexity,
        "nll": result.nll,
        "windows": result.windows,
        "tokens": result.tokens,
        "seq_len": result.seq_len,
        "data": result.data,
        "seconds": result.seconds,
    }


def run_quantization(
    model: str | Path,
    output_dir: str | Path,
    run_config: RunConfig,
    *,
    progress: ProgressCallback | None = None,
    should_stop: StopCheck | None = None,
    log_context: dict[str, Any] | None = None,
    show_progress: bool = True,
    revision: str | None = None,
    token: str | None = None,
    on_stage: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Quantize ``model`` (a local folder, Hub id or bundled alias) and write a loadable checkpoint.

    The output folder gets the low-bit checkpoint, ``report.json``, a model card ``README.md``
    and its PNG figures, after the saved checkpoint was reloaded and checked against the
    quantized model (``CheckpointVerificationError`` when it does not match). A ``base_model``
    or ``model_id`` entry of ``log_context`` names the base model's Hub id on the card when
    ``model`` is a local folder. Returns the report.

    ``progress`` receives stage events with the whole run's fraction done, ``should_stop`` is
    checked between layers and windows (``Cancelled`` is raised), and ``on_stage`` is called
    with each stage name as the stage starts.
    """
    context = log_context or {}
    output = Path(output_dir)
    quant = run_config.quant
    device = resolve_device(run_config.device)
    dtype = resolve_dtype(run_config.dtype, device)
    started = time.perf_counter()

    def stage(name: str) -> None:
        logger.info("stage %s started %s", name, context)
        if on_stage is not None:
            on_stage(name)
        if progress is not None:
            low = _STAGE_SPAN.get(name, _STAGE_SPAN["saving"])[0]
            progress(ProgressEvent(name.split("-")[0], 0, 1, low, name))

    stage("loading")
    loaded_model, tokenizer = load_model(str(model), revision=revision, dtype=dtype, token=token)
    get_mapping(loaded_model)
    block_size = resolve_model_block_size(loaded_model.config, quant)
    calibration = load_calibration_windows(
        tokenizer,
        run_config.calibration.data,
        num_samples=run_config.calibration.samples,
        seq_len=run_config.calibration.seq_len,
        seed=run_config.calibration.seed,
    )

    def evaluate(span: str) -> PerplexityResult | None:
        if run_config.evaluation is None:
            return None
        stage(span)
        loaded_model.to(device)
        result = evaluate_perplexity(
            loaded_model,
            tokenizer,
            run_config.evaluation,
            progress=show_progress,
            callback=_stage_callback(progress, span, "evaluating"),
            should_stop=should_stop,
        )
        loaded_model.to("cpu")
        logger.info("%s perplexity %.4f %s", span, result.perplexity, context)
        return result

    fp_result = evaluate("evaluating-float")

    stage("calibrating")
    quant_started = time.perf_counter()
    result = quantize_model(
        loaded_model,
        calibration.input_ids,
        quant,
        device=device,
        progress=show_progress,
        callback=_stage_callback(progress, "calibrating", "calibrating"),
        should_stop=should_stop,
        keep_samples_layer=bins_figure_layer(int(loaded_model.config.num_hidden_layers)),
    )
    quantize_seconds = time.perf_counter() - quant_started
    # Round the unquantized tensors to their checkpoint dtype before the evaluation, so the
    # reported perplexity is the saved checkpoint's.
    round_float_tensors(loaded_model, resolve_float_dtype(dtype))

    q_result = evaluate("evaluating")

    stage("saving")
    report: dict[str, Any] = {
        "schema_version": REPORT_SCHEMA_VERSION,
        "model": str(model),
        "revision": revision,
        "method": quant.method.value,
        "w_bits": quant.w_bits,
        "a_bits": quant.a_bits,
        "preset": quant.preset,
        "stage2": quant.stage2,
        "block_size": block_size,
        "quant_config": quant.model_dump(mode="json"),
        "clip_ratios": {"weights": quant.resolved_w_clip_ratio, "activations": quant.resolved_a_clip_ratio},
        "fp_perplexity": None if fp_result is None else fp_result.perplexity,
        "quantized_perplexity": None if q_result is None else q_result.perplexity,
        "recovery": None
        if fp_result is None or q_result is None
        else fp_result.perplexity / q_result.perplexity,
        "calibration": {
            "data": calibration.description,
            "samples": run_config.calibration.samples,
            "seq_len": run_config.calibration.seq_len,
            "seed": run_config.calibration.seed,
        },
        "evaluation": None
        if fp_result is None
        else {"data": fp_result.data, "windows": fp_result.windows, "seq_len": fp_result.seq_len, "tokens": fp_result.tokens},
        "evaluation_results": {
            "float": None if fp_result is None else _perplexity_dict(fp_result),
            "quantized": None if q_result is None else _perplexity_dict(q_result),
        },
        "quantize_seconds": quantize_seconds,
        "timings": result.timings,
        "peak_memory_bytes": max(result.peak_memory_bytes, peak_memory_bytes(device)),
        "device": str(device),
        "dtype": str(dtype).removeprefix("torch."),
        "invariance": result.invariance,
        "layers": result.layers,
        "versions": library_versions(),
        "seeds": {"transform_search": quant.seed, "calibration": run_config.calibration.seed},
        "total_seconds": 0.0,
    }
    if report["evaluation"] is not None:
        report["evaluation"].update(
            baseline=report["fp_perplexity"], quantized=report["quantized_perplexity"], recovery=report["recovery"]
        )
    # from_pretrained records the folder it loaded from; the card reads the licence there.
    source_folder = Path(str(getattr(loaded_model.config, "name_or_path", "") or "."))
    write_quantized_outputs(
        loaded_model,
        tokenizer,
        output,
        report,
        quant=quant,
        verify_ids=calibration.input_ids,
        device=device,
        source_folder=source_folder,
        samples=result.activation_samples,
        context=context,
        started=started,
    )
    if progress is not None:
        progress(ProgressEvent("saving", 1, 1, 1.0, "done"))
    logger.info("wrote %s in %.1f s %s", output / REPORT_FILE, time.perf_counter() - started, context)
    return report
