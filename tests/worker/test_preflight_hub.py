"""Pre-flight against a real local Hub: each bad source or target fails before any download.

Every case runs the real pipeline with the real Hub client; the quantizer only records calls.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from transformers import GPT2Config, LlamaConfig

from localhub.admin import set_gated
from localhub.pytest_plugin import LocalHubFixture
from localhub.storage.records import GateMode
from localhub.testing import ALICE_READ, ALICE_WRITE, BOB_WRITE
from ruquant.config import RunConfig
from service.auth import create_key
from service.jobs.request import JobRequest
from service.jobs.states import JobState
from tests.worker.hub_repos import LLAMA_CONFIG, publish_files, publish_source
from tests.worker.processes import build_worker_env
from worker.hub_gateway import HubGateway
from worker.pipeline import Stages, run_job

SOURCE = "alice/tiny"


class _RecordingQuantizer:
    def __init__(self) -> None:
        self.calls: list[Path] = []

    def __call__(self, model_dir: Path, output_dir: Path, run_config: RunConfig, **_: Any) -> Any:
        self.calls.append(model_dir)
        raise AssertionError("pre-flight should have failed before quantization")


def _tiny_llama_config(**widths: int) -> dict[str, Any]:
    config = LlamaConfig(
        vocab_size=256, num_hidden_layers=2, max_position_embeddings=128, **widths
    ).to_dict()
    config["architectures"] = ["LlamaForCausalLM"]
    return config


def _gated(hub: LocalHubFixture) -> str:
    publish_source(hub.endpoint, BOB_WRITE, "bob/tiny", config=LLAMA_CONFIG)
    set_gated(hub.storage_dir, "bob/tiny", GateMode.MANUAL)
    return "bob/tiny"


def _gpt2(hub: LocalHubFixture) -> str:
    config = GPT2Config(n_layer=2, n_embd=32, n_head=2, vocab_size=256).to_dict()
    config["architectures"] = ["GPT2LMHeadModel"]
    publish_source(hub.endpoint, ALICE_WRITE, SOURCE, config=config)
    return SOURCE


def _odd_widths(hub: LocalHubFixture) -> str:
    # hidden 18 alone would fit block size 2; the odd intermediate width fits no power of two.
    config = _tiny_llama_config(
        hidden_size=18, intermediate_size=45, num_attention_heads=1, num_key_value_heads=1
    )
    publish_source(hub.endpoint, ALICE_WRITE, SOURCE, config=config)
    return SOURCE


def _adapter(hub: LocalHubFixture) -> str:
    adapter_config = {"peft_type": "LORA", "base_model_name_or_path": "alice/base", "r": 8}
    files = {
        "adapter_config.json": json.dumps(adapter_config).encode(),
        "adapter_model.safetensors": b"\0" * 64,
    }
    publish_files(hub.endpoint, ALICE_WRITE, SOURCE, files)
    return SOURCE


def _pickles(hub: LocalHubFixture) -> str:
    config = _tiny_llama_config(
        hidden_size=64, intermediate_size=128, num_attention_heads=4, num_key_value_heads=2
    )
    publish_source(hub.endpoint, ALICE_WRITE, SOURCE, config=config, weights=("pytorch_model.bin",))
    return SOURCE


def _target_exists(hub: LocalHubFixture) -> str:
    publish_source(hub.endpoint, ALICE_WRITE, SOURCE, config=LLAMA_CONFIG)
    publish_source(hub.endpoint, ALICE_WRITE, "alice/tiny-RUQuant-W4A4", config=LLAMA_CONFIG)
    return SOURCE


def _plain_source(hub: LocalHubFixture) -> str:
    publish_source(hub.endpoint, ALICE_WRITE, SOURCE, config=LLAMA_CONFIG)
    return SOURCE


def _missing(hub: LocalHubFixture) -> str:
    return "alice/missing"


# (case id, set-up of the Hub returning the source id, job token, error code, advice expected)
CASES: list[tuple[str, Callable[[LocalHubFixture], str], str, str, str]] = [
    ("missing-repo", _missing, ALICE_WRITE, "repo_not_found", "check the id"),
    ("gated-repo", _gated, ALICE_WRITE, "repo_gated", "accept its conditions"),
    ("read-only-token", _plain_source, ALICE_READ, "token_read_only", "write access"),
    ("target-exists", _target_exists, ALICE_WRITE, "target_exists", "if_exists"),
    ("gpt2", _gpt2, ALICE_WRITE, "unsupported_architecture", "GPT2LMHeadModel"),
    ("odd-widths", _odd_widths, ALICE_WRITE, "block_size", "'rtn'"),
    ("adapter-only", _adapter, ALICE_WRITE, "adapter_only", "merge the adapter"),
    ("pickle-only", _pickles, ALICE_WRITE, "pickle_weights", "convert them to safetensors"),
]


@pytest.mark.parametrize(
    ("setup", "token", "code", "advice"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_preflight_rejects_before_quantizing(
    tmp_path: Path,
    localhub: LocalHubFixture,
    setup: Callable[[LocalHubFixture], str],
    token: str,
    code: str,
    advice: str,
) -> None:
    source = setup(localhub)
    env = build_worker_env(tmp_path, hub_endpoint=localhub.endpoint, keep_job_files=True)
    with env.store.session() as session:
        key = create_key(session, "tester")
    request = JobRequest.model_validate(
        {"model_id": source, "target_repo": f"{SOURCE}-RUQuant-W4A4"}
    )
    job_id = env.store.create(key.id, request, token=token)[0].id
    quantizer = _RecordingQuantizer()

    state = run_job(
        job_id,
        settings=env.settings,
        store=env.store,
        worker="w",
        task_id=None,
        stages=Stages(hub=HubGateway, quantize=quantizer),
    )

    job = env.store.get(job_id)
    assert job is not None
    assert state is JobState.FAILED
    assert job.error_code == code
    assert advice in (job.error_message or "")
    assert [t.to_state for t in job.transitions] == ["queued", "downloading", "failed"]
    assert quantizer.calls == []
    assert not (env.settings.work_dir / "jobs" / job_id / "source").exists()
