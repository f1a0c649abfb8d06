"""Sequential (layer-by-layer) quantization of a causal LM.

For each decoder layer, on inputs produced by the already-quantized earlier layers:
1. run the float layer, recording each site's input statistics;
2. search each site's transform and fold its weight side into the consuming linear layers;
3. check the rotation-only layer (no quantization) against the float layer;
4. optionally train the global Householder vectors (stage 2);
5. quantize the weights and run the quantized layer to produce the next layer's inputs.
Only the current layer and the calibration activations need to be on the compute device.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from ruquant.calibration.capture import SiteRecorder, capture_layer_inputs, observe_layer, run_layer
from ruquant.config import FLOAT_BITS, Method, QuantConfig
from ruquant.errors import NonFiniteError
from ruquant.models.attention import use_quantized_attention
from ruquant.models.invariance import InvarianceChecker
from ruquant.models.layer_surgery import (
    attach_attention_quantizer,
    can_fold_smoothing,
    install_site,
    quant_linears,
    set_quantization,
    share_site_inputs,
)
from ruquant.models.mappings import ArchitectureMapping, get_mapping, site_widths
from ruquant.progress import Cancelled, ProgressCallback, ProgressEvent, StopCheck
from ruquant.quant.primitives import fake_quantize
from ruquant.stage2 import train_omegas
from ruquant.transforms.blocks import resolve_block_size
from ruquant.transforms.search import SiteStatistics, build_site_transform
from ruquant.transforms.site import Site, SiteTransform
from ruquant.utils.memory import (
    MemoryTrace,
    copy_cpu_parameters,
    peak_memory_bytes,
    release_free_memory,
    reset_peak_memory,
)

__all__ = ["QuantizationResult", "quantize_model", "resolve_model_block_size"]

logger = logging.getLogger(__name__)

_BLOCK_METHODS = (Method.HADAMARD, Method.DUQUANT, Method.RUQUANT)


@dataclass
class QuantizationResult:
    """Outcome of ``quantize_model``: settings in effect, per-layer metrics, timings and memory."""

    config: QuantConfig
    block_size: int | None
    num_layers: int
    layers: list[dict[str, Any]] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    invariance: dict[str, Any] = field(default_factory=dict)
    peak_memory_bytes: int = 0
    # Memory after each phase ({"phase", "layer", "current_bytes", "peak_bytes"}), in run order.
    memory_trace: list[dict[str, Any]] = field(default_factory=list)
    # Site name -> {"raw": [T, C], "transformed": [T, C]} activation samples (CPU, float32) of the
    # layer chosen with ``keep_samples_layer``; left out of ``to_dict``.
    activation_samples: dict[str, dict[str, torch.Tensor]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-serializable summary."""
        return {
            "config": self.config.model_dump(mode="json"),
            "block_size": self.block_size,
            "num_layers": self.num_layers,
            "layers": self.layers,
            "timings": self.timings,
            "invariance": self.invariance,
            "peak_memory_bytes": self.peak_memory_bytes,
            "memory_trace": self.memory_trace,
        }


def resolve_model_block_size(model_config: object, config: QuantConfig) -> int | None:
    """Return the block size for this model and method (None for methods without block transforms)."""
    if config.method not in _BLOCK_METHODS:
        return None
    widths = {site.value: width for site, width in site_widths(model_config).items()}
    return resolve_block_size(widths, config.block_size)


def _site_generator(seed: int, layer_index: int, site: Site) -> torch.Generator:
    """Return a CPU generator seeded per (seed, layer, site), so each draw is independent of run order."""
    site_index = list(Site).index(site)
    return torch.Generator().manual_seed(seed * 1_000_003 + layer_index * 16 + site_index)


def _relative_quant_error(x: torch.Tensor, num_bits: int, clip_ratio: float) -> float:
    """Return the mean per-token quantization error MSE / signal power of ``x`` ([T, C])."""
    x = x.to(torch.float32)
    err = (fake_quantize(x, num_bits, clip_ratio) - x).pow(2).mean(dim=-1)
    power = x.pow(2).mean(dim=-1).clamp(min=1e-12)
    return float((err / power).mean())


