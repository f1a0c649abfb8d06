"""Log records carry the job id and never show Hub tokens."""

from __future__ import annotations

import logging
import threading

import pytest

from service.logging import JobContextFilter, SecretMaskFilter, job_context, register_secret


@pytest.fixture
def records() -> list[logging.LogRecord]:
    captured: list[logging.LogRecord] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            captured.append(record)

    handler = Collect()
    handler.addFilter(JobContextFilter())
    handler.addFilter(SecretMaskFilter())
    logger = logging.getLogger("tests.service.logging")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield captured
    logger.removeHandler(handler)


def test_job_id_from_context(records: list[logging.LogRecord]) -> None:
    logger = logging.getLogger("tests.service.logging")
    with job_context("job-1"):
        logger.info("inside")
    logger.info("outside")
    assert [r.job_id for r in records] == ["job-1", "-"]  # type: ignore[attr-defined]


def test_process_wide_job_id_reaches_threads(records: list[logging.LogRecord]) -> None:
    logger = logging.getLogger("tests.service.logging")

    def log_from_thread() -> None:
        thread = threading.Thread(target=logger.info, args=("from a library thread",))
        thread.start()
        thread.join()

    with job_context("job-1"):
        log_from_thread()
    with job_context("job-2", process_wide=True):
        log_from_thread()
    log_from_thread()
    assert [r.job_id for r in records] == ["-", "job-2", "-"]  # type: ignore[attr-defined]


def test_tokens_masked(records: list[logging.LogRecord]) -> None:
    register_secret("service-secret-value")
    logger = logging.getLogger("tests.service.logging")
    logger.info("token %s and %s", "hf_abcdefghijklmnop", "service-secret-value")
    assert records[0].getMessage() == "token hf_*** and ***"
