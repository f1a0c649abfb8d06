"""A stand-in quantizer, for tests of the service plumbing only.

``fake_quantize`` sends one progress event per "layer", honours ``should_stop`` before each
layer, and writes a small output folder with a report in the library's layout.
"""

from __future__ import annotations

import json
import os
import struct
import time
import zlib
from pathlib import Path
from typing import Any

from ruquant.config import RunConfig
from ruquant.progress import Cancelled, ProgressCallback, ProgressEvent, StopCheck

__all__ = ["fake_quantize", "tiny_png"]


def tiny_png() -> bytes:
    """Return a valid 1x1 grey PNG file."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", 1, 1, 8, 0, 0, 0, 0)  # 1x1, 8-bit greyscale
    pixels = zlib.compress(b"\x00\x80")  # filter byte, one grey pixel
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")
    )


def fake_quantize(
    model_dir: Path,
    output_dir: Path,
    run_config: RunConfig,
    *,
    progress: ProgressCallback,
    should_stop: StopCheck,
    log_context: dict[str, Any],
) -> dict[str, Any]:
    """Pretend to quantize ``FAKE_LAYERS`` layers of ``FAKE_LAYER_S`` s each, then evaluate."""
    layers = int(os.environ.get("FAKE_LAYERS", "4"))
    layer_s = float(os.environ.get("FAKE_LAYER_S", "0.05"))
    for layer in range(layers):
        if should_stop():
            raise Cancelled(f"stopped before decoder layer {layer} of {layers}")
        time.sleep(layer_s)
        progress(
            ProgressEvent("calibrating", layer + 1, layers, 0.8 * (layer + 1) / layers, "layer")
        )
    progress(ProgressEvent("evaluating", 1, 1, 0.95, "window 1/1"))
    report = {
        "preset": run_config.quant.preset,
        "method": run_config.quant.method.value,
        "fp_perplexity": 20.0,
        "quantized_perplexity": 21.5,
        "recovery": 20.0 / 21.5,
        "figures": {"perplexity": "perplexity.png"},
    }
    (output_dir / "perplexity.png").write_bytes(tiny_png())
    (output_dir / "report.json").write_text(json.dumps(report))
    (output_dir / "model.safetensors").write_bytes(b"weights")
    (output_dir / "README.md").write_text("model card")
    return report
