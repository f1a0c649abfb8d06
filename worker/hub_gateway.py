"""Every Hub call the worker makes, behind one class, with Hub errors mapped to job errors."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from huggingface_hub import GitCommitInfo
from huggingface_hub.errors import RevisionNotFoundError

from service.settings import Settings
from worker.errors import JobError
from worker.hub import hub_api, map_hub_error

__all__ = ["CommitRecord", "HubGateway", "Identity", "SourceInfo"]

logger = logging.getLogger(__name__)

_T = TypeVar("_T")


@dataclass(frozen=True)
class SourceInfo:
    """The source model at one commit: file sizes and the parsed ``config.json`` (if any)."""

    sha: str
    files: dict[str, int]
    config: dict[str, Any] | None


@dataclass(frozen=True)
class Identity:
    """The token's owner: user name, organisations, and whether the token may write."""

    name: str
    orgs: frozenset[str]
    can_write: bool


@dataclass(frozen=True)
class CommitRecord:
    """A commit on the target repository."""

    commit: str
    url: str | None


class HubGateway:
    """Hub operations for one job, with one token, against the configured endpoint."""

    def __init__(self, settings: Settings, token: str | None) -> None:
        self._api = hub_api(settings, token)
        self._token = token
        self._timeout = settings.hub_timeout_s

    @contextmanager
    def _mapped(self, repo_id: str, action: str) -> Iterator[None]:
        try:
            yield
        except JobError:
            raise
        except Exception as error:  # noqa: BLE001 - map_hub_error re-raises non-Hub errors
            raise map_hub_error(error, repo_id=repo_id, action=action) from error

    def _call(self, repo_id: str, action: str, function: Callable[[], _T]) -> _T:
        with self._mapped(repo_id, action):
            return function()

    def inspect_source(self, model_id: str, revision: str | None, work_dir: Path) -> SourceInfo:
        """Return the source's commit, file sizes and config, downloading only ``config.json``."""
        info = self._call(
            model_id,
            "reading the source model",
            lambda: self._api.model_info(
                model_id, revision=revision, files_metadata=True, timeout=self._timeout
            ),
        )
        sha = info.sha or revision or "main"
        files = {s.rfilename: int(s.size or 0) for s in (info.siblings or [])}
        config = None
        if "config.json" in files:
            path = self._call(
                model_id,
                "downloading config.json",
                lambda: self._api.hf_hub_download(
                    model_id, "config.json", revision=sha, local_dir=work_dir
                ),
            )
            config = json.loads(Path(path).read_text(encoding="utf-8"))
        return SourceInfo(sha=sha, files=files, config=config)

    def identity(self) -> Identity:
        """Return who the token belongs to; a missing token is a job error."""
        if not self._token:
            raise JobError(
                "token_missing",
                "No Hub token: send hub_token with the job or set RUQUANT_HUB_TOKEN.",
            )
        data = self._call("whoami", "checking the token", lambda: self._api.whoami(self._token))
        orgs = frozenset(str(org.get("name")) for org in data.get("orgs", []) if org.get("name"))
        access = (data.get("auth") or {}).get("accessToken") or {}
        # Fine-grained tokens list their scopes elsewhere; only a plain read token is known to
        # be unable to write, and the commit itself reports any other refusal.
        can_write = access.get("role") != "read"
        return Identity(name=str(data["name"]), orgs=orgs, can_write=can_write)

    def repo_exists(self, repo_id: str) -> bool:
        """Return whether the model repository exists and the token can see it."""
        return self._call(repo_id, "checking the target", lambda: self._api.repo_exists(repo_id))

    def download(self, model_id: str, sha: str, local_dir: Path, allow: list[str]) -> Path:
        """Download the files matching ``allow`` at commit ``sha`` into ``local_dir``."""
        path = self._call(
            model_id,
            "downloading the source model",
            lambda: self._api.snapshot_download(
                model_id, revision=sha, local_dir=local_dir, allow_patterns=allow
            ),
        )
        return Path(str(path))

    def find_commit(self, repo_id: str, revision: str, marker: str) -> CommitRecord | None:
        """Return the newest commit on ``revision`` whose title or message contains ``marker``."""
        if not self.repo_exists(repo_id):
            return None

        def list_commits() -> list[GitCommitInfo]:
            try:
                return self._api.list_repo_commits(repo_id, revision=revision)
            except RevisionNotFoundError:
                # A new_revision job's branch is created just before its push, so a missing
                # branch contains no commit of this job.
                logger.info("%s has no revision %s yet, so no earlier push", repo_id, revision)
                return []

        commits = self._call(repo_id, "listing target commits", list_commits)
        for commit in commits:
            if marker in f"{commit.title}\n{commit.message}":
                return CommitRecord(commit=commit.commit_id, url=None)
        return None

    def create_target(self, repo_id: str, *, private: bool, branch: str | None) -> None:
        """Create the target repository (and ``branch``), leaving existing ones as they are."""
        self._call(
            repo_id,
            "creating the target repository",
            lambda: self._api.create_repo(repo_id, private=private, exist_ok=True),
        )
        if branch is not None:
            self._call(
                repo_id,
                "creating the target branch",
                lambda: self._api.create_branch(repo_id, branch=branch, exist_ok=True),
            )

    def push(
        self,
        repo_id: str,
        folder: Path,
        *,
        revision: str,
        title: str,
        description: str,
        replace_all: bool,
    ) -> CommitRecord:
        """Upload ``folder`` as one commit; ``replace_all`` deletes remote files not uploaded."""
        info = self._call(
            repo_id,
            "uploading the quantized model",
            lambda: self._api.upload_folder(
                repo_id=repo_id,
                folder_path=folder,
                revision=revision,
                commit_message=title,
                commit_description=description,
                delete_patterns="*" if replace_all else None,
            ),
        )
        return CommitRecord(commit=info.oid, url=info.commit_url)  # type: ignore[union-attr]
