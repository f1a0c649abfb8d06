"""Logging set-up shared by the API and the worker: a job id on every line, secrets masked.

Library modules only call ``logging.getLogger(__name__)``; the entry points call
:func:`configure_logging` once.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import re
from collections.abc import Iterator

__all__ = [
    "JobContextFilter",
    "SecretMaskFilter",
    "configure_logging",
    "current_job_id",
    "job_context",
    "register_secret",
]

_job_id: contextvars.ContextVar[str] = contextvars.ContextVar("ruquant_job_id", default="-")
# Job id of records from threads outside every job context; see job_context(process_wide=True).
_process_job_id = "-"

# Hugging Face user access tokens start with "hf_"; masking them is a second line of defence
# behind never passing tokens to a logger in the first place.
_HF_TOKEN_RE = re.compile(r"hf_[A-Za-z0-9]{8,}")
_registered_secrets: set[str] = set()

_FORMAT = "%(asctime)s %(levelname)s %(name)s job=%(job_id)s %(message)s"


def current_job_id() -> str:
    """Return the job id bound to this thread or task, or ``-``."""
    return _job_id.get()


@contextlib.contextmanager
def job_context(job_id: str, *, process_wide: bool = False) -> Iterator[None]:
    """Bind ``job_id`` to every log record emitted inside the block.

    The binding follows the context (this thread or task). ``process_wide`` also makes it the
    job id of records from threads that libraries start without the context, such as the
    upload pool of huggingface_hub. Only a process that runs one job at a time (a worker's
    job child) may use it.
    """
    global _process_job_id
    token = _job_id.set(job_id)
    previous = _process_job_id
    if process_wide:
        _process_job_id = job_id
    try:
        yield
    finally:
        _job_id.reset(token)
        _process_job_id = previous


def register_secret(value: str | None) -> None:
    """Mask ``value`` in every log line from now on (service tokens, API keys in flight)."""
    if value and len(value) >= 8:
        _registered_secrets.add(value)


def _mask(text: str) -> str:
    for secret in _registered_secrets:
        if secret in text:
            text = text.replace(secret, "***")
    return _HF_TOKEN_RE.sub("hf_***", text)


class JobContextFilter(logging.Filter):
    """Add ``record.job_id`` from the context unless the call passed one in ``extra``."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "job_id"):
            job_id = _job_id.get()
            record.job_id = _process_job_id if job_id == "-" else job_id
        return True


class SecretMaskFilter(logging.Filter):
    """Replace Hub tokens and registered secrets in the formatted message with ``***``."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        masked = _mask(message)
        if masked != message:
            record.msg = masked
            record.args = None
        return True


def configure_logging(level: str | int = "INFO") -> None:
    """Install one stream handler on the root logger with the job-id format and both filters.

    Calling it twice does not add a second handler.
    """
    root = logging.getLogger()
    root.setLevel(level)
    for handler in root.handlers:
        if getattr(handler, "_ruquant", False):
            return
    handler = logging.StreamHandler()
    handler._ruquant = True  # type: ignore[attr-defined]
    handler.setFormatter(logging.Formatter(_FORMAT))
    handler.addFilter(JobContextFilter())
    handler.addFilter(SecretMaskFilter())
    root.addHandler(handler)
