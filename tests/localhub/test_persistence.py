"""Data survives a restart, and concurrent commits to one repository both land."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx2
import pytest
from huggingface_hub import CommitOperationAdd, HfApi, hf_hub_download
from huggingface_hub.errors import HfHubHTTPError

from localhub.pytest_plugin import LocalHubFixture
from localhub.testing import ALICE_WRITE, TEST_TOKENS, configure_client

ApiFactory = Callable[[str | None], HfApi]

REPO_ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def _cli_server(storage: Path, tokens: Path) -> Iterator[str]:
    """Run `python -m localhub` in a subprocess and yield its endpoint once it accepts requests."""
    port = _free_port()
    endpoint = f"http://127.0.0.1:{port}"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "localhub",
            "--storage",
            str(storage),
            "--tokens",
            str(tokens),
            "--port",
            str(port),
            "--log-level",
            "warning",
        ],
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx2.get(f"{endpoint}/api/whoami-v2", timeout=1)
                break
            except httpx2.TransportError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"localhub did not start on port {port}") from None
                time.sleep(0.1)
        yield endpoint
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=15)


def test_data_survives_cli_restart(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    storage, tokens = tmp_path / "storage", tmp_path / "tokens.json"
    tokens.write_text(json.dumps(TEST_TOKENS))
    content = os.urandom(4096)

    with _cli_server(storage, tokens) as endpoint:
        configure_client(monkeypatch, endpoint, tmp_path / "cache")
        api = HfApi(endpoint=endpoint, token=ALICE_WRITE)
        api.create_repo("alice/kept", private=True)
        commit = api.upload_file(
            path_or_fileobj=content, path_in_repo="weights.bin", repo_id="alice/kept"
        )
        api.create_tag("alice/kept", tag="v1")

    with _cli_server(storage, tokens) as endpoint:
        configure_client(monkeypatch, endpoint, tmp_path / "cache")
        api = HfApi(endpoint=endpoint, token=ALICE_WRITE)
        info = api.model_info("alice/kept")
        path = hf_hub_download("alice/kept", "weights.bin", revision="v1", token=ALICE_WRITE)

    assert info.sha == commit.oid
    assert info.private is True
    assert Path(path).read_bytes() == content


def test_fixture_restart_keeps_data(localhub: LocalHubFixture, hub_api: ApiFactory) -> None:
    hub_api(ALICE_WRITE).create_repo("alice/kept")
    old_endpoint = localhub.endpoint

    new_endpoint = localhub.restart()

    assert new_endpoint != old_endpoint
    assert hub_api(ALICE_WRITE).repo_exists("alice/kept")


def test_second_server_same_storage_fails(localhub: LocalHubFixture) -> None:
    from localhub import BackgroundHub

    with pytest.raises(RuntimeError, match="in use by another localhub server"):
        BackgroundHub(localhub.storage_dir, startup_timeout_s=5).start()


def test_concurrent_commits_both_land(hub_api: ApiFactory) -> None:
    api = hub_api(ALICE_WRITE)
    api.create_repo("alice/busy")
    start = threading.Barrier(2)
    errors: list[BaseException] = []

    def upload(name: str) -> None:
        try:
            start.wait()
            api.upload_file(
                path_or_fileobj=name.encode() * 1000, path_in_repo=name, repo_id="alice/busy"
            )
        except BaseException as exc:  # reported by the assert below
            errors.append(exc)

    threads = [threading.Thread(target=upload, args=(name,)) for name in ("a.txt", "b.txt")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert errors == []
    assert {"a.txt", "b.txt"} <= set(api.list_repo_files("alice/busy"))
    assert len(api.list_repo_commits("alice/busy")) == 3  # initial commit and one per upload


def test_concurrent_commits_same_parent(hub_api: ApiFactory) -> None:
    api = hub_api(ALICE_WRITE)
    api.create_repo("alice/busy")
    parent = api.model_info("alice/busy").sha
    start = threading.Barrier(2)
    outcomes: list[str] = []

    def commit(name: str) -> None:
        start.wait()
        try:
            api.create_commit(
                repo_id="alice/busy",
                operations=[CommitOperationAdd(name, name.encode())],
                commit_message=f"Add {name}",
                parent_commit=parent,
            )
            outcomes.append("committed")
        except HfHubHTTPError as exc:
            outcomes.append(f"rejected {exc.response.status_code}")

    threads = [threading.Thread(target=commit, args=(name,)) for name in ("a.txt", "b.txt")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    # The repository lock serializes the two commits, so the second finds the head moved.
    assert sorted(outcomes) == ["committed", "rejected 412"]
