"""HTTP errors in the form the `huggingface_hub` client maps to its typed exceptions.

`huggingface_hub.utils.hf_raise_for_status` (2.4) reads the `X-Error-Code` header first:
`RepoNotFound`, `RevisionNotFound`, `EntryNotFound` and `GatedRepo` become
`RepositoryNotFoundError`, `RevisionNotFoundError`, `RemoteEntryNotFoundError` and
`GatedRepoError`. It then appends `X-Error-Message` and the body's `error` field to the message,
and for a 403 it quotes `X-Error-Message` in its "403 Forbidden" text.
"""

from __future__ import annotations

import enum

from starlette.responses import JSONResponse, Response

__all__ = [
    "ErrorCode",
    "HubError",
    "authentication_required",
    "bad_request",
    "entry_not_found",
    "forbidden",
    "gated",
    "invalid_credentials",
    "repo_not_found",
    "revision_not_found",
]


class ErrorCode(enum.StrEnum):
    """Values of the `X-Error-Code` header that the client recognizes."""

    REPO_NOT_FOUND = "RepoNotFound"
    REVISION_NOT_FOUND = "RevisionNotFound"
    ENTRY_NOT_FOUND = "EntryNotFound"
    GATED_REPO = "GatedRepo"


def _header_safe(text: str) -> str:
    # Header values must be Latin-1. Paths may be any Unicode, so escape the rest.
    return text.encode("latin-1", "backslashreplace").decode("latin-1").replace("\n", " ")


class HubError(Exception):
    """An error response: status, optional error code, message and extra headers."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        code: ErrorCode | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.headers = dict(headers or {})

    def to_response(self) -> Response:
        """Build the JSON response `{"error": message}` with the error headers."""
        headers = {"X-Error-Message": _header_safe(self.message), **self.headers}
        if self.code is not None:
            headers["X-Error-Code"] = self.code.value
        return JSONResponse({"error": self.message}, status_code=self.status, headers=headers)


def repo_not_found(repo_label: str, *, authenticated: bool) -> HubError:
    """Return the error for a repository that does not exist or that the caller may not see.

    As on the Hub, anonymous callers get 401 and authenticated ones 404, and the response is the
    same for a private repository as for a missing one, so it does not reveal which it is.
    """
    return HubError(
        404 if authenticated else 401,
        f"Repository not found: {repo_label}",
        code=ErrorCode.REPO_NOT_FOUND,
    )


def revision_not_found(revision: str) -> HubError:
    """Return the error for a revision missing from an existing repository."""
    return HubError(404, f"Invalid rev id: {revision}", code=ErrorCode.REVISION_NOT_FOUND)


def entry_not_found(message: str, *, commit: str | None = None) -> HubError:
    """Return the error for a missing file or folder, naming the commit that was searched.

    `hf_hub_download` reads `X-Repo-Commit` from this response to cache that the file is absent.
    """
    headers = {"X-Repo-Commit": commit} if commit is not None else None
    return HubError(404, message, code=ErrorCode.ENTRY_NOT_FOUND, headers=headers)


def gated(repo_label: str, *, authenticated: bool, repo_url: str) -> HubError:
    """Return the error for a gated repository's file when the caller has no access."""
    if not authenticated:
        return HubError(
            401,
            f"Access to {repo_label} is restricted. You must have access to it and be "
            "authenticated to access it. Pass a token.",
            code=ErrorCode.GATED_REPO,
        )
    return HubError(
        403,
        f"Access to {repo_label} is restricted and you are not in the authorized list. "
        f"An administrator grants access with `localhub grant` (repository page: {repo_url}).",
        code=ErrorCode.GATED_REPO,
    )


def invalid_credentials() -> HubError:
    """Return the error for an unknown token.

    The client recognizes this exact message and then does not report the 401 as a missing
    repository.
    """
    return HubError(401, "Invalid credentials in Authorization header")


def authentication_required(action: str) -> HubError:
    """Return the error for an anonymous request that needs a token."""
    return HubError(401, f"Authentication required to {action}: pass a token.")


def forbidden(message: str) -> HubError:
    """Return a 403 error, whose `message` the client shows as the reason."""
    return HubError(403, message)


def bad_request(message: str) -> HubError:
    """Return a 400 error, which the client raises as `BadRequestError`."""
    return HubError(400, message)
