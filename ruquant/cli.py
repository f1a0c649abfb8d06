"""Command line: ``ruquant quantize``, ``ruquant eval`` and ``ruquant export-smollm2``.

Exit codes: 0 success, 1 a failed check or run (invariance, NaN, cancelled), 2 invalid input
(bad option, unsupported architecture, missing model or data).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from pydantic import ValidationError

from ruquant.config import (
    PRESETS,
    CalibrationConfig,
    EvaluationConfig,
    GivensConvention,
    Method,
    QuantConfig,
    RunConfig,
)
from ruquant.errors import (
    BlockSizeError,
    DataError,
    ModelLoadError,
    RUQuantError,
    UnsupportedArchitectureError,
)

__all__ = ["build_parser", "main"]

logger = logging.getLogger("ruquant.cli")

_INPUT_ERRORS = (BlockSizeError, DataError, ModelLoadError, UnsupportedArchitectureError)
_DEFAULTS = QuantConfig()
_CALIBRATION = CalibrationConfig()
_EVALUATION = EvaluationConfig()


def _block_size(value: str) -> int | str:
    if value == "auto":
        return value
    try:
        return int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"block size must be 'auto' or an integer, got {value!r}") from None


def _add_model_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="Hub repo id, local model folder, or 'smollm2-135m' (the bundled model)")
    parser.add_argument("--revision", default=None, help="branch, tag or commit of a Hub repo")
    parser.add_argument("--device", default="auto", help="'auto' (CUDA when present), 'cpu', 'cuda' or 'cuda:N'")
    parser.add_argument(
        "--dtype",
        default="auto",
        choices=["auto", "float32", "float16", "bfloat16"],
        help="storage dtype (default: bfloat16 on CUDA, float32 on CPU)",
    )


def _add_eval_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--eval-data", default=_EVALUATION.data, help="'wikitext2', a text file or a WikiText-2 folder"
    )
    parser.add_argument("--eval-seq-len", type=int, default=_EVALUATION.seq_len, help="tokens per window")
    parser.add_argument(
        "--eval-windows", type=int, default=None, help="evaluate only the first N windows (default: all)"
    )


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of the ``ruquant`` command."""
    parser = argparse.ArgumentParser(prog="ruquant", description=__doc__.split("\n")[0])
    parser.add_argument("--log-level", default="INFO", help="logging level (DEBUG, INFO, WARNING)")
    commands = parser.add_subparsers(dest="command", required=True)

    quantize = commands.add_parser("quantize", help="quantize a model and write it with report.json")
    _add_model_options(quantize)
    quantize.add_argument("--output", "-o", required=True, type=Path, help="output folder")
    quantize.add_argument("--preset", choices=sorted(PRESETS), help="bit preset; overrides --w-bits/--a-bits")
    quantize.add_argument("--w-bits", type=int, default=_DEFAULTS.w_bits, help="weight bits, 2-8 or 16")
    quantize.add_argument("--a-bits", type=int, default=_DEFAULTS.a_bits, help="activation bits, 2-8 or 16")
    quantize.add_argument("--method", choices=[m.value for m in Method], default=_DEFAULTS.method.value)
    quantize.add_argument("--stage2", action="store_true", help="train the global Householder vectors")
    quantize.add_argument("--stage2-epochs", type=int, default=_DEFAULTS.stage2_epochs)
    quantize.add_argument("--stage2-lr", type=float, default=_DEFAULTS.stage2_lr)
    quantize.add_argument(
        "--stage2-token-chunk",
        type=int,
        default=_DEFAULTS.stage2_token_chunk,
        help="tokens per MLP pass in stage 2 (smaller keeps less memory; 0: the whole window)",
    )
    quantize.add_argument("--block-size", type=_block_size, default="auto", help="power of two, or 'auto'")
    quantize.add_argument("--greedy-steps", type=int, default=_DEFAULTS.greedy_steps, help="K")
    quantize.add_argument("--givens-rounds", type=int, default=_DEFAULTS.givens_rounds, help="lambda")
    quantize.add_argument(
        "--givens-convention", choices=[c.value for c in GivensConvention], default=_DEFAULTS.givens_convention.value
    )
    quantize.add_argument("--smooth-alpha", type=float, default=_DEFAULTS.smooth_alpha)
    quantize.add_argument("--w-clip-ratio", type=float, default=None, help="default 0.8 at <=4 bits, else 1.0")
    quantize.add_argument("--a-clip-ratio", type=float, default=None, help="default 0.9 at <=4 bits, else 1.0")
    quantize.add_argument("--seed", type=int, default=_DEFAULTS.seed, help="seed of the transform search")
    quantize.add_argument(
        "--calib-data", default=_CALIBRATION.data, help="'wikitext2', a text file or a WikiText-2 folder"
    )
    quantize.add_argument("--calib-samples", type=int, default=_CALIBRATION.samples, help="calibration windows")
    quantize.add_argument("--seq-len", type=int, default=_CALIBRATION.seq_len, help="calibration window length")
    quantize.add_argument("--calib-seed", type=int, default=_CALIBRATION.seed, help="seed of the window draw")
    _add_eval_options(quantize)
    quantize.add_argument("--no-eval", action="store_true", help="skip the perplexity evaluation")

    evaluate = commands.add_parser("eval", help="compute WikiText-2 perplexity of a model")
    _add_model_options(evaluate)
    _add_eval_options(evaluate)

    export = commands.add_parser("export-smollm2", help="convert the bundled SmolLM2-135M into a model folder")
    export.add_argument("--output", "-o", type=Path, default=None, help="folder (default: the cache folder)")
    return parser


