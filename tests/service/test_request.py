"""Job request validation shared by the API, the store and the batch client."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from service.jobs.request import JobRequest, default_target_repo


def _error_locations(body: dict[str, object]) -> list[tuple[object, ...]]:
    with pytest.raises(ValidationError) as caught:
        JobRequest.model_validate(body)
    return [error["loc"] for error in caught.value.errors()]


def test_preset_sets_bits() -> None:
    request = JobRequest.model_validate({"model_id": "a/b", "preset": "W6A6"})
    assert (request.quant.w_bits, request.quant.a_bits) == (6, 6)
    assert request.preset_name == "W6A6"


def test_default_bits_are_w4a4() -> None:
    assert JobRequest.model_validate({"model_id": "a/b"}).preset_name == "W4A4"


def test_preset_conflict_rejected() -> None:
    with pytest.raises(ValidationError, match="quant.w_bits"):
        JobRequest.model_validate({"model_id": "a/b", "preset": "W6A6", "quant": {"w_bits": 4}})


def test_preset_agreeing_bits_accepted() -> None:
    body = {"model_id": "a/b", "preset": "W4A16", "quant": {"a_bits": 16}}
    assert JobRequest.model_validate(body).quant.a_bits == 16


def test_unknown_fields_rejected() -> None:
    assert _error_locations({"model_id": "a/b", "colour": 1}) == [("colour",)]
    assert _error_locations({"model_id": "a/b", "quant": {"wbits": 4}}) == [("quant", "wbits")]


def test_impossible_bits_rejected() -> None:
    assert _error_locations({"model_id": "a/b", "quant": {"w_bits": 9}}) == [("quant", "w_bits")]


def test_invalid_repo_ids_rejected() -> None:
    assert _error_locations({"model_id": "a/b/c"}) == [("model_id",)]
    assert _error_locations({"model_id": "a--b"}) == [("model_id",)]
    assert _error_locations({"model_id": "a/b", "target_repo": "noslash"}) == [("target_repo",)]


def test_local_data_paths_rejected() -> None:
    body = {"model_id": "a/b", "calibration": {"data": "/etc/passwd"}}
    assert _error_locations(body) == [("calibration",)]
    relative = {"model_id": "a/b", "evaluation": {"data": "../chats.txt"}}
    assert _error_locations(relative) == [("evaluation",)]


def test_dataset_names_accepted() -> None:
    body = {"model_id": "a/b", "calibration": {"data": "support-chats_2"}}
    assert JobRequest.model_validate(body).calibration.data == "support-chats_2"


def test_token_not_stored_or_fingerprinted() -> None:
    with_token = JobRequest.model_validate({"model_id": "a/b", "hub_token": "hf_secretsecret"})
    without = JobRequest.model_validate({"model_id": "a/b"})
    assert "hub_token" not in with_token.stored_dict()
    assert "hf_secretsecret" not in str(with_token.stored_dict())
    assert with_token.fingerprint() == without.fingerprint()


def test_stored_dict_round_trips() -> None:
    request = JobRequest.model_validate(
        {"model_id": "a/b", "preset": "W8A8", "evaluation": None, "if_exists": "overwrite"}
    )
    again = JobRequest.model_validate(request.stored_dict())
    assert again == request


def test_default_target_repo_trims_name() -> None:
    assert default_target_repo("me", "org/Model-7B", "W4A4") == "me/Model-7B-RUQuant-W4A4"
    assert len(default_target_repo("me", "x" * 96, "W4A16").split("/")[1]) == 96
