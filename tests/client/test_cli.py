"""``ruquant-client`` against a real server: batch submission, exit codes, retries."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from ruquant_client.cli import EXIT_CODES, main
from ruquant_client.client import Client, ClientError, RetryPolicy, idempotency_key_for
from service.jobs.states import JobState
from tests.client.conftest import Service

pytestmark = pytest.mark.integration

BATCH = """
defaults:
  preset: W4A4
  private: true
jobs:
  - model_id: HuggingFaceTB/SmolLM2-135M
  - model_id: Qwen/Qwen2.5-0.5B
    preset: W6A6
    quant: {stage2: true}
"""


def _cli(service: Service, *args: str) -> int:
    return main(["--url", service.url, "--api-key", service.key.secret, *args])


def test_submit_twice_same_jobs(
    service: Service, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    batch = tmp_path / "jobs.yaml"
    batch.write_text(BATCH)
    assert _cli(service, "submit", str(batch)) == EXIT_CODES["ok"]
    first = capsys.readouterr().out.split()
    assert _cli(service, "submit", str(batch)) == EXIT_CODES["ok"]
    second = capsys.readouterr().out.split()
    assert len(first) == 2
    assert first == second
    jobs, total = service.store.list_jobs(service.key.id)
    assert total == 2
    assert {job.request["quant"]["w_bits"] for job in jobs} == {4, 6}


def test_invalid_batch_sends_nothing(
    service: Service, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    batch = tmp_path / "jobs.yaml"
    batch.write_text("jobs:\n  - model_id: a/b\n  - model_id: a/b\n    quant: {w_bits: 12}\n")
    assert _cli(service, "submit", str(batch)) == EXIT_CODES["usage"]
    assert "jobs[1] is invalid: quant.w_bits" in capsys.readouterr().err
    assert service.store.list_jobs(service.key.id)[1] == 0


def test_status_exit_codes(service: Service, capsys: pytest.CaptureFixture[str]) -> None:
    assert _cli(service, "status", "nope") == EXIT_CODES["not_found"]
    bad_key = main(["--url", service.url, "--api-key", "rq_bad_key", "status", "nope"])
    assert bad_key == EXIT_CODES["auth"]


def test_wait_reports_cancelled(service: Service, capsys: pytest.CaptureFixture[str]) -> None:
    with Client(service.url, service.key.secret) as client:
        job = client.submit({"model_id": "a/b"})
        assert _cli(service, "cancel", job["id"]) == EXIT_CODES["ok"]
        capsys.readouterr()
    assert _cli(service, "wait", job["id"], "--poll", "0.1") == EXIT_CODES["job_failed"]
    assert capsys.readouterr().out.strip() == f"{job['id']}\tcancelled"


def test_wait_times_out(service: Service) -> None:
    with Client(service.url, service.key.secret) as client:
        job = client.submit({"model_id": "a/b"})
    code = _cli(service, "wait", job["id"], "--poll", "0.1", "--timeout", "0.3")
    assert code == EXIT_CODES["timeout"]


def test_wait_reports_success(service: Service) -> None:
    with Client(service.url, service.key.secret) as client:
        job = client.submit({"model_id": "a/b"})
        service.store.claim(job["id"], worker="test", task_id=None)
        service.store.transition(job["id"], JobState.SUCCEEDED, result_commit="c")
        assert client.wait([job["id"]], poll_s=0.1)[job["id"]]["state"] == "succeeded"


def test_unreachable_service_retries_then_exit_5(capsys: pytest.CaptureFixture[str]) -> None:
    sleeps: list[float] = []
    client = Client(
        "http://127.0.0.1:9", "rq_x", retry=RetryPolicy(attempts=3), sleep=sleeps.append
    )
    with pytest.raises(ClientError) as caught:
        client.get("job")
    assert caught.value.status is None
    assert sleeps == [0.5, 1.0]
    args = ["--url", "http://127.0.0.1:9", "--api-key", "rq_x", "--retries", "0", "status", "j"]
    assert main(args) == EXIT_CODES["unavailable"]


def test_retries_503_then_succeeds_mock_transport() -> None:
    answers = iter([503, 429, 200])

    def handler(request: httpx.Request) -> httpx.Response:
        status = next(answers)
        return httpx.Response(status, json={"id": "j", "state": "queued"} if status == 200 else {})

    sleeps: list[float] = []
    client = Client(
        "http://test", "rq_x", transport=httpx.MockTransport(handler), sleep=sleeps.append
    )
    assert client.get("j")["id"] == "j"
    assert sleeps == [0.5, 1.0]


def test_idempotency_key_ignores_token() -> None:
    entry = {"model_id": "a/b", "preset": "W4A4"}
    assert idempotency_key_for(entry) == idempotency_key_for({**entry, "hub_token": "hf_x"})
    assert idempotency_key_for(entry) != idempotency_key_for({**entry, "preset": "W8A8"})
