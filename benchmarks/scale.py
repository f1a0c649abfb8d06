"""Time and peak memory of one decoder layer of Llama-2-7B and -13B shapes, projected to a full run.

    python -m benchmarks.scale                       # CPU, float32, 2 and 4 windows
    python -m benchmarks.scale --device cuda --dtype bfloat16 --windows 8 16

Weights are random: the transform search and the quantizers do not depend on the weight values
for timing. Per-layer time is fitted as t(N) = fixed + N * per_window over the measured window
counts N (see ``project``), then projected to 128 calibration windows of 2048 tokens and every
layer of the model.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

import torch
from transformers import LlamaConfig, LlamaForCausalLM

from ruquant.config import QuantConfig
from ruquant.pipeline import quantize_model
from ruquant.utils.memory import peak_memory_bytes, reset_peak_memory

__all__ = ["SHAPES", "main", "measure_layer"]

logger = logging.getLogger("benchmarks.scale")

SHAPES: dict[str, dict[str, int]] = {
    "llama-2-7b": {"hidden_size": 4096, "intermediate_size": 11008, "num_attention_heads": 32, "num_hidden_layers": 32},
    "llama-2-13b": {"hidden_size": 5120, "intermediate_size": 13824, "num_attention_heads": 40, "num_hidden_layers": 40},
}


def _one_layer_model(shape: dict[str, int], dtype: torch.dtype) -> LlamaForCausalLM:
    config = LlamaConfig(
        vocab_size=64,
        hidden_size=shape["hidden_size"],
        intermediate_size=shape["intermediate_size"],
        num_attention_heads=shape["num_attention_heads"],
        num_key_value_heads=shape["num_attention_heads"],
        num_hidden_layers=1,
        max_position_embeddings=4096,
    )
    generator = torch.Generator().manual_seed(0)
    model = LlamaForCausalLM(config)
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.dim() > 1:
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.02)
    return model.to(dtype).eval()


def measure_layer(name: str, windows: int, *, seq_len: int, device: torch.device, dtype: torch.dtype) -> dict[str, Any]:
    """Quantize one random layer of shape ``name`` on ``windows`` windows; returns timings and memory."""
    model = _one_layer_model(SHAPES[name], dtype)
    ids = torch.randint(0, 64, (windows, seq_len), generator=torch.Generator().manual_seed(1))
    reset_peak_memory(device)
    started = time.perf_counter()
    result = quantize_model(model, ids, QuantConfig(w_bits=4, a_bits=4), device=device, progress=False)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return {
        "shape": name,
        "windows": windows,
        "seq_len": seq_len,
        "device": str(device),
        "dtype": str(dtype).removeprefix("torch."),
        "seconds": time.perf_counter() - started,
        "timings": result.timings,
        "peak_memory_bytes": peak_memory_bytes(device),
    }


def project(measurements: list[dict[str, Any]], calibration_windows: int = 128) -> dict[str, float]:
    """Project one full run of the model from per-layer measurements at two window counts.

    The calibration forward passes grow with the window count: their slope between the first and
    last measurement is the per-window cost, and their intercept (statistics on the position-wise
    mean, set-up) is fixed. The transform search and the rotation-only check (on one window) do
    not grow with it: their mean plus that intercept is the fixed cost per layer.
    """
    first, last = measurements[0], measurements[-1]
    forward = [m["timings"]["calibration_forward"] for m in (first, last)]
    per_window = (forward[1] - forward[0]) / (last["windows"] - first["windows"])
    intercept = max(forward[0] - per_window * first["windows"], 0.0)
    fixed = intercept + sum(
        m["timings"]["transform_search"] + m["timings"]["invariance_check"] for m in measurements
    ) / len(measurements)
    layers = SHAPES[first["shape"]]["num_hidden_layers"]
    layer_seconds = fixed + calibration_windows * per_window
    return {
        "per_window_seconds": per_window,
        "fixed_seconds_per_layer": fixed,
        "projected_layer_seconds": layer_seconds,
        "projected_model_seconds": layers * layer_seconds,
        "calibration_windows": calibration_windows,
        "layers": layers,
    }


def main(argv: list[str] | None = None) -> int:
    """Measure each shape at each window count and write the JSON records."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.scale",
        description=__doc__.split("\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--shapes", nargs="+", default=list(SHAPES), choices=list(SHAPES), help="layer shapes to measure")
    parser.add_argument(
        "--windows", nargs="+", type=int, default=[2, 4], help="calibration window counts to fit (two or more distinct values)"
    )
    parser.add_argument("--seq-len", type=int, default=2048, help="tokens per calibration window")
    parser.add_argument("--device", default="cpu", help="torch device to run on, such as cpu or cuda")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"], help="layer dtype")
    parser.add_argument(
        "--output", type=Path, default=Path(__file__).parent / "results" / "scale.json", help="JSON file the records are added to"
    )
    args = parser.parse_args(argv)
    # The projection fits a line through the first and last window count, so it needs two distinct ones.
    if len(set(args.windows)) < 2:
        parser.error(f"--windows needs at least two distinct window counts, got {args.windows}")
    if min(args.windows) < 1:
        parser.error(f"--windows must be positive, got {args.windows}")
    if args.seq_len < 1:
        parser.error(f"--seq-len must be positive, got {args.seq_len}")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    # NOTE: only the CPU path has run so far. The CUDA path (--device cuda) has never been run on a GPU.
    device = torch.device(args.device)
    dtype = getattr(torch, args.dtype)
    records = json.loads(args.output.read_text()) if args.output.exists() else []
    for name in args.shapes:
        measurements = [measure_layer(name, n, seq_len=args.seq_len, device=device, dtype=dtype) for n in sorted(set(args.windows))]
        record = {"measurements": measurements, "projection": project(measurements), "torch_threads": torch.get_num_threads()}
        logger.info("%s: %s", name, json.dumps(record["projection"]))
        records.append(record)
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(records, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
