"""Model loading from folders, aliases and a local Hub server on 127.0.0.1."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import pytest
import torch
from huggingface_hub import constants as hub_constants
from transformers import LlamaForCausalLM

from ruquant.errors import ModelLoadError
from ruquant.models import loading
from ruquant.models.loading import load_model, resolve_model_folder

REPO_ROOT = Path(__file__).resolve().parents[2]
TINY_REPO = "test-org/tiny-llama"
BIN_REPO = "test-org/tiny-llama-bin"
GATED_REPO = "test-org/gated-llama"


@dataclass
class _HubState:
    """Repos served by the local Hub: repo id to {file path: content}."""

    repos: dict[str, dict[str, bytes]] = field(default_factory=dict)
    gated: set[str] = field(default_factory=set)

    @staticmethod
    def commit(repo_id: str) -> str:
        return hashlib.sha1(repo_id.encode()).hexdigest()  # 40 hex digits, like a git commit


def _make_handler(state: _HubState) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        """Serves the subset of the Hub API that ``snapshot_download`` uses."""

        def do_GET(self) -> None:
            self._serve(send_body=True)

        def do_HEAD(self) -> None:
            self._serve(send_body=False)

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _serve(self, *, send_body: bool) -> None:
            parts = [unquote(part) for part in urlsplit(self.path).path.strip("/").split("/")]
            if parts[:2] == ["api", "models"] and len(parts) >= 6:
                repo_id, action, revision = "/".join(parts[2:4]), parts[4], parts[5]
                files = self._check_repo(repo_id, revision)
                if files is None:
                    return
                if action == "revision":
                    siblings = [{"rfilename": name} for name in files]
                    self._send_json(
                        {"id": repo_id, "sha": state.commit(repo_id), "siblings": siblings}
                    )
                else:
                    tree = [
                        {
                            "type": "file",
                            "path": name,
                            "size": len(content),
                            "oid": _blob_id(content),
                        }
                        for name, content in files.items()
                    ]
                    self._send_json(tree)
                return

            if len(parts) >= 5 and parts[2] == "resolve":
                repo_id, revision, name = "/".join(parts[:2]), parts[3], "/".join(parts[4:])
                files = self._check_repo(repo_id, revision)
                if files is None:
                    return
                if name not in files:
                    self._send_error(404, "EntryNotFound")
                    return
                content = files[name]
                self.send_response(200)
                self.send_header("X-Repo-Commit", state.commit(repo_id))
                self.send_header("ETag", f'"{hashlib.sha256(content).hexdigest()}"')
                self.send_header("Content-Length", str(len(content)))
                self.end_headers()
                if send_body:
                    self.wfile.write(content)
                return

            self._send_error(404, "RepoNotFound")

        def _check_repo(self, repo_id: str, revision: str) -> dict[str, bytes] | None:
            if repo_id in state.gated:
                self._send_error(403, "GatedRepo")
                return None
            if repo_id not in state.repos:
                self._send_error(404, "RepoNotFound")
                return None
            if revision not in ("main", state.commit(repo_id)):
                self._send_error(404, "RevisionNotFound")
                return None
            return state.repos[repo_id]

        def _send_json(self, payload: object) -> None:
            body = json.dumps(payload).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _send_error(self, status: int, code: str) -> None:
            body = json.dumps({"error": code}).encode()
            self.send_response(status)
            self.send_header("X-Error-Code", code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    return Handler


def _blob_id(content: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


def _read_folder(folder: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(folder.iterdir()) if path.is_file()}


@pytest.fixture(scope="module")
def hub_server(tiny_llama_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Start a local Hub on 127.0.0.1 serving the tiny model, a .bin-only copy and a gated repo."""
    files = _read_folder(tiny_llama_dir)
    bin_files = {name: content for name, content in files.items() if name != "model.safetensors"}
    state_dict = LlamaForCausalLM.from_pretrained(tiny_llama_dir).state_dict()
    bin_path = tmp_path_factory.mktemp("bin") / "pytorch_model.bin"
    torch.save(state_dict, bin_path)
    bin_files["pytorch_model.bin"] = bin_path.read_bytes()
    state = _HubState(
        repos={TINY_REPO: files, BIN_REPO: bin_files, GATED_REPO: files},
        gated={GATED_REPO},
    )

    server = ThreadingHTTPServer(("127.0.0.1", 0), _make_handler(state))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture
def local_hub(hub_server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """Point huggingface_hub at the local Hub, with an empty cache and no stored token.

    huggingface_hub derives these two constants from HF_ENDPOINT at import time, so patching them
    has the effect of setting HF_ENDPOINT before the import.
    """
    monkeypatch.setattr(hub_constants, "ENDPOINT", hub_server)
    monkeypatch.setattr(
        hub_constants,
        "HUGGINGFACE_CO_URL_TEMPLATE",
        hub_server + "/{repo_id}/resolve/{revision}/{filename}",
    )
    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(tmp_path / "hub-cache"))
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(hub_constants, "HF_TOKEN_PATH", str(tmp_path / "no-token"))
    monkeypatch.delenv("HF_TOKEN", raising=False)
    return hub_server


def _logits(model: torch.nn.Module, input_ids: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=input_ids).logits


