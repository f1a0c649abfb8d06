"""A small synchronous client of the service API with retries and idempotent submission."""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import httpx

__all__ = ["FINAL_STATES", "Client", "ClientError", "RetryPolicy", "idempotency_key_for"]

logger = logging.getLogger(__name__)

FINAL_STATES = frozenset({"succeeded", "failed", "cancelled"})
_RETRY_STATUS = frozenset({429, 500, 502, 503, 504})


class ClientError(Exception):
    """The service rejected a request (``status`` set) or could not be reached (``status`` None)."""

    def __init__(self, message: str, *, status: int | None, detail: Any = None) -> None:
        super().__init__(message)
        self.status = status
        self.detail = detail


@dataclass(frozen=True)
class RetryPolicy:
    """Retries of connection errors, 429 and 5xx: delays of ``base_s * 2**n``, capped."""

    attempts: int = 6
    base_s: float = 0.5
    max_s: float = 30.0

    def delays(self) -> Iterable[float]:
        """Yield the wait before each retry."""
        for attempt in range(self.attempts - 1):
            yield min(self.max_s, self.base_s * 2**attempt)


def idempotency_key_for(entry: dict[str, Any], *, prefix: str = "") -> str:
    """Return a key derived from a job entry: the same entry always gets the same key.

    ``hub_token`` is left out, so a rotated token does not submit the job a second time.
    """
    canonical = json.dumps(
        {k: v for k, v in entry.items() if k != "hub_token"}, sort_keys=True, separators=(",", ":")
    )
    return f"{prefix}job-{hashlib.sha256(canonical.encode()).hexdigest()[:32]}"


class Client:
    """Client of ``/v1`` with one API key."""

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        timeout_s: float = 30.0,
        retry: RetryPolicy | None = None,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._http = httpx.Client(
            base_url=base_url.rstrip("/"),
            headers={"Authorization": f"Bearer {api_key}"},
            timeout=timeout_s,
            transport=transport,
        )
        self._retry = retry or RetryPolicy()
        self._sleep = sleep

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        delays = iter(self._retry.delays())
        while True:
            try:
                response = self._http.request(method, path, **kwargs)
            except httpx.TransportError as error:
                delay = next(delays, None)
                if delay is None:
                    raise ClientError(f"{method} {path} failed: {error}", status=None) from error
                logger.warning("%s %s failed (%s); retrying in %.1f s", method, path, error, delay)
                self._sleep(delay)
                continue
            if response.status_code in _RETRY_STATUS:
                delay = next(delays, None)
                if delay is not None:
                    retry_after = response.headers.get("Retry-After", "")
                    if retry_after.isdigit():
                        delay = max(delay, float(retry_after))
                    logger.warning(
                        "%s %s returned %d; retrying in %.1f s",
                        method,
                        path,
                        response.status_code,
                        delay,
                    )
                    self._sleep(delay)
                    continue
            if response.status_code >= 400:
                try:
                    detail = response.json().get("detail")
                except ValueError:
                    detail = response.text
                raise ClientError(
                    f"{method} {path} returned {response.status_code}: {detail}",
                    status=response.status_code,
                    detail=detail,
                )
            return response

    def submit(
        self, request: dict[str, Any], *, idempotency_key: str | None = None
    ) -> dict[str, Any]:
        """Submit a job and return it; with a key, a retried submission returns the same job."""
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        job: dict[str, Any] = self._request(
            "POST", "/v1/jobs", json=request, headers=headers
        ).json()
        return job

    def get(self, job_id: str) -> dict[str, Any]:
        """Return the job."""
        job: dict[str, Any] = self._request("GET", f"/v1/jobs/{job_id}").json()
        return job

    def list(self, *, state: str | None = None, limit: int = 50, offset: int = 0) -> dict[str, Any]:
        """Return one page of the caller's jobs."""
        params: dict[str, Any] = {"limit": limit, "offset": offset}
        if state:
            params["state"] = state
        page: dict[str, Any] = self._request("GET", "/v1/jobs", params=params).json()
        return page

    def cancel(self, job_id: str) -> dict[str, Any]:
        """Cancel the job and return it."""
        job: dict[str, Any] = self._request("POST", f"/v1/jobs/{job_id}/cancel").json()
        return job

    def report(self, job_id: str) -> dict[str, Any]:
        """Return the report of a succeeded job."""
        report: dict[str, Any] = self._request("GET", f"/v1/jobs/{job_id}/report").json()
        return report

    def figure(self, job_id: str, name: str) -> bytes:
        """Return one figure file (PNG) of a succeeded job's report."""
        return self._request("GET", f"/v1/jobs/{job_id}/figures/{name}").content

    def wait(
        self,
        job_ids: Iterable[str],
        *,
        poll_s: float = 10.0,
        timeout_s: float | None = None,
        on_update: Callable[[dict[str, Any]], None] | None = None,
    ) -> dict[str, dict[str, Any]]:
        """Poll until every job is final; return the final jobs by id.

        Raises ``TimeoutError`` when ``timeout_s`` passes first.
        """
        pending = list(dict.fromkeys(job_ids))
        done: dict[str, dict[str, Any]] = {}
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while pending:
            for job_id in list(pending):
                job = self.get(job_id)
                if on_update is not None:
                    on_update(job)
                if job["state"] in FINAL_STATES:
                    done[job_id] = job
                    pending.remove(job_id)
            if not pending:
                break
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"{len(pending)} job(s) not finished: {', '.join(pending)}")
            self._sleep(poll_s)
        return done
