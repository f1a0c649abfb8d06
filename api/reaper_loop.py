"""The reaper as a background task of the API process."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from anyio import to_thread

__all__ = ["run_reaper_loop"]

logger = logging.getLogger(__name__)


async def run_reaper_loop(reap: Callable[[], object], interval_s: float) -> None:
    """Call ``reap`` every ``interval_s`` seconds until cancelled; failures are logged."""
    while True:
        try:
            await to_thread.run_sync(reap)
        except Exception:  # noqa: BLE001 - the next pass may succeed (database restarting)
            logger.exception("reaper pass failed")
        await asyncio.sleep(interval_s)
