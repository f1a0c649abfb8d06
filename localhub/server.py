"""Run the local Hub with uvicorn, in the foreground or in a background thread."""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

import uvicorn

from localhub.app import create_app
from localhub.tokens import TokenTable

__all__ = ["BackgroundHub", "serve"]

logger = logging.getLogger(__name__)

TokensArg = TokenTable | Mapping[str, Any] | Path | str | None


def _uvicorn_config(app: Any, *, host: str, port: int, log_level: str) -> uvicorn.Config:
    # log_config=None leaves logging to the host program; access_log=False because the app
    # writes its own access log, which leaves out query strings and so upload signatures.
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        log_config=None,
        access_log=False,
        lifespan="on",
        log_level=log_level,
    )


def serve(
    storage_dir: Path | str,
    tokens: TokensArg = None,
    *,
    host: str = "127.0.0.1",
    port: int = 8765,
    public_url: str | None = None,
    log_level: str = "info",
) -> None:
    """Serve in the foreground until interrupted (SIGINT or SIGTERM)."""
    app = create_app(storage_dir, tokens, public_url=public_url)
    uvicorn.Server(_uvicorn_config(app, host=host, port=port, log_level=log_level)).run()


def _run_until_exit(server: uvicorn.Server, listener: socket.socket) -> None:
    # uvicorn calls sys.exit when startup fails. In a thread that would only print a traceback,
    # so the exit is caught here and BackgroundHub.start reports the failure.
    try:
        server.run(sockets=[listener])
    except SystemExit as exc:
        logger.debug("Local Hub thread exited with status %s", exc.code)


class BackgroundHub:
    """A local Hub running in a daemon thread on a free loopback port, for tests and demos.

    Use as a context manager, or call `start()` and `stop()`. `endpoint` is the base URL to
    give `HfApi(endpoint=...)` or `HF_ENDPOINT`. `start()` may be called again after `stop()`;
    the server then listens on a new port over the same storage.
    """

    def __init__(
        self,
        storage_dir: Path | str,
        tokens: TokensArg = None,
        *,
        host: str = "127.0.0.1",
        log_level: str = "warning",
        startup_timeout_s: float = 10.0,
    ) -> None:
        self.storage_dir = Path(storage_dir)
        self.tokens = tokens
        self.host = host
        self.log_level = log_level
        self.startup_timeout_s = startup_timeout_s
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._endpoint: str | None = None

    @property
    def endpoint(self) -> str:
        """Base URL of the running server, such as `http://127.0.0.1:43211`."""
        if self._endpoint is None:
            raise RuntimeError("the local Hub is not running: call start() first")
        return self._endpoint

    def start(self) -> str:
        """Start the server and return its endpoint once it accepts requests.

        Raises:
            RuntimeError: the server did not start within `startup_timeout_s`.
        """
        if self._thread is not None:
            raise RuntimeError("the local Hub is already running")
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((self.host, 0))
        port = listener.getsockname()[1]
        app = create_app(self.storage_dir, self.tokens)
        server = uvicorn.Server(
            _uvicorn_config(app, host=self.host, port=port, log_level=self.log_level)
        )
        thread = threading.Thread(
            target=_run_until_exit, args=(server, listener), name=f"localhub-{port}", daemon=True
        )
        thread.start()
        deadline = time.monotonic() + self.startup_timeout_s
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                server.should_exit = True
                thread.join(timeout=5)
                listener.close()
                reason = app.startup_error or "see the localhub log"
                raise RuntimeError(
                    f"the local Hub on port {port} did not start within "
                    f"{self.startup_timeout_s} s: {reason}"
                )
            time.sleep(0.01)
        self._server, self._thread = server, thread
        self._endpoint = f"http://{self.host}:{port}"
        logger.info("Local Hub started at %s over %s", self._endpoint, self.storage_dir)
        return self._endpoint

    def stop(self) -> None:
        """Stop the server and wait for its thread to end."""
        if self._server is None or self._thread is None:
            return
        self._server.should_exit = True
        self._thread.join(timeout=10)
        if self._thread.is_alive():
            logger.warning("Local Hub thread %s did not stop within 10 s", self._thread.name)
        logger.info("Local Hub at %s stopped", self._endpoint)
        self._server = self._thread = self._endpoint = None

    def __enter__(self) -> BackgroundHub:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
