"""Source repositories on a local Hub, built with the real ``huggingface_hub`` client."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from huggingface_hub import CommitOperationAdd, HfApi
from huggingface_hub.errors import RepositoryNotFoundError

__all__ = [
    "LLAMA_CONFIG",
    "commit_titles",
    "publish_files",
    "publish_folder",
    "publish_source",
    "repo_files",
]

# SmolLM2-135M's widths; the fake quantizer never reads the weights.
LLAMA_CONFIG: dict[str, Any] = {
    "architectures": ["LlamaForCausalLM"],
    "model_type": "llama",
    "hidden_size": 576,
    "intermediate_size": 1536,
    "num_attention_heads": 9,
    "num_key_value_heads": 3,
    "num_hidden_layers": 30,
}


def publish_files(
    endpoint: str, token: str, repo_id: str, files: dict[str, bytes], *, private: bool = False
) -> str:
    """Create ``repo_id`` (if needed) and commit ``files`` to main; return the commit id."""
    api = HfApi(endpoint=endpoint, token=token)
    api.create_repo(repo_id, private=private, exist_ok=True)
    operations = [
        CommitOperationAdd(path_in_repo=name, path_or_fileobj=content)
        for name, content in files.items()
    ]
    info = api.create_commit(repo_id, operations=operations, commit_message="Add source files")
    return str(info.oid)


def publish_source(
    endpoint: str,
    token: str,
    repo_id: str,
    *,
    config: dict[str, Any] | None = None,
    weights: tuple[str, ...] = ("model.safetensors",),
    extra: dict[str, bytes] | None = None,
) -> str:
    """Publish a small source model: ``config.json``, weight placeholders and a tokenizer file."""
    files: dict[str, bytes] = {name: b"\0" * 64 for name in weights}
    files["tokenizer.json"] = b"{}"
    if config is not None:
        files["config.json"] = json.dumps(config).encode()
    files.update(extra or {})
    return publish_files(endpoint, token, repo_id, files)


def publish_folder(endpoint: str, token: str, repo_id: str, folder: Path) -> str:
    """Create ``repo_id`` and upload every file of ``folder`` in one commit; return its id."""
    api = HfApi(endpoint=endpoint, token=token)
    api.create_repo(repo_id, private=False, exist_ok=True)
    info = api.upload_folder(repo_id=repo_id, folder_path=folder, commit_message="Add model")
    return str(info.oid)


def commit_titles(endpoint: str, token: str, repo_id: str, revision: str = "main") -> list[str]:
    """Return the titles of the commits on ``revision``, newest first; [] when there is no repo."""
    api = HfApi(endpoint=endpoint, token=token)
    try:
        return [commit.title for commit in api.list_repo_commits(repo_id, revision=revision)]
    except RepositoryNotFoundError:
        return []


def repo_files(endpoint: str, token: str, repo_id: str, revision: str = "main") -> list[str]:
    """Return the file names of ``repo_id`` at ``revision``."""
    return sorted(HfApi(endpoint=endpoint, token=token).list_repo_files(repo_id, revision=revision))
