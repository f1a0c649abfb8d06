"""Report figures kept in the job store: served to their owner over the API and the web page."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

from service.auth import CreatedKey
from service.jobs.figures import save_figures
from service.jobs.states import JobState
from service.jobs.store import JobStore
from tests.api.conftest import auth
from tests.worker.fakes import tiny_png


def _succeeded_job(client: TestClient, key: CreatedKey, store: JobStore, folder: Path) -> str:
    body = {"model_id": "alice/tiny", "preset": "W4A4"}
    job_id: str = client.post("/v1/jobs", json=body, headers=auth(key)).json()["id"]
    store.claim(job_id, worker="test", task_id=None)
    (folder / "perplexity.png").write_bytes(tiny_png())
    (folder / "big.png").write_bytes(b"\0" * (4 * 1024**2 + 1))
    assert save_figures(store, job_id, folder, ["perplexity.png", "big.png", "gone.png"]) == [
        "perplexity.png"
    ]
    report = {"fp_perplexity": 20.0, "figures": {"perplexity": "perplexity.png"}}
    store.transition(job_id, JobState.SUCCEEDED, report=report)
    return job_id


def test_figure_served_to_owner(
    client: TestClient, key: CreatedKey, other_key: CreatedKey, store: JobStore, tmp_path: Path
) -> None:
    job_id = _succeeded_job(client, key, store, tmp_path)
    response = client.get(f"/v1/jobs/{job_id}/figures/perplexity.png", headers=auth(key))
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/png"
    assert response.content == tiny_png()
    other = client.get(f"/v1/jobs/{job_id}/figures/perplexity.png", headers=auth(other_key))
    assert other.status_code == 404
    missing = client.get(f"/v1/jobs/{job_id}/figures/big.png", headers=auth(key))
    assert missing.status_code == 404


def test_job_page_shows_figure(
    client: TestClient, key: CreatedKey, store: JobStore, tmp_path: Path
) -> None:
    job_id = _succeeded_job(client, key, store, tmp_path)
    client.post("/login", data={"api_key": key.secret})
    page = client.get(f"/jobs/{job_id}").text
    assert f'<img src="/jobs/{job_id}/figures/perplexity.png"' in page
    image = client.get(f"/jobs/{job_id}/figures/perplexity.png")
    assert image.content == tiny_png()
