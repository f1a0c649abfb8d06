"""Service settings, read from ``RUQUANT_*`` environment variables (or a ``.env`` file)."""

from __future__ import annotations

import warnings
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["BUILTIN_DATASET", "PLACEHOLDER_SECRET", "Settings", "get_settings"]

PLACEHOLDER_SECRET = "changethis"
# The library reads WikiText-2 from RUQUANT_DATA_DIR, or from the Hub when that is unset.
BUILTIN_DATASET = "wikitext2"


class Settings(BaseSettings):
    """One place for every knob of the API and the worker.

    With no environment set, everything runs on one machine: the job store and the Celery broker
    are SQLite files under ``work_dir``, so no extra server is needed.
    """

    model_config = SettingsConfigDict(
        env_prefix="RUQUANT_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    environment: Literal["dev", "test", "production"] = "dev"
    work_dir: Path = Field(Path("runs/service"), description="Downloads, outputs and SQLite files.")
    database_url: str | None = Field(
        None, description="SQLAlchemy URL; default sqlite:///<work_dir>/jobs.sqlite."
    )
    broker_url: str | None = Field(
        None,
        description="Celery broker (redis://...); default is kombu's SQLAlchemy transport on "
        "sqlite:///<work_dir>/broker.sqlite.",
    )
    auto_migrate: bool = Field(
        True, description="Upgrade the job store schema when the API starts."
    )

    secret_key: SecretStr = Field(
        SecretStr(PLACEHOLDER_SECRET),
        description="Encrypts Hub tokens at rest and signs web-form sessions.",
    )
    hub_endpoint: str = Field("https://huggingface.co", description="Hugging Face Hub base URL.")
    hub_token: SecretStr | None = Field(
        None, description="The service's own Hub token, used when a job brings none."
    )
    hub_timeout_s: float = Field(30.0, gt=0, description="Timeout of each Hub metadata request.")
    allow_pickle_weights: bool = Field(
        False, description="Accept source repositories whose weights exist only as pickle files."
    )
    datasets: dict[str, Path] = Field(
        default_factory=dict,
        description="Text files the workers offer as calibration or evaluation data, by name, "
        'as JSON: RUQUANT_DATASETS=\'{"support-chats": "/data/chats.txt"}\'. Requests name a '
        "data set, never a path; 'wikitext2' is always offered.",
    )

    # Limits.
    max_model_bytes: int = Field(
        200 * 1024**3, gt=0, description="Largest source checkpoint (bytes) a worker accepts."
    )
    disk_headroom: float = Field(
        2.2,
        ge=1.0,
        description="Free disk a job needs, as a multiple of the checkpoint size "
        "(download + quantized output + margin).",
    )
    max_active_jobs_per_key: int = Field(
        100, ge=1, description="Queued or running jobs one API key may have at once."
    )
    page_size_max: int = Field(200, ge=1)

    # Worker timing.
    job_soft_time_limit_s: int = Field(12 * 3600, gt=0, description="Soft limit of one job.")
    job_hard_time_limit_s: int = Field(13 * 3600, gt=0, description="Hard limit (child killed).")
    heartbeat_interval_s: float = Field(15.0, gt=0)
    progress_interval_s: float = Field(
        1.0,
        ge=0,
        description="Minimum seconds between two stored progress updates of a job. Stage "
        "changes and the last step of a stage are stored whatever the interval.",
    )
    heartbeat_stale_s: float = Field(
        120.0, gt=0, description="A running job whose heartbeat is older than this is stale."
    )
    max_lost_runs: int = Field(
        1,
        ge=0,
        description="Runs of one job lost to a dead worker that the reaper requeues; "
        "the next lost run fails the job.",
    )
    redispatch_after_s: float = Field(
        30.0, gt=0, description="Resend a queued job whose broker message was never sent."
    )
    reaper_interval_s: float = Field(30.0, gt=0, description="Period of the API's reaper loop.")
    cancel_grace_s: float = Field(
        300.0, ge=0, description="Wait after a cancel request before the task is terminated."
    )
    hub_retry_max: int = Field(5, ge=0, description="Retries of a job after a transient Hub error.")
    hub_retry_backoff_s: float = Field(
        30.0, gt=0, description="First retry delay; doubles each time."
    )

    keep_job_files: bool = Field(
        False, description="Keep a job's download and output folder after it ends (debugging)."
    )

    # Web form.
    session_https_only: bool = Field(
        False, description="Send the web session cookie over HTTPS only."
    )

    @model_validator(mode="after")
    def _check_secrets(self) -> Settings:
        if self.job_hard_time_limit_s <= self.job_soft_time_limit_s:
            raise ValueError("job_hard_time_limit_s must be larger than job_soft_time_limit_s")
        if self.heartbeat_stale_s <= 2 * self.heartbeat_interval_s:
            raise ValueError("heartbeat_stale_s must exceed twice heartbeat_interval_s")
        if BUILTIN_DATASET in self.datasets:
            raise ValueError(
                f"RUQUANT_DATASETS may not redefine the built-in data set {BUILTIN_DATASET!r}"
            )
        placeholders = {"secret_key": self.secret_key}
        if self.hub_token is not None:
            placeholders["hub_token"] = self.hub_token
        for name, value in placeholders.items():
            if value.get_secret_value() != PLACEHOLDER_SECRET:
                continue
            message = f"RUQUANT_{name.upper()} is the placeholder {PLACEHOLDER_SECRET!r}"
            if self.environment == "dev":
                warnings.warn(f"{message}; set a real value outside dev", stacklevel=2)
            else:
                raise ValueError(
                    f"{message}: set a real secret for environment {self.environment!r}"
                )
        return self

    @property
    def resolved_database_url(self) -> str:
        """Job store URL in effect."""
        return self.database_url or f"sqlite:///{(self.work_dir / 'jobs.sqlite').resolve()}"

    @property
    def resolved_broker_url(self) -> str:
        """Celery broker URL in effect."""
        return self.broker_url or f"sqla+sqlite:///{(self.work_dir / 'broker.sqlite').resolve()}"

    @property
    def dataset_names(self) -> frozenset[str]:
        """Names a job request may give as calibration or evaluation data."""
        return frozenset({BUILTIN_DATASET, *self.datasets})

    @property
    def broker_is_redis(self) -> bool:
        """Whether the broker is Redis (needed for remote control such as revoke)."""
        return self.resolved_broker_url.startswith(("redis://", "rediss://"))


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Return the process-wide settings, read once from the environment."""
    return Settings()
