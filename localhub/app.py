"""The ASGI application: authentication, routing, body handling, errors and access logs."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse
from starlette.types import Message, Receive, Scope, Send

from localhub import errors
from localhub.context import HubState, RequestContext
from localhub.endpoints import ROUTES
from localhub.routing import Route, match_route
from localhub.signing import UploadSigner
from localhub.storage import Storage, StorageBusyError
from localhub.tokens import TokenRecord, TokenTable

__all__ = ["LocalHubApp", "create_app"]

logger = logging.getLogger(__name__)
access_logger = logging.getLogger("localhub.access")

# Bodies read whole into memory (everything but LFS object uploads) may be at most this large.
MAX_BUFFERED_BODY_BYTES = 512 << 20


class _BodyReader:
    """Wrap ASGI `receive` to know whether the request body has been read to its end.

    A response sent before the body is read can leave the rest of the body on a keep-alive
    connection, where the server would parse it as the next request. The app therefore
    drains the body before every response.
    """

    def __init__(self, receive: Receive) -> None:
        self._receive = receive
        self.finished = False

    async def receive(self) -> Message:
        if self.finished:
            # After the body, the only message left is the disconnect, which Starlette waits
            # for while it streams a response. Pass those calls through.
            return await self._receive()
        message = await self._receive()
        if message["type"] == "http.disconnect" or not message.get("more_body", False):
            self.finished = True
        return message

    async def read_all(self, limit: int) -> bytes:
        chunks: list[bytes] = []
        size = 0
        while not self.finished:
            message = await self.receive()
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise errors.HubError(
                    413, f"Request body exceeds {limit} bytes; upload large files through LFS"
                )
            chunks.append(chunk)
        return b"".join(chunks)

    async def drain(self) -> None:
        while not self.finished:
            await self.receive()


def _bearer_token(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()


class LocalHubApp:
    """ASGI app serving the Hub endpoints in `routes` from `state`."""

    def __init__(
        self, state: HubState, routes: list[Route], *, public_url: str | None = None
    ) -> None:
        self.state = state
        self.routes = routes
        self.public_url = public_url.rstrip("/") if public_url else None
        # Why the last lifespan startup failed, for servers that run the app in a thread.
        self.startup_error: str | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
        elif scope["type"] == "http":
            await self._http(scope, receive, send)
        else:
            raise RuntimeError(f"localhub serves HTTP only, not {scope['type']}")

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    self.state.storage.acquire()
                except StorageBusyError as exc:
                    logger.error("%s", exc)
                    self.startup_error = str(exc)
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                logger.info("Serving storage folder %s", self.state.storage.root)
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                self.state.storage.release()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        reader = _BodyReader(receive)
        request = Request(scope, reader.receive)
        raw_path = scope.get("raw_path", scope["path"].encode())
        path = raw_path.decode("latin-1") if isinstance(raw_path, bytes) else str(raw_path)
        started = time.perf_counter()
        caller: TokenRecord | None = None
        try:
            found, params, other_method = match_route(self.routes, request.method, path)
            if found is None:
                status = 405 if other_method else 404
                raise errors.HubError(status, f"No {request.method} endpoint at {path}")
            caller = self._authenticate(request)
            body = b"" if found.streams_body else await reader.read_all(MAX_BUFFERED_BODY_BYTES)
            ctx = RequestContext(
                state=self.state,
                request=request,
                body=body,
                params=params,
                caller=caller,
                base_url=self.public_url or str(request.base_url).rstrip("/"),
            )
            if found.streams_body:
                response = await found.handler(ctx)  # type: ignore[misc]
            else:
                response = await run_in_threadpool(found.handler, ctx)
        except errors.HubError as exc:
            response = exc.to_response()
        except ClientDisconnect:
            # The client is gone, so this response only gives the access log a status.
            logger.info("Client disconnected during %s %s", request.method, path)
            response = JSONResponse({"error": "client disconnected"}, status_code=400)
        except Exception:
            logger.exception("Internal error on %s %s", request.method, path)
            response = JSONResponse(
                {"error": "Internal server error; see the localhub log"}, status_code=500
            )
        await reader.drain()
        try:
            await response(scope, reader.receive, send)
        finally:
            elapsed_ms = (time.perf_counter() - started) * 1000
            # Error messages name repositories, revisions and paths, never tokens.
            error_code = response.headers.get("x-error-code")
            error_message = response.headers.get("x-error-message")
            access_logger.info(
                "%s %s %d%s user=%s %.0f ms%s",
                request.method,
                path,
                response.status_code,
                f" {error_code}" if error_code else "",
                caller.user if caller else "-",
                elapsed_ms,
                f" error={error_message!r}" if error_message else "",
            )

    def _authenticate(self, request: Request) -> TokenRecord | None:
        token = _bearer_token(request)
        if token is None:
            return None
        record = self.state.tokens.lookup(token)
        if record is None:
            raise errors.invalid_credentials()
        return record


def create_app(
    storage_dir: Path | str,
    tokens: TokenTable | Mapping[str, Any] | Path | str | None = None,
    *,
    public_url: str | None = None,
) -> LocalHubApp:
    """Create the local Hub app over a storage folder.

    Args:
        storage_dir: Folder for blobs and repositories, created when missing.
        tokens: A `TokenTable`, a mapping in the token file format, or the path of a token
            file (reread when it changes). None accepts no token, so only anonymous reads work.
        public_url: Base URL written into returned links (repository, commit and upload URLs).
            By default each request's own scheme and Host header are used.
    """
    storage = Storage(storage_dir)
    if tokens is None:
        table = TokenTable()
    elif isinstance(tokens, TokenTable):
        table = tokens
    elif isinstance(tokens, (str, Path)):
        table = TokenTable.from_file(tokens)
    else:
        table = TokenTable.from_mapping(tokens)
    state = HubState(storage=storage, tokens=table, signer=UploadSigner(storage.signing_key()))
    return LocalHubApp(state, ROUTES, public_url=public_url)