@pytest.fixture
def one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def test_local_folder_loads(tiny_llama_dir: Path, one_thread: None) -> None:
    model, tokenizer = load_model(str(tiny_llama_dir))
    reference = LlamaForCausalLM.from_pretrained(tiny_llama_dir).eval()
    input_ids = torch.tensor([tokenizer("hello world").input_ids])

    assert not model.training
    assert model.config._attn_implementation == "sdpa"
    assert model.dtype == torch.float32
    assert model.device.type == "cpu"
    assert torch.equal(_logits(model, input_ids), _logits(reference, input_ids))


def test_dtype_applied(tiny_llama_dir: Path) -> None:
    model, _ = load_model(str(tiny_llama_dir), dtype=torch.bfloat16)

    assert all(parameter.dtype == torch.bfloat16 for parameter in model.parameters())


def test_integer_dtype_raises(tiny_llama_dir: Path) -> None:
    with pytest.raises(ValueError, match="not a floating-point dtype"):
        load_model(str(tiny_llama_dir), dtype=torch.int8)


@pytest.mark.parametrize(
    "name", ["./missing-model", "/nonexistent/model", "~/missing/model", "a/b/c"]
)
def test_missing_local_path_raises(name: str) -> None:
    with pytest.raises(ModelLoadError, match="not found"):
        load_model(name)


def test_folder_without_config_raises(tmp_path: Path) -> None:
    (tmp_path / "model.safetensors").write_bytes(b"")

    with pytest.raises(ModelLoadError, match="no config.json"):
        load_model(str(tmp_path))


def test_folder_without_weights_raises(tiny_llama_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "config.json").write_bytes((tiny_llama_dir / "config.json").read_bytes())

    with pytest.raises(ModelLoadError, match="has no weights"):
        load_model(str(tmp_path))


def test_file_path_raises(tiny_llama_dir: Path) -> None:
    with pytest.raises(ModelLoadError, match="is not a folder"):
        load_model(str(tiny_llama_dir / "config.json"))


def test_alias_uses_bundled_folder(tiny_llama_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(loading.BUNDLED_MODELS, "smollm2-135m", lambda: tiny_llama_dir)

    assert resolve_model_folder("smollm2-135m") == tiny_llama_dir


def test_hub_repo_downloads(local_hub: str, tiny_llama_dir: Path, one_thread: None) -> None:
    model, tokenizer = load_model(TINY_REPO)
    reference = LlamaForCausalLM.from_pretrained(tiny_llama_dir).eval()
    input_ids = torch.tensor([tokenizer("hello hub").input_ids])

    assert torch.equal(_logits(model, input_ids), _logits(reference, input_ids))


def test_hub_commit_revision(local_hub: str) -> None:
    commit = _HubState.commit(TINY_REPO)

    folder = resolve_model_folder(TINY_REPO, revision=commit)

    assert folder.name == commit
    assert (folder / "model.safetensors").is_file()


def test_hub_bin_weights_fallback(local_hub: str, one_thread: None) -> None:
    model, _ = load_model(BIN_REPO)
    folder = resolve_model_folder(BIN_REPO)

    assert (folder / "pytorch_model.bin").is_file()
    assert not any(folder.glob("*.safetensors"))
    assert model.config.num_hidden_layers == 2


def test_hub_repo_not_found(local_hub: str) -> None:
    with pytest.raises(ModelLoadError, match="not found at http://127.0.0.1"):
        load_model("test-org/missing")


def test_hub_gated_repo(local_hub: str) -> None:
    with pytest.raises(ModelLoadError, match="is gated"):
        load_model(GATED_REPO)


def test_hub_revision_not_found(local_hub: str) -> None:
    with pytest.raises(ModelLoadError, match="revision 'no-such-branch' not found"):
        load_model(TINY_REPO, revision="no-such-branch")


def test_hub_invalid_repo_id(local_hub: str) -> None:
    with pytest.raises(ModelLoadError, match="nor a valid Hub repo id"):
        load_model("bad repo id!")


def test_hub_unreachable(local_hub: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # A port that was free a moment ago: connections to it are refused.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_endpoint = f"http://127.0.0.1:{probe.getsockname()[1]}"
    monkeypatch.setattr(hub_constants, "ENDPOINT", closed_endpoint)
    monkeypatch.setattr(
        hub_constants,
        "HUGGINGFACE_CO_URL_TEMPLATE",
        closed_endpoint + "/{repo_id}/resolve/{revision}/{filename}",
    )

    with pytest.raises(ModelLoadError, match="failed to reach the Hub"):
        load_model(TINY_REPO)


def test_hf_endpoint_env_in_new_process(hub_server: str, tmp_path: Path) -> None:
    # HF_ENDPOINT is read when huggingface_hub is imported, so this runs in a fresh interpreter.
    code = (
        "from ruquant.models.loading import resolve_model_folder; "
        f"print(resolve_model_folder({TINY_REPO!r}))"
    )
    env = {
        **os.environ,
        "HF_ENDPOINT": hub_server,
        "HF_HOME": str(tmp_path / "hf-home"),
        "HF_HUB_OFFLINE": "0",
        "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    }
    env.pop("HF_TOKEN", None)

    completed = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert completed.returncode == 0, completed.stderr
    folder = Path(completed.stdout.strip().splitlines()[-1])
    assert folder.is_relative_to(tmp_path / "hf-home")
    assert (folder / "config.json").is_file()
