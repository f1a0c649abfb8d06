"""FastAPI dependencies as ``Annotated`` aliases: settings, store, dispatcher, the caller's key."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from service.auth import authenticate
from service.db.models import ApiKey
from service.jobs.dispatch import Dispatcher
from service.jobs.store import JobStore
from service.settings import Settings

__all__ = [
    "CurrentKey",
    "DispatcherDep",
    "SettingsDep",
    "StoreDep",
    "key_for_secret",
]

_bearer = HTTPBearer(auto_error=False, description="An API key from `ruquant-service keys create`.")


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def _store(request: Request) -> JobStore:
    store: JobStore = request.app.state.store
    return store


def _dispatcher(request: Request) -> Dispatcher:
    dispatcher: Dispatcher = request.app.state.dispatcher
    return dispatcher


SettingsDep = Annotated[Settings, Depends(_settings)]
StoreDep = Annotated[JobStore, Depends(_store)]
DispatcherDep = Annotated[Dispatcher, Depends(_dispatcher)]


def key_for_secret(store: JobStore, secret: str) -> ApiKey | None:
    """Return the active API key for ``secret``, or ``None``."""
    with store.session() as session:
        return authenticate(session, secret)


def _current_key(
    store: StoreDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> ApiKey:
    key = None
    if credentials is not None and credentials.scheme.lower() == "bearer":
        key = key_for_secret(store, credentials.credentials)
    if key is None:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            detail="missing or invalid API key: send 'Authorization: Bearer <key>'",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return key


CurrentKey = Annotated[ApiKey, Depends(_current_key)]
