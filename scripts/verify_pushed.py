"""Download a pushed RUQuant model, load it with transformers, and recompute its perplexity.

Run it as its own process, so nothing from the quantizing process (model objects, caches) can
stand in for what was pushed::

    HF_ENDPOINT=http://127.0.0.1:8765 HF_HUB_DISABLE_XET=1 HF_TOKEN=... \\
        python scripts/verify_pushed.py owner/model-RUQuant-W4A4 --revision <commit> --data wikitext2

Exit codes: 0 the perplexity matches the pushed report.json, 1 it does not, 2 usage error.
"""

# ruff: noqa: T201 - the printed lines are this script's output

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Sequence
from pathlib import Path

__all__ = ["main"]

# Relative perplexity difference accepted. The checkpoint stores what the quantizing process
# evaluated, so a reload differs only by float summation order.
DEFAULT_TOLERANCE = 1e-3


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "repo_id", help="Pushed repository, e.g. 'alice/SmolLM2-135M-RUQuant-W4A4'."
    )
    parser.add_argument("--revision", default="main", help="Commit or branch to download.")
    parser.add_argument(
        "--data",
        default="wikitext2",
        help="Evaluation text: 'wikitext2' or the text file the job evaluated on.",
    )
    parser.add_argument("--local-dir", type=Path, help="Download folder (default: the Hub cache).")
    parser.add_argument(
        "--tolerance",
        type=float,
        default=DEFAULT_TOLERANCE,
        help="Largest accepted relative perplexity difference.",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Verify one pushed repository and return the exit code."""
    args = _parser().parse_args(argv)

    import torch
    from huggingface_hub import snapshot_download
    from transformers import AutoModelForCausalLM, AutoTokenizer

    import ruquant  # noqa: F401 - registers the ruquant quantization method with transformers
    from ruquant.config import EvaluationConfig
    from ruquant.evaluate import evaluate_perplexity

    folder = Path(snapshot_download(args.repo_id, revision=args.revision, local_dir=args.local_dir))
    report = json.loads((folder / "report.json").read_text(encoding="utf-8"))
    evaluation = report.get("evaluation")
    reported = report.get("quantized_perplexity")
    if not evaluation or reported is None:
        print(f"{args.repo_id}: report.json has no evaluation to reproduce", file=sys.stderr)
        return 2

    config_json = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    quantization = config_json.get("quantization_config") or {}
    if quantization.get("quant_method") != "ruquant":
        print(f"{args.repo_id}: config.json has no ruquant quantization_config", file=sys.stderr)
        return 1
    dtype = getattr(torch, str(report.get("dtype", "float32")))
    model = AutoModelForCausalLM.from_pretrained(str(folder), dtype=dtype)
    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    config = EvaluationConfig(
        data=args.data, seq_len=evaluation["seq_len"], windows=evaluation["windows"]
    )
    result = evaluate_perplexity(model, tokenizer, config, progress=False)

    difference = abs(result.perplexity - reported) / reported
    print(f"repository:            {args.repo_id}@{args.revision}")
    print(
        f"files:                 {', '.join(sorted(p.name for p in folder.iterdir() if p.is_file()))}"
    )
    print(f"loaded as:             {type(model).__name__} ({dtype}), {report.get('preset')}")
    print(f"reported perplexity:   {reported:.4f}")
    print(
        f"recomputed perplexity: {result.perplexity:.4f} ({result.windows} windows of {result.seq_len})"
    )
    print(f"relative difference:   {difference:.2e} (tolerance {args.tolerance:.0e})")
    if not math.isfinite(result.perplexity) or difference > args.tolerance:
        print("FAILED: the pushed model does not reproduce its report", file=sys.stderr)
        return 1
    print("OK: the pushed model reproduces its reported perplexity")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
