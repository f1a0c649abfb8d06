"""Pre-flight decisions on a source model's files and config, with the Hub described in memory.

The checks that depend on what a Hub returns (missing, gated, read-only, existing target, and
the source files themselves) run against a local Hub in ``test_preflight_hub.py``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from service.jobs.request import JobRequest
from service.settings import Settings
from tests.service.fixtures import make_settings
from tests.worker.hub_repos import LLAMA_CONFIG
from worker.errors import JobError
from worker.hub_gateway import Identity, SourceInfo
from worker.preflight import job_branch, preflight

SAFE_FILES = {"config.json": 1, "model.safetensors": 1000, "tokenizer.json": 1}


class SourceHub:
    """A source repository and target namespace described in memory."""

    def __init__(
        self,
        files: dict[str, int] = SAFE_FILES,
        config: dict[str, object] | None = LLAMA_CONFIG,
        existing: frozenset[str] = frozenset(),
        can_write: bool = True,
    ) -> None:
        self.files = files
        self.config = config
        self.existing = existing
        self.can_write = can_write

    def inspect_source(self, model_id: str, revision: str | None, work_dir: Path) -> SourceInfo:
        return SourceInfo(sha="b" * 40, files=self.files, config=self.config)

    def identity(self) -> Identity:
        return Identity(name="alice", orgs=frozenset({"team"}), can_write=self.can_write)

    def repo_exists(self, repo_id: str) -> bool:
        return repo_id in self.existing


def _run(hub: SourceHub, settings: Settings, **request: object):  # type: ignore[no-untyped-def]
    job_request = JobRequest.model_validate({"model_id": "org/tiny", **request})
    return preflight(hub, job_request, settings, job_id="j" * 32, scratch_dir=settings.work_dir)


def _code(hub: SourceHub, settings: Settings, **request: object) -> str:
    with pytest.raises(JobError) as caught:
        _run(hub, settings, **request)
    return caught.value.code


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path)


def test_plan_for_supported_model(settings: Settings) -> None:
    plan = _run(SourceHub(), settings)
    assert plan.target_repo == "alice/tiny-RUQuant-W4A4"
    assert plan.target_revision == "main"
    assert plan.size_bytes == 1000
    assert "*.safetensors" in plan.download_patterns
    assert "*.bin" not in plan.download_patterns


def test_rejections(settings: Settings) -> None:
    remote = {**LLAMA_CONFIG, "auto_map": {"AutoModel": "x.Model"}}
    assert _code(SourceHub(config=remote), settings) == "trust_remote_code_required"
    assert _code(SourceHub(), settings, quant={"block_size": 128}) == "block_size"
    assert _code(SourceHub(), settings, target_repo="bob/x") == "namespace_forbidden"
    incomplete = {"architectures": ["LlamaForCausalLM"], "hidden_size": 64}
    assert _code(SourceHub(config=incomplete), settings) == "invalid_config"


def test_adapter_weights_are_not_model_weights(settings: Settings) -> None:
    adapter = {"config.json": 1, "adapter_config.json": 1, "adapter_model.safetensors": 10}
    assert _code(SourceHub(files=adapter), settings) == "adapter_only"


def test_block_size_without_block_transform(settings: Settings) -> None:
    odd = {**LLAMA_CONFIG, "intermediate_size": 45}
    assert _code(SourceHub(config=odd), settings) == "block_size"
    assert _run(SourceHub(config=odd), settings, quant={"method": "rtn"}).target_repo


def test_unknown_or_missing_dataset(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, datasets={"chats": tmp_path / "absent.txt"})
    assert _code(SourceHub(), settings, calibration={"data": "other"}) == "unknown_dataset"
    assert _code(SourceHub(), settings, evaluation={"data": "chats"}) == "dataset_missing"


def test_size_limits(tmp_path: Path) -> None:
    small = make_settings(tmp_path, max_model_bytes=999)
    assert _code(SourceHub(), small) == "model_too_large"
    huge = {"config.json": 1, "model.safetensors": 10**18}
    roomy = make_settings(tmp_path, max_model_bytes=10**19)
    assert _code(SourceHub(files=huge), roomy) == "insufficient_disk"


def test_policies_when_target_exists(settings: Settings) -> None:
    existing = frozenset({"team/out"})
    hub = SourceHub(existing=existing)
    branch = _run(hub, settings, target_repo="team/out", if_exists="new_revision")
    assert branch.target_revision == job_branch("j" * 32)
    overwrite = _run(hub, settings, target_repo="team/out", if_exists="overwrite")
    assert overwrite.target_revision == "main"


def test_pickles_allowed_by_operator(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, allow_pickle_weights=True)
    plan = _run(SourceHub(files={"config.json": 1, "pytorch_model.bin": 10}), settings)
    assert "*.bin" in plan.download_patterns


def test_remote_code_opt_in(settings: Settings) -> None:
    remote = {**LLAMA_CONFIG, "auto_map": {"AutoModel": "x.Model"}}
    assert _run(SourceHub(config=remote), settings, trust_remote_code=True).target_repo
