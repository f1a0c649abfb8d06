"""HTTP-level behaviour that the client relies on, checked with raw requests."""

from __future__ import annotations

import http.client
import json
from collections.abc import Callable
from urllib.parse import urlsplit

import httpx2
from huggingface_hub import HfApi

from localhub.pytest_plugin import LocalHubFixture
from localhub.testing import ALICE_WRITE

ApiFactory = Callable[[str | None], HfApi]


def _connection(endpoint: str) -> http.client.HTTPConnection:
    parts = urlsplit(endpoint)
    assert parts.hostname is not None
    assert parts.port is not None
    return http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)


def test_error_response_consumes_body(localhub: LocalHubFixture) -> None:
    # An unknown token is rejected before the body is looked at. The body must still be read,
    # or the next request on this keep-alive connection would start inside it.
    connection = _connection(localhub.endpoint)
    body = b'{"name": "x"}' + b" " * 200_000
    connection.request(
        "POST",
        "/api/repos/create",
        body=body,
        headers={"Authorization": "Bearer hf_unknown", "Content-Type": "application/json"},
    )
    rejected = connection.getresponse()
    rejected.read()
    socket_after_error = connection.sock
    connection.request("GET", "/api/whoami-v2", headers={"Authorization": f"Bearer {ALICE_WRITE}"})
    accepted = connection.getresponse()

    assert rejected.status == 401
    assert rejected.getheader("X-Error-Message") == "Invalid credentials in Authorization header"
    assert socket_after_error is not None
    assert connection.sock is socket_after_error  # the same keep-alive connection
    assert accepted.status == 200
    assert json.loads(accepted.read())["name"] == "alice"
    connection.close()


def test_encoded_revision_with_slashes(localhub: LocalHubFixture, hub_api: ApiFactory) -> None:
    api = hub_api(ALICE_WRITE)
    api.create_repo("alice/tiny")
    api.upload_file(
        path_or_fileobj=b"pr", path_in_repo="a.txt", repo_id="alice/tiny", create_pr=True
    )
    base = f"{localhub.endpoint}/alice/tiny/resolve"

    encoded = httpx2.get(f"{base}/refs%2Fpr%2F1/a.txt")
    plain = httpx2.get(f"{base}/refs/pr/1/a.txt")

    assert encoded.status_code == 200
    assert encoded.content == b"pr"
    assert plain.status_code == 200
    assert plain.content == b"pr"


def test_lfs_upload_requires_signature(localhub: LocalHubFixture) -> None:
    oid = "0" * 64

    response = httpx2.put(
        f"{localhub.endpoint}/lfs/objects/{oid}?size=1&expires=9999999999&signature=bad",
        content=b"x",
    )

    assert response.status_code == 403


def test_lfs_upload_checks_sha256(localhub: LocalHubFixture, hub_api: ApiFactory) -> None:
    hub_api(ALICE_WRITE).create_repo("alice/tiny")
    claimed = "a" * 64
    batch = httpx2.post(
        f"{localhub.endpoint}/alice/tiny.git/info/lfs/objects/batch",
        json={
            "operation": "upload",
            "transfers": ["basic"],
            "objects": [{"oid": claimed, "size": 3}],
        },
        headers={"Authorization": f"Bearer {ALICE_WRITE}"},
    )
    upload_url = batch.json()["objects"][0]["actions"]["upload"]["href"]

    response = httpx2.put(upload_url, content=b"abc")

    assert batch.headers["Content-Type"].startswith("application/vnd.git-lfs+json")
    assert response.status_code == 400
    assert "sha256 mismatch" in response.json()["error"]
    assert not localhub.server.storage_dir.joinpath("blobs", "aa").exists()


def test_unknown_route_is_404(localhub: LocalHubFixture) -> None:
    response = httpx2.get(f"{localhub.endpoint}/api/spaces/alice/tiny")

    assert response.status_code == 404
    assert "No GET endpoint" in response.json()["error"]
