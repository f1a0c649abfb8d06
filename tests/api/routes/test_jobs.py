"""``/v1/jobs`` over the ASGI app, with the real store and the embedded Celery broker."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from fastapi.testclient import TestClient

from api.main import create_app
from service.auth import CreatedKey
from service.jobs.states import JobState
from service.jobs.store import JobStore
from service.settings import Settings
from tests.api.conftest import auth
from tests.service.fixtures import make_key, make_settings

BODY = {"model_id": "HuggingFaceTB/SmolLM2-135M", "preset": "W4A4"}
TOKEN = "hf_tokentokentokentokentoken1234"


def _broker_messages(settings: Settings) -> int:
    with sqlite3.connect(settings.work_dir / "broker.sqlite") as connection:
        return int(connection.execute("SELECT count(*) FROM kombu_message").fetchone()[0])


def test_submit_queues_and_sends(client: TestClient, key: CreatedKey, settings: Settings) -> None:
    response = client.post("/v1/jobs", json=BODY, headers=auth(key))
    job = response.json()
    assert response.status_code == 202
    assert job["state"] == "queued"
    assert job["preset"] == "W4A4"
    assert job["request"]["quant"]["w_bits"] == 4
    assert response.headers["Location"] == f"/v1/jobs/{job['id']}"
    assert [t["to_state"] for t in job["transitions"]] == ["queued"]
    assert _broker_messages(settings) == 1


def test_submit_requires_key(client: TestClient, key: CreatedKey) -> None:
    assert client.post("/v1/jobs", json=BODY).status_code == 401
    bad = {"Authorization": "Bearer rq_nothing_here"}
    response = client.post("/v1/jobs", json=BODY, headers=bad)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"


def test_revoked_key_rejected(client: TestClient, key: CreatedKey, store: JobStore) -> None:
    from service.auth import revoke_key

    with store.session() as session:
        assert revoke_key(session, key.id)
    assert client.get("/v1/jobs", headers=auth(key)).status_code == 401


def test_idempotency_key_replays(client: TestClient, key: CreatedKey, settings: Settings) -> None:
    headers = {**auth(key), "Idempotency-Key": "batch-1"}
    first = client.post("/v1/jobs", json=BODY, headers=headers)
    second = client.post("/v1/jobs", json=dict(reversed(list(BODY.items()))), headers=headers)
    assert first.status_code == 202
    assert second.status_code == 200
    assert second.headers["Idempotent-Replayed"] == "true"
    assert second.json()["id"] == first.json()["id"]
    assert _broker_messages(settings) == 1


def test_idempotency_key_conflict(client: TestClient, key: CreatedKey) -> None:
    headers = {**auth(key), "Idempotency-Key": "batch-1"}
    client.post("/v1/jobs", json=BODY, headers=headers)
    response = client.post("/v1/jobs", json={**BODY, "preset": "W8A8"}, headers=headers)
    assert response.status_code == 409
    assert "different body" in response.json()["detail"]


def test_unknown_field_names_field(client: TestClient, key: CreatedKey) -> None:
    response = client.post("/v1/jobs", json={**BODY, "quant": {"wbits": 4}}, headers=auth(key))
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "quant", "wbits"]


def test_impossible_bits_names_field(client: TestClient, key: CreatedKey) -> None:
    body = {"model_id": "a/b", "quant": {"w_bits": 16, "a_bits": 16}}
    response = client.post("/v1/jobs", json=body, headers=auth(key))
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "quant"]
    assert "both 16" in response.json()["detail"][0]["msg"]


def test_invalid_repo_id_names_field(client: TestClient, key: CreatedKey) -> None:
    response = client.post("/v1/jobs", json={**BODY, "target_repo": "x"}, headers=auth(key))
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "target_repo"]


def test_unknown_dataset_names_field(client: TestClient, key: CreatedKey, store: JobStore) -> None:
    body = {**BODY, "evaluation": {"data": "chats"}}
    response = client.post("/v1/jobs", json=body, headers=auth(key))
    assert response.status_code == 422
    detail = response.json()["detail"]
    assert [error["loc"] for error in detail] == [["body", "evaluation", "data"]]
    assert "'chats' is not offered" in detail[0]["msg"]
    assert "wikitext2" in detail[0]["msg"]
    assert store.list_jobs(key.id)[1] == 0


def test_dataset_path_names_field(client: TestClient, key: CreatedKey) -> None:
    body = {**BODY, "calibration": {"data": "/etc/passwd"}}
    response = client.post("/v1/jobs", json=body, headers=auth(key))
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "calibration"]
    assert "paths are not accepted" in response.json()["detail"][0]["msg"]


def test_configured_dataset_accepted(tmp_path: Path, key: CreatedKey) -> None:
    text = tmp_path / "chats.txt"
    text.write_text("hello\n")
    settings = make_settings(tmp_path / "other", datasets={"chats": text})
    with TestClient(create_app(settings, run_reaper=False)) as other_client:
        other_key = make_key(other_client.app.state.store)  # type: ignore[attr-defined]
        body = {**BODY, "calibration": {"data": "chats"}, "evaluation": {"data": "chats"}}
        response = other_client.post("/v1/jobs", json=body, headers=auth(other_key))
    assert response.status_code == 202
    assert response.json()["request"]["calibration"]["data"] == "chats"


def test_validation_error_hides_token(client: TestClient, key: CreatedKey) -> None:
    body = {"model_id": "a/b/c", "hub_token": TOKEN}
    response = client.post("/v1/jobs", json=body, headers=auth(key))
    assert response.status_code == 422
    assert TOKEN not in response.text


def test_token_never_returned_or_stored_plain(
    client: TestClient, key: CreatedKey, settings: Settings, store: JobStore
) -> None:
    response = client.post("/v1/jobs", json={**BODY, "hub_token": TOKEN}, headers=auth(key))
    job_id = response.json()["id"]
    assert TOKEN not in response.text
    assert TOKEN not in client.get(f"/v1/jobs/{job_id}", headers=auth(key)).text
    assert store.token(job_id) == TOKEN
    database = Path(str(settings.resolved_database_url).removeprefix("sqlite:///"))
    for path in [database, *database.parent.glob("*.sqlite*"), *settings.work_dir.glob("*")]:
        if path.is_file():
            assert TOKEN.encode() not in path.read_bytes(), path


def test_other_owner_sees_404(client: TestClient, key: CreatedKey, other_key: CreatedKey) -> None:
    job_id = client.post("/v1/jobs", json=BODY, headers=auth(key)).json()["id"]
    for method, path in [
        ("GET", f"/v1/jobs/{job_id}"),
        ("POST", f"/v1/jobs/{job_id}/cancel"),
        ("GET", f"/v1/jobs/{job_id}/report"),
        ("GET", f"/v1/jobs/{job_id}/events"),
    ]:
        assert client.request(method, path, headers=auth(other_key)).status_code == 404, path
    assert client.get("/v1/jobs", headers=auth(other_key)).json()["total"] == 0


def test_list_filter_and_pages(client: TestClient, key: CreatedKey) -> None:
    ids = [client.post("/v1/jobs", json=BODY, headers=auth(key)).json()["id"] for _ in range(3)]
    client.post(f"/v1/jobs/{ids[0]}/cancel", headers=auth(key))
    page = client.get("/v1/jobs", params={"limit": 2, "offset": 0}, headers=auth(key)).json()
    assert page["total"] == 3
    assert len(page["items"]) == 2
    cancelled = client.get("/v1/jobs", params={"state": "cancelled"}, headers=auth(key)).json()
    assert [job["id"] for job in cancelled["items"]] == [ids[0]]
    bad_state = client.get("/v1/jobs", params={"state": "sleeping"}, headers=auth(key))
    assert bad_state.status_code == 422


def test_cancel_queued_then_conflict(client: TestClient, key: CreatedKey) -> None:
    job_id = client.post("/v1/jobs", json=BODY, headers=auth(key)).json()["id"]
    response = client.post(f"/v1/jobs/{job_id}/cancel", headers=auth(key))
    assert response.status_code == 202
    assert response.json()["state"] == "cancelled"
    assert client.post(f"/v1/jobs/{job_id}/cancel", headers=auth(key)).status_code == 409


def test_report_after_success(client: TestClient, key: CreatedKey, store: JobStore) -> None:
    job_id = client.post("/v1/jobs", json=BODY, headers=auth(key)).json()["id"]
    assert client.get(f"/v1/jobs/{job_id}/report", headers=auth(key)).status_code == 409
    store.claim(job_id, worker="test", task_id=None)
    report = {"baseline": {"perplexity": 20.0}, "quantized": {"perplexity": 21.0}}
    store.transition(
        job_id,
        JobState.SUCCEEDED,
        report=report,
        result_commit="abc",
        target_repo="alice/m-RUQuant-W4A4",
    )
    response = client.get(f"/v1/jobs/{job_id}/report", headers=auth(key))
    assert response.status_code == 200
    assert response.json() == report
    job = client.get(f"/v1/jobs/{job_id}", headers=auth(key)).json()
    assert job["result"]["commit"] == "abc"


def test_events_stream_until_final(client: TestClient, key: CreatedKey) -> None:
    job_id = client.post("/v1/jobs", json=BODY, headers=auth(key)).json()["id"]
    client.post(f"/v1/jobs/{job_id}/cancel", headers=auth(key))
    with client.stream("GET", f"/v1/jobs/{job_id}/events", headers=auth(key)) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        text = "".join(response.iter_text())
    assert text.startswith("event: job\n")
    assert text.rstrip().endswith('event: end\ndata: {"state": "cancelled"}')
