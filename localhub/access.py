"""Permission checks: seeing, downloading from and writing to a repository."""

from __future__ import annotations

from localhub import errors
from localhub.storage.records import RepoSettings
from localhub.tokens import Role, TokenRecord

__all__ = [
    "check_can_create",
    "check_downloadable",
    "check_visible",
    "check_writable",
    "is_member",
]


def is_member(caller: TokenRecord | None, namespace: str) -> bool:
    """Return whether the caller is the user `namespace` or belongs to the organization."""
    return caller is not None and (caller.user == namespace or namespace in caller.orgs)


def check_visible(
    settings: RepoSettings | None, repo_label: str, caller: TokenRecord | None
) -> RepoSettings:
    """Return the settings when the caller may see the repository.

    Raises:
        HubError: RepoNotFound (401 anonymous, 404 authenticated) when the repository does not
            exist or is private to a namespace the caller is not in.
    """
    if settings is None or (settings.private and not is_member(caller, settings.namespace)):
        raise errors.repo_not_found(repo_label, authenticated=caller is not None)
    return settings


def check_downloadable(
    settings: RepoSettings, repo_label: str, caller: TokenRecord | None, repo_url: str
) -> None:
    """Check that the caller may download files, which a gated repository restricts.

    Members of the owning namespace and users granted access may download.

    Raises:
        HubError: GatedRepo (401 anonymous, 403 authenticated).
    """
    if settings.gated is None or is_member(caller, settings.namespace):
        return
    if caller is not None and caller.user in settings.gated_access:
        return
    raise errors.gated(repo_label, authenticated=caller is not None, repo_url=repo_url)


def check_writable(settings: RepoSettings, repo_label: str, caller: TokenRecord | None) -> None:
    """Check that the caller may change the repository (commit, settings, refs, delete).

    Raises:
        HubError: 401 for an anonymous caller, 403 for a read token or a foreign namespace.
    """
    if caller is None:
        raise errors.authentication_required(f"write to {repo_label}")
    if caller.role is not Role.WRITE:
        raise errors.forbidden(
            f"Token '{caller.name}' has the read role and cannot write to {repo_label}: "
            "use a token with the write role"
        )
    if not is_member(caller, settings.namespace):
        raise errors.forbidden(
            f"User {caller.user} cannot write to {repo_label}: only {settings.namespace} "
            "and its members can"
        )


def check_can_create(namespace: str, repo_kind: str, caller: TokenRecord | None) -> TokenRecord:
    """Check that the caller may create a repository in `namespace` and return the caller.

    Raises:
        HubError: 401 for an anonymous caller, 403 for a read token or a foreign namespace.
    """
    if caller is None:
        raise errors.authentication_required(f"create a {repo_kind} repository")
    if caller.role is not Role.WRITE:
        raise errors.forbidden(
            f"Token '{caller.name}' has the read role and cannot create a {repo_kind} "
            f"repository: use a token with the write role"
        )
    if not is_member(caller, namespace):
        raise errors.forbidden(
            f"You don't have the rights to create a {repo_kind} under the namespace "
            f"{namespace!r}: user {caller.user} can create under {caller.user!r}"
            + "".join(f", {org!r}" for org in caller.orgs)
        )
    return caller
