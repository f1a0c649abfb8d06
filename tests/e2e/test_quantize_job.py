"""A real job end to end: HTTP submit, Celery worker, ruquant on a tiny Llama, push to a local Hub.

The source model lives on the local Hub, the job brings its own Hub token, and the calibration
and evaluation text is a small file the service offers under a data set name.
"""

from __future__ import annotations

import json
import logging
import math
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import redis
from huggingface_hub import HfApi, ModelCard, hf_hub_download
from sqlalchemy import MetaData, create_engine, select

from localhub.pytest_plugin import LocalHubFixture
from localhub.testing import ALICE_READ, ALICE_WRITE
from service.jobs.figures import figure_files
from tests.e2e.models import save_tiny_llama, write_text
from tests.e2e.stack import Stack, running_stack
from tests.service.fixtures import make_settings
from tests.worker.hub_repos import commit_titles, publish_folder
from tests.worker.processes import REPO_ROOT, wait_for, worker_environment

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

SOURCE = "alice/tiny-llama"
TARGET = "alice/tiny-llama-RUQuant-W4A4"
TOKEN = ALICE_WRITE.encode()


def _request() -> dict[str, Any]:
    return {
        "model_id": SOURCE,
        "preset": "W4A4",
        "calibration": {"data": "tiny-text", "samples": 4, "seq_len": 64},
        "evaluation": {"data": "tiny-text", "seq_len": 64, "windows": 2},
        "hub_token": ALICE_WRITE,
    }


def _publish_source(tmp_path: Path, hub: LocalHubFixture, num_layers: int) -> None:
    folder = save_tiny_llama(tmp_path / "source-model", num_layers=num_layers)
    publish_folder(hub.endpoint, ALICE_WRITE, SOURCE, folder)


def _redis_contents(url: str) -> bytes:
    """Return every key and value of the Redis database at ``url``, concatenated."""
    client = redis.Redis.from_url(url)
    chunks: list[bytes] = []
    for key in client.scan_iter():
        chunks.append(key)
        kind = client.type(key)
        if kind == b"string":
            chunks.append(client.get(key) or b"")
        elif kind == b"list":
            chunks.extend(client.lrange(key, 0, -1))
        elif kind == b"hash":
            for field, value in client.hgetall(key).items():
                chunks += [field, value]
        elif kind == b"set":
            chunks.extend(client.smembers(key))
        elif kind == b"zset":
            chunks.extend(client.zrange(key, 0, -1))
    client.close()
    return b"\n".join(chunks)


def _database_rows(url: str) -> bytes:
    """Return every row of every table of the job store, as text and raw bytes."""
    engine = create_engine(url)
    metadata = MetaData()
    metadata.reflect(engine)
    chunks: list[bytes] = []
    with engine.connect() as connection:
        for table in metadata.sorted_tables:
            for row in connection.execute(select(table)):
                for value in row:
                    chunks.append(value if isinstance(value, bytes) else str(value).encode())
    engine.dispose()
    return b"\n".join(chunks)


def _verify_in_new_process(
    tmp_path: Path, hub: LocalHubFixture, commit: str, text: Path
) -> subprocess.CompletedProcess[str]:
    """Run ``scripts/verify_pushed.py`` on the pushed commit, with a read token and a fresh cache."""
    env = worker_environment(make_settings(tmp_path), tmp_path / "verifier")
    env.update(HF_ENDPOINT=hub.endpoint, HF_TOKEN=ALICE_READ, OMP_NUM_THREADS="1")
    command = [sys.executable, str(REPO_ROOT / "scripts" / "verify_pushed.py"), TARGET]
    command += ["--revision", commit, "--data", str(text)]
    return subprocess.run(
        command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=180, check=False
    )


def _job(stack: Stack, job_id: str) -> Any:
    job = stack.env.store.get(job_id)
    assert job is not None
    return job


