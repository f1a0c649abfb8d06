"""The web form: sign in once, submit, see the job, stream its progress, read its report."""

from __future__ import annotations

from fastapi.testclient import TestClient

from service.auth import CreatedKey, revoke_key
from service.jobs.states import JobState
from service.jobs.store import JobStore

FORM = {
    "form_token": "t1",
    "model_id": "HuggingFaceTB/SmolLM2-135M",
    "preset": "W6A6",
    "method": "ruquant",
    "private": "on",
    "if_exists": "fail",
    "hub_token": "hf_webtokenwebtoken12345",
}


def _login(client: TestClient, key: CreatedKey) -> None:
    response = client.post("/login", data={"api_key": key.secret}, follow_redirects=False)
    assert response.status_code == 303


def test_index_asks_for_key(client: TestClient) -> None:
    response = client.get("/")
    assert response.status_code == 200
    assert 'name="api_key"' in response.text


def test_login_rejects_bad_key(client: TestClient) -> None:
    response = client.post("/login", data={"api_key": "rq_wrong"})
    assert "invalid or revoked" in response.text


def test_cookie_holds_no_key(client: TestClient, key: CreatedKey) -> None:
    _login(client, key)
    assert key.secret not in str(client.cookies.get("ruquant_session"))


def test_submit_and_view_job(client: TestClient, key: CreatedKey, store: JobStore) -> None:
    _login(client, key)
    response = client.post("/submit", data=FORM, follow_redirects=False)
    assert response.status_code == 303
    job_id = response.headers["location"].rsplit("/", 1)[1]
    job = store.get(job_id, owner_key_id=key.id)
    assert job is not None
    assert job.request["quant"]["w_bits"] == 6
    assert store.token(job_id) == FORM["hub_token"]

    again = client.post("/submit", data=FORM, follow_redirects=False)
    assert again.headers["location"] == f"/jobs/{job_id}"

    page = client.get(f"/jobs/{job_id}")
    assert page.status_code == 200
    assert "queued" in page.text
    assert FORM["hub_token"] not in page.text
    assert job_id[:12] in client.get("/").text


def test_submit_shows_field_errors(client: TestClient, key: CreatedKey) -> None:
    _login(client, key)
    response = client.post("/submit", data={**FORM, "model_id": "a/b/c"})
    assert "model_id: Value error" in response.text
    assert FORM["hub_token"] not in response.text


def test_report_figure_and_events(client: TestClient, key: CreatedKey, store: JobStore) -> None:
    _login(client, key)
    job_id = client.post("/submit", data=FORM).url.path.rsplit("/", 1)[1]
    store.claim(job_id, worker="test", task_id=None)
    report = {
        "preset": "W6A6",
        "fp_perplexity": 20.0,
        "quantized_perplexity": 21.0,
        "recovery": 20.0 / 21.0,
    }
    store.transition(
        job_id,
        JobState.SUCCEEDED,
        report=report,
        result_commit="c0ffee",
        target_repo="alice/SmolLM2-135M-RUQuant-W6A6",
    )
    page = client.get(f"/jobs/{job_id}").text
    assert "<svg" in page
    assert "<th>Quantized perplexity</th><td>21</td>" in page
    assert "<th>Recovery (float / quantized perplexity)</th><td>0.9524</td>" in page
    assert "c0ffee" in page
    with client.stream("GET", f"/jobs/{job_id}/events") as response:
        text = "".join(response.iter_text())
    assert 'event: end\ndata: {"state": "succeeded"}' in text


def test_other_owner_and_revoked_key(
    client: TestClient, key: CreatedKey, other_key: CreatedKey, store: JobStore
) -> None:
    _login(client, key)
    job_id = client.post("/submit", data=FORM).url.path.rsplit("/", 1)[1]
    client.post("/logout")
    _login(client, other_key)
    assert client.get(f"/jobs/{job_id}").status_code == 404
    with store.session() as session:
        revoke_key(session, other_key.id)
    assert 'name="api_key"' in client.get("/").text
