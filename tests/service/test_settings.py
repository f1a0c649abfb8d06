"""Settings: defaults for one machine, placeholder secrets rejected outside dev."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from service.settings import PLACEHOLDER_SECRET, Settings


def _settings(**values: object) -> Settings:
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


def test_defaults_need_no_server(tmp_path: Path) -> None:
    settings = _settings(environment="test", secret_key="s" * 32, work_dir=tmp_path)
    assert settings.resolved_database_url == f"sqlite:///{tmp_path.resolve()}/jobs.sqlite"
    assert settings.resolved_broker_url.startswith("sqla+sqlite:///")
    assert not settings.broker_is_redis


def test_placeholder_secret_rejected_in_production() -> None:
    with pytest.raises(ValidationError, match="RUQUANT_SECRET_KEY"):
        _settings(environment="production")


def test_placeholder_hub_token_rejected_in_production() -> None:
    with pytest.raises(ValidationError, match="RUQUANT_HUB_TOKEN"):
        _settings(environment="production", secret_key="s" * 32, hub_token=PLACEHOLDER_SECRET)


def test_placeholder_secret_warns_in_dev() -> None:
    with pytest.warns(UserWarning, match="placeholder"):
        _settings(environment="dev")


def test_env_prefix_and_token_hidden(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUQUANT_ENVIRONMENT", "test")
    monkeypatch.setenv("RUQUANT_SECRET_KEY", "k" * 32)
    monkeypatch.setenv("RUQUANT_HUB_TOKEN", "hf_servicetokenservicetoken")
    monkeypatch.setenv("RUQUANT_BROKER_URL", "redis://127.0.0.1:6379/0")
    settings = _settings()
    assert settings.broker_is_redis
    assert "hf_servicetokenservicetoken" not in repr(settings)


def test_time_limits_ordered() -> None:
    with pytest.raises(ValidationError, match="hard_time_limit"):
        _settings(
            environment="test",
            secret_key="s" * 32,
            job_soft_time_limit_s=10,
            job_hard_time_limit_s=10,
        )


def test_datasets_from_json_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("RUQUANT_DATASETS", f'{{"chats": "{tmp_path / "chats.txt"}"}}')
    settings = _settings(environment="test", secret_key="s" * 32)
    assert settings.datasets == {"chats": tmp_path / "chats.txt"}
    assert settings.dataset_names == frozenset({"wikitext2", "chats"})


def test_builtin_dataset_not_redefined(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="built-in data set 'wikitext2'"):
        _settings(environment="test", secret_key="s" * 32, datasets={"wikitext2": tmp_path})
