"""App-level checks: no torch in the API process, OpenAPI examples, health and readiness."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from fastapi import FastAPI
from fastapi.testclient import TestClient

from api.main import create_app
from tests.service.fixtures import make_settings

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_api_import_keeps_torch_out(tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "from api.main import create_app\n"
        "from tests.service.fixtures import make_settings\n"
        "from pathlib import Path\n"
        f"create_app(make_settings(Path({str(tmp_path)!r})))\n"
        "heavy = sorted(m for m in ('torch', 'transformers') if m in sys.modules)\n"
        "print(','.join(heavy))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == ""


def test_openapi_has_examples(app: FastAPI) -> None:
    schema = app.openapi()
    operations = [
        (path, method, operation)
        for path, methods in schema["paths"].items()
        for method, operation in methods.items()
    ]
    assert {path for path, _, _ in operations} >= {
        "/v1/jobs",
        "/v1/jobs/{job_id}",
        "/v1/jobs/{job_id}/cancel",
        "/v1/jobs/{job_id}/report",
        "/v1/jobs/{job_id}/events",
        "/healthz",
        "/readyz",
    }
    components = schema["components"]["schemas"]
    assert components["JobRequest"]["examples"]
    for path, method, operation in operations:
        ok = operation["responses"].get("200") or operation["responses"].get("202")
        content = ok["content"]
        media = next(iter(content.values()))
        ref = media.get("schema", {}).get("$ref", "")
        has_example = "example" in media or "examples" in media
        if ref:
            has_example = has_example or "examples" in components[ref.rsplit("/", 1)[1]]
        assert has_example, f"{method.upper()} {path} has no example"


def test_health_and_ready(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok", "checks": {}}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"] == {"database": "ok", "broker": "ok"}


def test_ready_fails_without_broker(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, broker_url="redis://127.0.0.1:9/0")
    with TestClient(create_app(settings, run_reaper=False)) as client:
        response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["checks"]["database"] == "ok"
    assert response.json()["checks"]["broker"].startswith("error")
