"""The FastAPI application factory: ``uvicorn --factory api.main:create_app``."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from functools import partial

from fastapi import FastAPI
from starlette.middleware.sessions import SessionMiddleware

from api.errors import install_error_handlers
from api.reaper_loop import run_reaper_loop
from api.routes import health, jobs, web
from service.context import store_from_settings
from service.db.migrate import upgrade_to_head
from service.jobs.dispatch import Dispatcher
from service.logging import register_secret
from service.settings import Settings, get_settings

__all__ = ["create_app"]

logger = logging.getLogger(__name__)

_DESCRIPTION = """
Quantize a Hugging Face Hub model with RUQuant (W4A4, W6A6, W8A8, W4A16) on a GPU worker and push
the result, with an accuracy report, back to the Hub.

Authenticate with `Authorization: Bearer <API key>`. Each key can read and cancel only its own jobs.
"""


def _celery_parts(settings: Settings) -> tuple[Dispatcher, Callable[[], None]]:
    from worker.celery_app import make_celery
    from worker.dispatcher import CeleryDispatcher

    celery_app = make_celery(settings)

    def check_broker() -> None:
        with celery_app.connection_for_write() as connection:
            connection.ensure_connection(max_retries=1, timeout=3)

    return CeleryDispatcher(celery_app, remote_control=settings.broker_is_redis), check_broker


def create_app(
    settings: Settings | None = None,
    *,
    dispatcher: Dispatcher | None = None,
    run_reaper: bool = True,
    events_poll_s: float = 1.0,
) -> FastAPI:
    """Build the app; ``dispatcher`` replaces the Celery one (tests of the HTTP layer only)."""
    settings = settings or get_settings()
    if settings.hub_token is not None:
        register_secret(settings.hub_token.get_secret_value())
    celery_dispatcher, check_broker = _celery_parts(settings)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if settings.auto_migrate:
            settings.work_dir.mkdir(parents=True, exist_ok=True)
            upgrade_to_head(settings.resolved_database_url)
        reaper_task = None
        if run_reaper:
            from worker.reaper import reap_once

            reap = partial(reap_once, settings, store=app.state.store)
            reaper_task = asyncio.create_task(run_reaper_loop(reap, settings.reaper_interval_s))
        yield
        if reaper_task is not None:
            reaper_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reaper_task

    app = FastAPI(
        title="RUQuant service",
        version="1",
        description=_DESCRIPTION,
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.store = store_from_settings(settings)
    app.state.dispatcher = dispatcher or celery_dispatcher
    app.state.check_broker = check_broker
    app.state.events_poll_s = events_poll_s
    app.add_middleware(
        SessionMiddleware,
        secret_key=settings.secret_key.get_secret_value(),
        session_cookie="ruquant_session",
        same_site="strict",
        https_only=settings.session_https_only,
    )
    install_error_handlers(app)
    app.include_router(health.router)
    app.include_router(jobs.router)
    app.include_router(web.router)
    return app
