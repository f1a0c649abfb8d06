"""Processes of the demo: the local Hub, the API and one worker on 127.0.0.1, each with its log.

Every process starts in its own session, so stopping it signals its whole process group (the
worker's job child included) and nothing else.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["Stack", "free_port", "wait_until"]

REPO_ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(condition: Callable[[], bool], *, timeout_s: float, what: str) -> None:
    """Poll ``condition`` every 0.2 s; raise ``TimeoutError`` naming ``what`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(0.2)


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


@dataclass
class _Process:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path


@dataclass
class Stack:
    """The processes started so far, their environment and their log folder."""

    env: dict[str, str]
    log_dir: Path
    processes: list[_Process] = field(default_factory=list)

    def start(self, name: str, *args: str) -> _Process:
        """Start ``python args...`` in its own session with output to ``<log_dir>/<name>.log``."""
        log = self.log_dir / f"{name}.log"
        with log.open("wb") as output:
            popen = subprocess.Popen(
                [sys.executable, *args],
                cwd=REPO_ROOT,
                env=self.env,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        process = _Process(name, popen, log)
        self.processes.append(process)
        return process

    def wait_for_port(self, process: _Process, port: int, *, timeout_s: float = 60) -> None:
        """Wait until ``process`` listens on ``port``; raise if it exits first."""
        self.wait_for(process, lambda: _port_open(port), timeout_s=timeout_s, what=f"port {port}")

    def wait_for_log(self, process: _Process, text: str, *, timeout_s: float = 120) -> None:
        """Wait until ``text`` appears in the log of ``process``; raise if it exits first."""

        def logged() -> bool:
            return text in process.log.read_text(errors="replace")

        self.wait_for(process, logged, timeout_s=timeout_s, what=repr(text))

    def wait_for(
        self, process: _Process, condition: Callable[[], bool], *, timeout_s: float, what: str
    ) -> None:
        """Wait for ``condition`` while ``process`` runs."""

        def ready() -> bool:
            if process.popen.poll() is not None:
                raise RuntimeError(
                    f"{process.name} exited with code {process.popen.returncode} before "
                    f"{what}; see {process.log}"
                )
            return condition()

        wait_until(ready, timeout_s=timeout_s, what=f"{process.name}: {what}")

    def run(self, *args: str) -> str:
        """Run ``python args...`` to completion and return its standard output."""
        result = subprocess.run(
            [sys.executable, *args],
            cwd=REPO_ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(args)} failed:\n{result.stdout}{result.stderr}")
        return result.stdout

    def stop_all(self, *, timeout_s: float = 30) -> None:
        """Send SIGTERM to every process group in reverse start order, then SIGKILL leftovers."""
        for process in reversed(self.processes):
            if process.popen.poll() is None:
                os.killpg(process.popen.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        for process in reversed(self.processes):
            try:
                process.popen.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(process.popen.pid, signal.SIGKILL)
                process.popen.wait(timeout=10)

    def log_tails(self, lines: int = 15) -> str:
        """Return the last ``lines`` lines of every process log."""
        parts = []
        for process in self.processes:
            text = process.log.read_text(errors="replace").splitlines()[-lines:]
            parts.append(f"--- {process.log}\n" + "\n".join(text))
        return "\n".join(parts)