def _run_config(args: argparse.Namespace) -> RunConfig:
    w_bits, a_bits = PRESETS[args.preset] if args.preset else (args.w_bits, args.a_bits)
    quant = QuantConfig(
        method=Method(args.method),
        w_bits=w_bits,
        a_bits=a_bits,
        w_clip_ratio=args.w_clip_ratio,
        a_clip_ratio=args.a_clip_ratio,
        block_size=args.block_size,
        smooth_alpha=args.smooth_alpha,
        greedy_steps=args.greedy_steps,
        givens_rounds=args.givens_rounds,
        givens_convention=GivensConvention(args.givens_convention),
        stage2=args.stage2,
        stage2_epochs=args.stage2_epochs,
        stage2_lr=args.stage2_lr,
        stage2_token_chunk=args.stage2_token_chunk,
        seed=args.seed,
    )
    calibration = CalibrationConfig(
        data=args.calib_data, samples=args.calib_samples, seq_len=args.seq_len, seed=args.calib_seed
    )
    evaluation = None
    if not args.no_eval:
        evaluation = EvaluationConfig(data=args.eval_data, seq_len=args.eval_seq_len, windows=args.eval_windows)
    return RunConfig(quant=quant, calibration=calibration, evaluation=evaluation, device=args.device, dtype=args.dtype)


def _write(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def _quantize(args: argparse.Namespace) -> int:
    from ruquant.runner import run_quantization

    config = _run_config(args)
    report = run_quantization(args.model, args.output, config, revision=args.revision)
    _write(f"method:                {report['method']} {report['preset']} (block size {report['block_size']})")
    if report["fp_perplexity"] is not None:
        _write(f"float perplexity:      {report['fp_perplexity']:.4f}")
        _write(f"quantized perplexity:  {report['quantized_perplexity']:.4f}")
        _write(f"evaluation:            {json.dumps(report['evaluation'])}")
    sizes = (report.get("checkpoint") or {}).get("sizes") or {}
    if "checkpoint_bytes" in sizes:
        _write(
            f"checkpoint:            {sizes['checkpoint_bytes'] / 2**20:.1f} MiB "
            f"({sizes['ratio_to_float16']:.1%} of float16)"
        )
    verification = report.get("verification") or {}
    if "passed" in verification:
        outcome = "passed" if verification["passed"] else "FAILED"
        _write(f"reload check:          {outcome} (logits relative error {verification['logits_rel_error']:.2e})")
    _write(f"quantize seconds:      {report['quantize_seconds']:.1f}")
    _write(f"peak memory:           {report['peak_memory_bytes'] / 2**20:.0f} MiB")
    _write(f"report:                {Path(args.output) / 'report.json'}")
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from ruquant.evaluate import evaluate_perplexity
    from ruquant.models.loading import load_model
    from ruquant.runner import resolve_device, resolve_dtype

    device = resolve_device(args.device)
    model, tokenizer = load_model(args.model, revision=args.revision, dtype=resolve_dtype(args.dtype, device))
    model.to(device)
    config = EvaluationConfig(data=args.eval_data, seq_len=args.eval_seq_len, windows=args.eval_windows)
    result = evaluate_perplexity(model, tokenizer, config)
    _write(f"perplexity: {result.perplexity:.4f} ({result.windows} windows of {result.seq_len} tokens, {result.data})")
    return 0


def _export_smollm2(args: argparse.Namespace) -> int:
    from ruquant.models.smollm2 import export_smollm2

    _write(str(export_smollm2(args.output)))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``ruquant`` command; returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    handlers = {"quantize": _quantize, "eval": _evaluate, "export-smollm2": _export_smollm2}
    try:
        return handlers[args.command](args)
    except ValidationError as exc:
        errors = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        sys.stderr.write(f"ruquant: error: invalid option: {errors}\n")
        return 2
    except _INPUT_ERRORS as exc:
        sys.stderr.write(f"ruquant: error: {exc}\n")
        return 2
    except (ValueError, FileNotFoundError) as exc:
        sys.stderr.write(f"ruquant: error: {exc}\n")
        return 2
    except RUQuantError as exc:
        sys.stderr.write(f"ruquant: error ({exc.code}): {exc}\n")
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
