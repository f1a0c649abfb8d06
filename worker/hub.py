"""Hub client construction and the mapping of Hub errors to job errors.

The endpoint always comes from the settings (``RUQUANT_HUB_ENDPOINT``), never from a default in
the code, so tests and offline demos point the worker at a local Hub-compatible server.
"""

from __future__ import annotations

import httpx2
from huggingface_hub import HfApi
from huggingface_hub.errors import (
    BadRequestError,
    DisabledRepoError,
    GatedRepoError,
    HfHubHTTPError,
    RemoteEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)

from service.settings import Settings
from worker.errors import JobError, TransientError

__all__ = ["TRANSIENT_STATUS", "hub_api", "map_hub_error"]

TRANSIENT_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})


def hub_api(settings: Settings, token: str | None) -> HfApi:
    """Return an ``HfApi`` bound to the configured endpoint and ``token``."""
    return HfApi(endpoint=settings.hub_endpoint.rstrip("/"), token=token or False)


def map_hub_error(error: Exception, *, repo_id: str, action: str) -> JobError | TransientError:
    """Translate a Hub client error raised while ``action`` on ``repo_id`` into a job error.

    Raises ``error`` itself again when it is no Hub or network error, so programming errors are
    not disguised as Hub failures.
    """
    if isinstance(error, GatedRepoError):
        return JobError(
            "repo_gated",
            f"{repo_id} is gated and this token has no access: accept its conditions on the Hub "
            "with the token's account, or send a token that has access.",
        )
    if isinstance(error, RepositoryNotFoundError):
        return JobError(
            "repo_not_found",
            f"{repo_id} was not found or is private to another account while {action}: check "
            "the id and that the token can read it.",
        )
    if isinstance(error, RevisionNotFoundError):
        return JobError(
            "revision_not_found", f"The requested revision of {repo_id} does not exist."
        )
    if isinstance(error, RemoteEntryNotFoundError):
        return JobError("file_not_found", f"A file of {repo_id} was not found while {action}.")
    if isinstance(error, DisabledRepoError):
        return JobError("repo_disabled", f"{repo_id} is disabled on the Hub.")
    if isinstance(error, BadRequestError):
        return JobError("hub_bad_request", f"The Hub rejected the request while {action}: {error}")
    if isinstance(error, HfHubHTTPError):
        status = error.response.status_code
        if status in TRANSIENT_STATUS:
            return TransientError(f"Hub returned HTTP {status} while {action} on {repo_id}")
        if status in (401, 403):
            return JobError(
                "hub_forbidden",
                f"The token is not allowed to access {repo_id} while {action} (HTTP {status}): "
                "use a token with the needed read or write permission.",
            )
        return JobError(
            "hub_error", f"Hub request failed while {action} on {repo_id}: HTTP {status}"
        )
    if isinstance(error, httpx2.TransportError | ConnectionError | TimeoutError):
        return TransientError(f"network error while {action} on {repo_id}: {type(error).__name__}")
    raise error
