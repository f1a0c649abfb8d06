"""Objects that route handlers receive: the server's state and one request's context."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request

from localhub import access, errors
from localhub.signing import UploadSigner
from localhub.storage import Storage
from localhub.storage.records import Commit, RepoSettings, RepoType
from localhub.tokens import TokenRecord, TokenTable

__all__ = ["HubState", "RepoRef", "RequestContext"]


@dataclass(frozen=True)
class HubState:
    """Services shared by all requests."""

    storage: Storage
    tokens: TokenTable
    signer: UploadSigner


@dataclass(frozen=True)
class RepoRef:
    """A repository named by type and id."""

    repo_type: RepoType
    repo_id: str

    @property
    def label(self) -> str:
        """Name used in messages, such as `alice/tiny` or `dataset alice/calib`."""
        if self.repo_type is RepoType.MODEL:
            return self.repo_id
        return f"{self.repo_type.value} {self.repo_id}"

    def url(self, base_url: str) -> str:
        """Return the repository's web URL, which clients parse back into type and id."""
        return f"{base_url}/{self.repo_type.url_prefix}{self.repo_id}"


@dataclass(frozen=True)
class RequestContext:
    """One request: the Starlette request, its body, the path parameters and the caller.

    `body` contains the whole request body, except for routes that stream it, where it is empty.
    """

    state: HubState
    request: Request
    body: bytes
    params: dict[str, str]
    caller: TokenRecord | None
    base_url: str

    def json_body(self) -> Any:
        """Return the body parsed as JSON.

        Raises:
            HubError: 400 when the body is not valid JSON.
        """
        try:
            return json.loads(self.body or b"null")
        except ValueError as exc:
            raise errors.bad_request(f"Invalid JSON body: {exc}") from exc

    @property
    def repo(self) -> RepoRef:
        """Repository named by the path; routes without one never call this."""
        collection = self.params.get("collection")
        repo_type = RepoType(collection.removesuffix("s")) if collection else RepoType.MODEL
        return RepoRef(repo_type, self.params["repo_id"])

    def visible_repo(self) -> RepoSettings:
        """Return the repository's settings when the caller may see it (else RepoNotFound)."""
        repo = self.repo
        settings = self.state.storage.repos.load_settings(repo.repo_type, repo.repo_id)
        return access.check_visible(settings, repo.label, self.caller)

    def writable_repo(self) -> RepoSettings:
        """Return the repository's settings when the caller may write to it."""
        settings = self.visible_repo()
        access.check_writable(settings, self.repo.label, self.caller)
        return settings

    def resolve(self, revision: str) -> Commit:
        """Return the commit `revision` names in this request's repository.

        Raises:
            HubError: RevisionNotFound.
        """
        repo = self.repo
        commit = self.state.storage.repos.resolve(repo.repo_type, repo.repo_id, revision)
        if commit is None:
            raise errors.revision_not_found(revision)
        return commit