def _weight_quant_error(weights: list[torch.Tensor], num_bits: int, clip_ratio: float) -> float:
    """Return the per-output-channel RTN error (MSE / signal power, averaged over rows) of stacked weights."""
    return _relative_quant_error(torch.cat([w.detach() for w in weights], dim=0), num_bits, clip_ratio)


def _site_statistics(
    layer: nn.Module, mapping: ArchitectureMapping, recorder: SiteRecorder, site: Site
) -> SiteStatistics:
    consumers = mapping.site_consumers(site)
    weight_absmax = torch.stack(
        [layer.get_submodule(path).weight.detach().abs().amax(dim=0).float().cpu() for path in consumers]
    ).amax(dim=0)
    first = consumers[0]
    return SiteStatistics(
        absmax=recorder.absmax[first].cpu(), mean=recorder.mean(first).cpu(), weight_absmax=weight_absmax
    )


def _check_statistics(stats: SiteStatistics, layer_index: int, site: Site) -> None:
    for name, tensor in (("activations", stats.mean), ("activations", stats.absmax), ("weights", stats.weight_absmax)):
        if not torch.isfinite(tensor).all():
            raise NonFiniteError(
                f"decoder layer {layer_index}, site {site.value}: the calibration {name} contain NaN or inf; "
                "check the model's weights and dtype (float16 overflows on some models: try bfloat16 or float32)"
            )


def _check_finite(hidden: torch.Tensor, layer_index: int, what: str) -> None:
    if not torch.isfinite(hidden).all():
        bad = int((~torch.isfinite(hidden)).sum())
        raise NonFiniteError(
            f"decoder layer {layer_index} produced {bad} NaN or inf values in its {what}; "
            "check the model's weights and dtype (float16 overflows on some models: try bfloat16 or float32)"
        )


