"""Data set names of a request: which ones the service offers, and their files for the library."""

from __future__ import annotations

from pathlib import Path

from service.jobs.datasets import resolve_datasets, unknown_datasets
from service.jobs.request import JobRequest
from tests.service.fixtures import make_settings


def test_unknown_names_listed_by_field() -> None:
    request = JobRequest.model_validate(
        {"model_id": "a/b", "calibration": {"data": "x"}, "evaluation": {"data": "y"}}
    )
    unknown = unknown_datasets(request, frozenset({"wikitext2"}))
    assert [u.field for u in unknown] == [("calibration", "data"), ("evaluation", "data")]
    assert "'x' is not offered" in unknown[0].message


def test_skipped_evaluation_not_checked() -> None:
    request = JobRequest.model_validate({"model_id": "a/b", "evaluation": None})
    assert unknown_datasets(request, frozenset({"wikitext2"})) == []


def test_names_resolved_to_paths(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, datasets={"chats": tmp_path / "chats.txt"})
    request = JobRequest.model_validate({"model_id": "a/b", "evaluation": {"data": "chats"}})
    run_config = resolve_datasets(request.run_config(), settings)
    assert run_config.calibration.data == "wikitext2"
    assert run_config.evaluation is not None
    assert run_config.evaluation.data == str(tmp_path / "chats.txt")
    assert run_config.quant == request.quant
