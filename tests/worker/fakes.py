"""Stand-ins for the Hub and the quantizer, for tests of the service plumbing only.

``FakeHub`` keeps its repositories in a JSON file, so several worker processes in one test see
the same commits. ``fake_quantize`` sends one progress event per "layer", honours
``should_stop`` between layers and writes a small output folder.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from ruquant.config import RunConfig
from ruquant.progress import Cancelled, ProgressCallback, ProgressEvent, StopCheck
from service.settings import Settings
from worker.hub_gateway import CommitRecord, Identity, SourceInfo

__all__ = ["FakeHub", "LLAMA_CONFIG", "fake_quantize", "hub_state"]

LLAMA_CONFIG: dict[str, Any] = {
    "architectures": ["LlamaForCausalLM"],
    "hidden_size": 576,
    "intermediate_size": 1536,
    "num_attention_heads": 9,
}


def _state_path() -> Path:
    return Path(os.environ["FAKE_HUB_STATE"])


def hub_state() -> dict[str, Any]:
    """Return the fake Hub's repositories: ``{repo: {revision: [commit dicts]}}``."""
    path = _state_path()
    return json.loads(path.read_text()) if path.exists() else {}


def _save(state: dict[str, Any]) -> None:
    _state_path().write_text(json.dumps(state))


class FakeHub:
    """In-file Hub with one user ``alice`` who belongs to the ``team`` organisation."""

    def __init__(self, settings: Settings, token: str | None) -> None:
        self.token = token

    def identity(self) -> Identity:
        return Identity(name="alice", orgs=frozenset({"team"}), can_write=True)

    def inspect_source(self, model_id: str, revision: str | None, work_dir: Path) -> SourceInfo:
        files = {"config.json": 100, "model.safetensors": 1000, "tokenizer.json": 10}
        return SourceInfo(sha="a" * 40, files=files, config=LLAMA_CONFIG)

    def repo_exists(self, repo_id: str) -> bool:
        return repo_id in hub_state()

    def download(self, model_id: str, sha: str, local_dir: Path, allow: list[str]) -> Path:
        local_dir.mkdir(parents=True, exist_ok=True)
        (local_dir / "config.json").write_text(json.dumps(LLAMA_CONFIG))
        return local_dir

    def find_commit(self, repo_id: str, revision: str, marker: str) -> CommitRecord | None:
        for commit in hub_state().get(repo_id, {}).get(revision, []):
            if marker in commit["title"] + "\n" + commit["description"]:
                return CommitRecord(commit=commit["oid"], url=None)
        return None

    def create_target(self, repo_id: str, *, private: bool, branch: str | None) -> None:
        state = hub_state()
        repo = state.setdefault(repo_id, {"main": []})
        if branch is not None:
            repo.setdefault(branch, list(repo["main"]))
        _save(state)

    def push(
        self,
        repo_id: str,
        folder: Path,
        *,
        revision: str,
        title: str,
        description: str,
        replace_all: bool,
    ) -> CommitRecord:
        state = hub_state()
        commits = state[repo_id][revision]
        oid = f"{len(commits) + 1:040d}"
        files = sorted(p.name for p in folder.iterdir())
        commits.append({"oid": oid, "title": title, "description": description, "files": files})
        _save(state)
        return CommitRecord(commit=oid, url=f"http://hub.invalid/{repo_id}/commit/{oid}")


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
    for layer in range(1, layers + 1):
        if should_stop():
            raise Cancelled(f"stopped before layer {layer}")
        time.sleep(layer_s)
        progress(
            ProgressEvent("calibrating", layer, layers, 0.8 * layer / layers, f"layer {layer}")
        )
    progress(ProgressEvent("evaluating", 1, 1, 0.95, "window 1/1"))
    report = {
        "baseline": {"perplexity": 20.0},
        "quantized": {"perplexity": 21.5},
        "preset": run_config.quant.preset,
    }
    (output_dir / "report.json").write_text(json.dumps(report))
    (output_dir / "model.safetensors").write_bytes(b"weights")
    (output_dir / "README.md").write_text("model card")
    return report