@torch.no_grad()
def quantize_model(
    model: nn.Module,
    calibration_ids: torch.Tensor,
    config: QuantConfig,
    *,
    device: torch.device | str = "cpu",
    progress: bool = True,
    callback: ProgressCallback | None = None,
    should_stop: StopCheck | None = None,
    check_windows: int = 1,
    keep_samples_layer: int | None = None,
) -> QuantizationResult:
    """Quantize ``model`` in place with ``config`` using ``calibration_ids`` ([N, T] token ids).

    Each decoder layer's linear modules become ``QuantLinear`` modules and its attention gets a
    Q/K/V quantizer; the model switches to the ``ruquant_sdpa`` attention implementation.
    Raises ``InvarianceError`` if the transforms alone change a layer's or the model's output
    beyond the tolerance of the storage dtype, ``NonFiniteError`` on NaN/inf, and ``Cancelled``
    when ``should_stop()`` returns True (checked before each layer). ``keep_samples_layer``
    keeps that decoder layer's site activation samples before and after the transforms in
    ``QuantizationResult.activation_samples``.
    """
    device = torch.device(device)
    mapping = get_mapping(model)
    block_size = resolve_model_block_size(model.config, config)
    layers: nn.ModuleList = model.get_submodule(mapping.layers)
    num_layers = len(layers)
    head_dim = site_widths(model.config)[Site.O_IN] // int(model.config.num_attention_heads)
    dtype = next(model.parameters()).dtype
    result = QuantizationResult(config=config, block_size=block_size, num_layers=num_layers)
    timings = {"calibration_forward": 0.0, "transform_search": 0.0, "stage2": 0.0, "invariance_check": 0.0}
    reset_peak_memory(device)
    trace = MemoryTrace(device)
    trace.mark("start")
    started = time.perf_counter()
    # NOTE: the memory bound (twice the float model plus one layer's inputs) holds on the SmolLM2-135M
    # runs measured without stage 2. Stage 2 exceeds it by the autograd state of one window (about 570 MiB).
    copy_cpu_parameters(model)
    trace.mark("parameter copy")
    logger.info(
        "quantizing %d layers: method=%s %s block_size=%s stage2=%s calibration=%s",
        num_layers, config.method.value, config.preset, block_size, config.stage2, tuple(calibration_ids.shape),
    )

    use_quantized_attention(model)
    use_cache = getattr(model.config, "use_cache", None)
    model.config.use_cache = False
    offload = next(layers[0].parameters()).device

    t0 = time.perf_counter()
    hidden, layer_kwargs = capture_layer_inputs(model, layers, calibration_ids, device)
    hidden = hidden.to(dtype)
    timings["calibration_forward"] += time.perf_counter() - t0
    # NOTE: stage 2 keeps this second [N, T, C] stream in the model dtype for its whole run, which
    # puts its peak memory one calibration stream above that of a run without stage 2.
    fp_hidden = hidden.clone() if config.stage2 else None
    checker = InvarianceChecker(hidden[:check_windows].clone(), dtype)
    trace.mark("input capture")

    bar = tqdm(range(num_layers), desc="Quantizing layers", unit="layer", disable=not progress)
    for index in bar:
        if should_stop is not None and should_stop():
            raise Cancelled(f"stopped before decoder layer {index} of {num_layers}")
        layer = layers[index].to(device)
        layer_started = time.perf_counter()

        # 1. Float pass: site statistics on the quantized stream, float targets for stage 2.
        t0 = time.perf_counter()
        recorder = SiteRecorder()
        site_modules = {
            mapping.site_consumers(site)[0]: layer.get_submodule(mapping.site_consumers(site)[0]) for site in Site
        }
        # The float outputs of this pass are never used (stage 2's targets come from the float
        # stream), so it only feeds the recorder and keeps no [N, T, C] output buffer.
        with recorder.recording(site_modules):
            observe_layer(layer, hidden, layer_kwargs, device)
        # Stage 2's float targets overwrite the float stream in place because they are the next layer's float inputs.
        fp_targets = run_layer(layer, fp_hidden, layer_kwargs, device, out=fp_hidden) if fp_hidden is not None else None
        checker.record_reference(layer, layer_kwargs, device, mapping, recorder)
        timings["calibration_forward"] += time.perf_counter() - t0
        trace.mark("statistics pass", index)

        # 2. Transform search and weight fold.
        t0 = time.perf_counter()
        transforms: dict[Site, SiteTransform] = {}
        site_metrics: dict[str, dict[str, float | None]] = {}
        weight_errors: dict[str, dict[str, float]] = {}
        if config.w_bits != FLOAT_BITS:
            for site in Site:
                weights = [layer.get_submodule(path).weight for path in mapping.site_consumers(site)]
                before = _weight_quant_error(weights, config.w_bits, config.resolved_w_clip_ratio)
                weight_errors[site.value] = {"before": before}
        for site in (Site.DOWN_IN, Site.O_IN, Site.MLP_IN, Site.ATTN_IN):
            stats = _site_statistics(layer, mapping, recorder, site)
            _check_statistics(stats, index, site)
            transform = build_site_transform(
                stats,
                config,
                block_size=block_size or 0,
                generator=_site_generator(config.seed, index, site),
                smooth_online=not can_fold_smoothing(layer, mapping, site),
            ).to(device)
            transforms[site] = transform
        # Producers are folded before consumers are replaced: down-in scales up_proj rows before
        # mlp-in replaces up_proj, and o-in scales v_proj rows before attn-in replaces v_proj.
        for site in (Site.DOWN_IN, Site.O_IN, Site.MLP_IN, Site.ATTN_IN):
            install_site(layer, mapping, site, transforms[site], config)
        attach_attention_quantizer(layer, mapping, config, head_dim, _site_generator(config.seed, index, Site.O_IN))
        share_site_inputs(layer)
        release_free_memory()  # the search's temporaries
        timings["transform_search"] += time.perf_counter() - t0
        trace.mark("transform search", index)

        # 3. Rotation-only check against the float layer.
        t0 = time.perf_counter()
        set_quantization(layer, False)
        invariance = checker.check_layer(index, layer, layer_kwargs, device, mapping, transforms)
        set_quantization(layer, True)
        timings["invariance_check"] += time.perf_counter() - t0
        trace.mark("invariance check", index)

        # 4. Stage 2.
        stage2_stats: dict[str, float] | None = None
        if config.stage2:
            t0 = time.perf_counter()
            stage2_stats = train_omegas(
                layer,
                list(transforms.values()),
                hidden,
                fp_targets,
                layer_kwargs,
                device,
                epochs=config.stage2_epochs,
                lr=config.stage2_lr,
                mapping=mapping,
                token_chunk=config.stage2_token_chunk,
            )
            timings["stage2"] += time.perf_counter() - t0
            trace.mark("stage 2", index)

        # 5. Quantize the weights and produce the next layer's inputs.
        if config.w_bits != FLOAT_BITS:
            for site in Site:
                consumers = [layer.get_submodule(path) for path in mapping.site_consumers(site)]
                for linear in consumers:
                    linear.fold_omega()
                weight_errors[site.value]["after"] = _weight_quant_error(
                    [linear.weight for linear in consumers], config.w_bits, config.resolved_w_clip_ratio
                )
        for linear in quant_linears(layer):
            linear.finalize()
        if config.a_bits != FLOAT_BITS or index == keep_samples_layer:
            for site in Site:
                sample = recorder.sample[mapping.site_consumers(site)[0]].to(device)
                # The sample was recorded before the smoothing was folded into its producer.
                transformed = transforms[site].transform_unfolded(sample)
                if index == keep_samples_layer:
                    result.activation_samples[site.value] = {
                        "raw": sample.detach().to("cpu", torch.float32),
                        "transformed": transformed.detach().to("cpu", torch.float32),
                    }
                if config.a_bits != FLOAT_BITS:
                    site_metrics[site.value] = {
                        "act_error_before": _relative_quant_error(sample, config.a_bits, config.resolved_a_clip_ratio),
                        "act_error_after": _relative_quant_error(transformed, config.a_bits, config.resolved_a_clip_ratio),
                    }
        t0 = time.perf_counter()
        hidden = run_layer(layer, hidden, layer_kwargs, device, out=hidden)  # in place: one [N, T, C] buffer
        timings["calibration_forward"] += time.perf_counter() - t0
        trace.mark("quantized pass", index)
        _check_finite(hidden, index, "quantized output")
        if fp_targets is not None:
            _check_finite(fp_targets, index, "float output")

        layers[index] = layer.to(offload)
        result.layers.append(
            {
                "layer": index,
                "sites": site_metrics,
                "weight_errors": weight_errors,
                "invariance_rel_error": invariance,
                "stage2": stage2_stats,
                "seconds": time.perf_counter() - layer_started,
            }
        )
        logger.info(
            "layer %d/%d done in %.1f s (invariance rel error %.2e)",
            index + 1, num_layers, time.perf_counter() - layer_started, invariance["layer"],
        )
        if callback is not None:
            callback(ProgressEvent("calibrating", index + 1, num_layers, (index + 1) / num_layers, f"layer {index + 1}/{num_layers}"))
        del recorder, fp_targets
        release_free_memory()

    t0 = time.perf_counter()
    result.invariance = checker.check_logits(model, mapping, device)
    result.invariance["layers_max"] = max(r["invariance_rel_error"]["layer"] for r in result.layers)
    timings["invariance_check"] += time.perf_counter() - t0
    trace.mark("logits check")
    model.config.use_cache = use_cache
    timings["total"] = time.perf_counter() - started
    result.timings = timings
    result.peak_memory_bytes = peak_memory_bytes(device)
    result.memory_trace = trace.marks
    logger.info("quantization done in %.1f s: %s", timings["total"], {k: round(v, 1) for k, v in timings.items()})
    return result
