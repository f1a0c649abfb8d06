"""``/healthz`` (the process is up) and ``/readyz`` (database and broker reachable)."""

from __future__ import annotations

import logging

from anyio import to_thread
from fastapi import APIRouter, Request, status
from fastapi.responses import JSONResponse
from sqlalchemy import text

from api.deps import StoreDep
from api.schemas import HealthPublic

__all__ = ["router"]

logger = logging.getLogger(__name__)

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=HealthPublic, summary="Liveness")
def healthz() -> HealthPublic:
    """Return ok while the process serves requests."""
    return HealthPublic(status="ok")


@router.get(
    "/readyz",
    response_model=HealthPublic,
    summary="Readiness",
    responses={503: {"model": HealthPublic, "description": "A dependency is unreachable."}},
)
async def readyz(request: Request, store: StoreDep) -> JSONResponse:
    """Check that the job store runs a query and the broker accepts a connection."""
    checks: dict[str, str] = {}

    def check_database() -> None:
        with store.session() as session:
            session.execute(text("SELECT 1"))

    for name, check in (("database", check_database), ("broker", request.app.state.check_broker)):
        try:
            await to_thread.run_sync(check)
            checks[name] = "ok"
        except Exception as error:  # noqa: BLE001 - any failure means "not ready"
            logger.warning("readiness check %s failed: %s", name, error)
            checks[name] = f"error: {type(error).__name__}"
    ready = all(value == "ok" for value in checks.values())
    body = HealthPublic(status="ok" if ready else "unavailable", checks=checks)
    code = status.HTTP_200_OK if ready else status.HTTP_503_SERVICE_UNAVAILABLE
    return JSONResponse(body.model_dump(), status_code=code)
