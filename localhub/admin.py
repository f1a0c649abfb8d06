"""Administrative changes made directly on a storage folder: gating and access grants.

These functions write the repository's settings file, which the server reads on every request,
so they take effect on a running server without a restart.

NOTE: they take the repository lock of this process only. A settings change made at the same
moment through the running server's `PUT .../settings` endpoint may be lost.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from localhub.storage import Storage
from localhub.storage.records import GateMode, RepoSettings, RepoType

__all__ = ["grant_access", "revoke_access", "set_gated"]


def _update(
    storage_dir: Path | str,
    repo_type: RepoType,
    repo_id: str,
    edit: Callable[[RepoSettings], None],
) -> RepoSettings:
    repos = Storage(storage_dir).repos
    with repos.lock(repo_type, repo_id):
        settings = repos.load_settings(repo_type, repo_id)
        if settings is None:
            raise LookupError(f"no {repo_type.value} repository {repo_id} in {storage_dir}")
        edit(settings)
        repos.save_settings(settings)
    return settings


def set_gated(
    storage_dir: Path | str,
    repo_id: str,
    mode: GateMode | None,
    *,
    repo_type: RepoType = RepoType.MODEL,
) -> RepoSettings:
    """Gate a repository (`mode` auto or manual) or remove the gate (`mode` None).

    Raises:
        LookupError: the repository does not exist.
    """

    def edit(settings: RepoSettings) -> None:
        settings.gated = mode

    return _update(storage_dir, repo_type, repo_id, edit)


def grant_access(
    storage_dir: Path | str, repo_id: str, user: str, *, repo_type: RepoType = RepoType.MODEL
) -> RepoSettings:
    """Let `user` download files of a gated repository.

    Raises:
        LookupError: the repository does not exist.
    """

    def edit(settings: RepoSettings) -> None:
        if user not in settings.gated_access:
            settings.gated_access.append(user)

    return _update(storage_dir, repo_type, repo_id, edit)


def revoke_access(
    storage_dir: Path | str, repo_id: str, user: str, *, repo_type: RepoType = RepoType.MODEL
) -> RepoSettings:
    """Withdraw a grant made by `grant_access`.

    Raises:
        LookupError: the repository does not exist.
    """

    def edit(settings: RepoSettings) -> None:
        if user in settings.gated_access:
            settings.gated_access.remove(user)

    return _update(storage_dir, repo_type, repo_id, edit)