def test_job_quantizes_and_pushes_once(
    tmp_path: Path, localhub: LocalHubFixture, redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    text = write_text(tmp_path / "calibration.txt")
    _publish_source(tmp_path, localhub, num_layers=2)
    with running_stack(
        tmp_path, localhub, broker_url=redis_url, datasets={"tiny-text": text}
    ) as stack:
        job_id = stack.client.submit(_request())["id"]
        wait_for(lambda: _job(stack, job_id).state != "queued", timeout=60, what="job start")
        # The worker keeps the message unacknowledged while it runs the job.
        redis_while_running = _redis_contents(redis_url)
        final = stack.client.wait([job_id], poll_s=0.5, timeout_s=240)[job_id]
        report = stack.client.report(job_id) if final["state"] == "succeeded" else {}
        figures = {name: stack.client.figure(job_id, name) for name in figure_files(report)}
        worker_log = stack.worker.log_text()
        database = stack.env.settings.resolved_database_url
        redis_after = _redis_contents(redis_url)

    assert final["state"] == "succeeded", final["error"]
    assert [t["to_state"] for t in final["transitions"]] == [
        "queued",
        "downloading",
        "calibrating",
        "evaluating",
        "uploading",
        "succeeded",
    ]
    result = final["result"]
    assert result["repo"] == TARGET
    assert result["revision"] == "main"

    hub = HfApi(endpoint=localhub.endpoint, token=ALICE_READ)
    job_commits = [t for t in commit_titles(localhub.endpoint, ALICE_READ, TARGET) if job_id in t]
    assert len(job_commits) == 1
    assert hub.list_repo_commits(TARGET)[0].commit_id == result["commit"]
    files = set(hub.list_repo_files(TARGET))
    assert {"README.md", "config.json", "report.json", "tokenizer.json"} <= files
    assert any(name.endswith(".safetensors") for name in files)
    assert hub.model_info(TARGET).private is True

    assert report["preset"] == "W4A4"
    assert report["calibration"]["samples"] == 4
    assert math.isfinite(report["fp_perplexity"])
    assert math.isfinite(report["quantized_perplexity"])
    assert "perplexity.png" in figures
    assert all(content.startswith(b"\x89PNG") for content in figures.values())
    pushed = json.loads(
        Path(
            hf_hub_download(TARGET, "report.json", token=ALICE_READ, local_dir=tmp_path / "pulled")
        ).read_text()
    )
    assert pushed["quantized_perplexity"] == report["quantized_perplexity"]
    card = ModelCard.load(
        hf_hub_download(TARGET, "README.md", token=ALICE_READ, local_dir=tmp_path / "pulled")
    )
    assert card.data.base_model == SOURCE
    assert card.data.base_model_relation == "quantized"
    assert "ruquant" in card.data.tags

    verify = _verify_in_new_process(tmp_path, localhub, result["commit"], text)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert "reproduces its reported perplexity" in verify.stdout

    assert f"job={job_id}" in worker_log
    for place, content in (
        ("worker log", worker_log.encode()),
        ("API and Hub logs", caplog.text.encode()),
        ("job store rows", _database_rows(database)),
        ("Redis while running", redis_while_running),
        ("Redis after the job", redis_after),
    ):
        assert TOKEN not in content, f"the Hub token appears in the {place}"


def test_cancel_stops_within_one_layer(tmp_path: Path, localhub: LocalHubFixture) -> None:
    text = write_text(tmp_path / "calibration.txt")
    layers = 48
    _publish_source(tmp_path, localhub, num_layers=layers)
    with running_stack(tmp_path, localhub, datasets={"tiny-text": text}) as stack:
        job_id = stack.client.submit(_request())["id"]

        def quantizing() -> bool:
            job = _job(stack, job_id)
            return job.progress_stage == "calibrating" and (job.progress_step or 0) >= 1

        wait_for(quantizing, timeout=120, what="the first quantized layer")
        stack.client.cancel(job_id)
        # Every layer's progress is stored, so this is at least the layer count done by now.
        done_at_cancel = _job(stack, job_id).progress_step
        final = stack.client.wait([job_id], poll_s=0.2, timeout_s=60)[job_id]

    assert final["state"] == "cancelled"
    reason = final["transitions"][-1]["reason"]
    match = re.fullmatch(
        rf"stopped by the worker: stopped before decoder layer (\d+) of {layers}", reason
    )
    assert match is not None, reason
    assert int(match.group(1)) <= done_at_cancel + 1
    assert not HfApi(endpoint=localhub.endpoint, token=ALICE_READ).repo_exists(TARGET)
