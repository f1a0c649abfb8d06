"""The model card (``README.md``) of a quantized checkpoint, with Hub metadata, built from ``report.json``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

__all__ = ["render_model_card", "write_model_card"]


def _front_matter(report: dict[str, Any]) -> str:
    base = report["base_model"]
    lines = ["---"]
    if base.get("id"):
        lines += [f"base_model: {base['id']}", "base_model_relation: quantized"]
    tags = list(dict.fromkeys(["ruquant", report["preset"].lower(), report["method"], "quantized"]))
    lines += [
        "library_name: transformers",
        f"license: {base['license']}",
        "pipeline_tag: text-generation",
        "tags:",
        *(f"- {tag}" for tag in tags),
        "---",
    ]
    return "\n".join(lines)


def _number(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _evaluation_section(report: dict[str, Any]) -> list[str]:
    evaluation = report.get("evaluation")
    if not evaluation:
        return ["## Evaluation", "", "No evaluation ran (`--no-eval`).", ""]
    recovery = report.get("recovery")
    lines = [
        "## Evaluation",
        "",
        "| metric | baseline (float) | quantized | recovery |",
        "|---|---|---|---|",
        f"| perplexity on {evaluation['data']} | {_number(report['fp_perplexity'])} | "
        f"{_number(report['quantized_perplexity'])} | {'n/a' if recovery is None else f'{100 * recovery:.1f}%'} |",
        "",
        f"Settings: {evaluation['windows']} non-overlapping windows of {evaluation['seq_len']} tokens "
        f"({evaluation['tokens']} predicted tokens), perplexity = exp(mean token NLL); recovery = "
        "baseline perplexity / quantized perplexity. Both models ran in "
        f"{report['dtype']} on {report['device']}.",
        "",
        "![Perplexity, baseline and quantized](perplexity.png)",
        "",
    ]
    zero_shot = report.get("zero_shot") or {}
    ran, skipped = zero_shot.get("ran") or {}, zero_shot.get("skipped") or {}
    if ran:
        lines += ["Zero-shot accuracy (lm-evaluation-harness, quantized model):", ""]
        lines += [f"- {task}: {json.dumps(metrics)}" for task, metrics in ran.items()]
        lines.append("")
    if skipped:
        lines += ["Zero-shot tasks skipped:", ""]
        lines += [f"- {task}: {reason}" for task, reason in skipped.items()]
        lines.append("")
    return lines


def render_model_card(report: dict[str, Any], load_path: str) -> str:
    """Return the model card for ``report`` (the ``report.json`` dict); ``load_path`` goes in the code sample."""
    base = report["base_model"]
    quant = report["quant_config"]
    calibration = report["calibration"]
    checkpoint = report["checkpoint"]
    sizes = checkpoint["sizes"]
    verification = report["verification"]
    name = base.get("id") or report["model"]
    figures = report.get("figures") or {}
    lines = [
        _front_matter(report),
        "",
        f"# {name}, {report['preset']} ({report['method']})",
        "",
        f"A {report['preset']} post-training quantization of `{name}` made with ruquant "
        f"{report['versions']['ruquant']}: weights are {report['w_bits']}-bit integers and activations "
        f"are quantized to {report['a_bits']} bits per token at run time.",
        "",
        "## What was done",
        "",
        f"- Method `{report['method']}`: smoothing (alpha {quant['smooth_alpha']}), block transforms of size "
        f"{report['block_size']}, zigzag permutation and a global Householder reflection at each of the four "
        "activation sites of every decoder layer (attention input, o_proj input, MLP input, down_proj input), "
        "as far as the method uses them. The transforms are orthogonal, so the unquantized model is unchanged; "
        "their weight side and the foldable smoothing are fused into the stored weights.",
        f"- Weights: per-output-channel asymmetric round-to-nearest, {report['w_bits']} bits, clip ratio "
        f"{report['clip_ratios']['weights']}. Activations: dynamic per-token asymmetric min-max, "
        f"{report['a_bits']} bits, clip ratio {report['clip_ratios']['activations']}. Q and K get a per-head "
        "Hadamard rotation and are quantized per (token, head) like V; embeddings and lm_head are not quantized.",
        f"- Calibration: {calibration['samples']} windows of {calibration['seq_len']} tokens from "
        f"{calibration['data']} (seed {calibration['seed']}); transform search seed {quant['seed']}"
        f"{', with stage-2 training of the Householder vectors' if report['stage2'] else ''}.",
        f"- Checkpoint: `{checkpoint['format']}` version {checkpoint['format_version']}, "
        f"{sizes['checkpoint_bytes'] / 2**20:.1f} MiB of weights, "
        f"{100 * sizes['ratio_to_float16']:.1f}% of the same model in float16 "
        f"({sizes['float16_bytes'] / 2**20:.1f} MiB, 2 bytes per parameter). Unquantized tensors are "
        f"stored in {checkpoint['float_dtype']}. The layout is documented in ruquant's `docs/checkpoint-format.md`.",
        f"- Reload check: the saved folder was loaded with `from_pretrained` and compared with the quantized "
        f"model in memory on {verification['windows']} windows of {verification['seq_len']} tokens: relative "
        f"logits error {verification['logits_rel_error']:.2e} (tolerance {verification['tolerance']:.0e}).",
        "",
        "## How to load it",
        "",
        "```python",
        "import ruquant  # registers the 'ruquant' quantization method with transformers",
        "from transformers import AutoModelForCausalLM, AutoTokenizer",
        "",
        f"path = {load_path!r}",
        "tokenizer = AutoTokenizer.from_pretrained(path)",
        "model = AutoModelForCausalLM.from_pretrained(path)",
        'inputs = tokenizer("The capital of France is", return_tensors="pt")',
        "output = model.generate(**inputs, max_new_tokens=20, do_sample=False)",
        "print(tokenizer.decode(output[0], skip_special_tokens=True))",
        "```",
        "",
        "Install the ruquant package first. Without `import ruquant`, transformers (5.25) only warns "
        "that the `ruquant` quantization method is unknown and builds a float model whose linear "
        "weights are missing, which produces garbage.",
        "",
        *_evaluation_section(report),
    ]
    if figures.get("activation_bins"):
        lines += [
            "## What the transform does",
            "",
            f"Activations of {figures['activation_bins_site']} in decoder layer {figures['activation_bins_layer']}, "
            "placed on their per-token quantization grid (the site with the largest activation quantization error "
            "in that layer). The top row shows how the values fill the bins, the bottom row how far each bin's "
            "centroid sits from the midpoint that a uniform quantizer reconstructs. The transform exists to "
            "spread the values evenly over the grid and so bring the centroids to the midpoints.",
            "",
            "![Activations inside their quantization bins before and after the transform](activation_bins.png)",
            "",
        ]
    if figures.get("layer_errors"):
        lines += ["Per-layer quantization error (MSE / signal power):", "", "![Per-layer quantization error](layer_errors.png)", ""]
    lines += [
        "## Limitations",
        "",
        "- Loading needs the `ruquant` package, and `import ruquant` before `from_pretrained`.",
        "- Without an integer kernel for the device (the default on CPU), each forward pass expands the "
        "weight codes to floats, so the model is smaller on disk and in memory but not faster than float. "
        "On CUDA, weights and activations of at most 8 bits multiply as int8 codes with `torch._int_mm`.",
        "- Quantization costs accuracy: see the evaluation table, measured with the settings above only.",
        "- Embeddings and lm_head stay in 16-bit floats, which bounds how small the checkpoint gets.",
        "- The per-token activation quantizer runs in floating point on every forward pass; the KV cache "
        "is kept in floating point.",
        "",
    ]
    if not base.get("id"):
        lines += ["- The base model's Hub id is not known, so the card has no `base_model` field.", ""]
    return "\n".join(lines)


def write_model_card(folder: Path, report: dict[str, Any], load_path: str) -> Path:
    """Write ``README.md`` into ``folder`` and return its path."""
    path = folder / "README.md"
    path.write_text(render_model_card(report, load_path), encoding="utf-8")
    return path
