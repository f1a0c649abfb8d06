"""Validation rules, defaults and presets of ``QuantConfig`` and the run configuration."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from ruquant.config import (
    FLOAT_BITS,
    PRESETS,
    CalibrationConfig,
    GivensConvention,
    Method,
    QuantConfig,
    RunConfig,
    default_clip_ratio,
)


@pytest.mark.parametrize("bits", [2, 3, 4, 5, 6, 7, 8, 16])
@pytest.mark.parametrize("field", ["w_bits", "a_bits"])
def test_supported_bits_accepted(field: str, bits: int) -> None:
    other = "a_bits" if field == "w_bits" else "w_bits"
    config = QuantConfig(**{field: bits, other: 4})
    assert getattr(config, field) == bits


@pytest.mark.parametrize("bits", [-1, 0, 1, 9, 12, 15, 17, 32])
@pytest.mark.parametrize("field", ["w_bits", "a_bits"])
def test_unsupported_bits_rejected(field: str, bits: int) -> None:
    with pytest.raises(
        ValidationError,
        match=rf"{field}={bits} is not supported: use an integer from 2 to 8, or 16",
    ):
        QuantConfig(**{field: bits})


def test_both_16_bits_rejected() -> None:
    with pytest.raises(ValidationError, match="nothing would be quantized"):
        QuantConfig(w_bits=FLOAT_BITS, a_bits=FLOAT_BITS)


def test_unknown_field_rejected() -> None:
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        QuantConfig(bits=4)


def test_misspelled_field_rejected() -> None:
    with pytest.raises(ValidationError, match="groupsize"):
        QuantConfig(groupsize=128)


@pytest.mark.parametrize(
    "method", [Method.RTN, Method.SMOOTHQUANT, Method.HADAMARD, Method.DUQUANT]
)
def test_stage2_requires_ruquant(method: Method) -> None:
    with pytest.raises(
        ValidationError, match=f"stage2 applies to method 'ruquant' only, not '{method.value}'"
    ):
        QuantConfig(method=method, stage2=True)


def test_stage2_with_ruquant_accepted() -> None:
    assert QuantConfig(method=Method.RUQUANT, stage2=True).stage2


@pytest.mark.parametrize("block_size", [0, 1, 3, 6, 24, 96, 100, -64])
def test_non_power_of_two_block_size_rejected(block_size: int) -> None:
    with pytest.raises(ValidationError, match="must be 'auto' or a power of two >= 2"):
        QuantConfig(block_size=block_size)


@pytest.mark.parametrize("block_size", [2, 16, 64, 128, 256, "auto"])
def test_power_of_two_block_size_accepted(block_size: int | str) -> None:
    assert QuantConfig(block_size=block_size).block_size == block_size


def test_block_size_default_auto() -> None:
    assert QuantConfig().block_size == "auto"


@pytest.mark.parametrize("block_size", ["Auto", "largest", ""])
def test_block_size_other_strings_rejected(block_size: str) -> None:
    with pytest.raises(ValidationError):
        QuantConfig(block_size=block_size)


@pytest.mark.parametrize(
    ("w_bits", "a_bits", "w_clip", "a_clip"),
    [
        (4, 4, 0.8, 0.9),
        (6, 6, 1.0, 1.0),
        (8, 8, 1.0, 1.0),
        (4, 16, 0.8, 1.0),
        (4, 6, 0.8, 1.0),
        (6, 4, 1.0, 0.9),
    ],
)
def test_clip_ratio_defaults(w_bits: int, a_bits: int, w_clip: float, a_clip: float) -> None:
    config = QuantConfig(w_bits=w_bits, a_bits=a_bits)
    assert config.w_clip_ratio is None
    assert config.a_clip_ratio is None
    assert config.resolved_w_clip_ratio == w_clip
    assert config.resolved_a_clip_ratio == a_clip


def test_explicit_clip_ratio_wins() -> None:
    config = QuantConfig(w_bits=4, a_bits=4, w_clip_ratio=0.95, a_clip_ratio=0.85)
    assert config.resolved_w_clip_ratio == 0.95
    assert config.resolved_a_clip_ratio == 0.85


@pytest.mark.parametrize("ratio", [0.0, -0.1, 1.01, 2.0])
@pytest.mark.parametrize("field", ["w_clip_ratio", "a_clip_ratio"])
def test_clip_ratio_out_of_range(field: str, ratio: float) -> None:
    with pytest.raises(ValidationError):
        QuantConfig(**{field: ratio})


@pytest.mark.parametrize(
    ("bits", "weights", "expected"),
    [(4, True, 0.8), (4, False, 0.9), (6, True, 1.0), (6, False, 1.0)],
)
def test_default_clip_ratio_function(bits: int, weights: bool, expected: float) -> None:
    assert default_clip_ratio(bits, weights=weights) == expected


def test_presets() -> None:
    assert PRESETS == {"W4A4": (4, 4), "W6A6": (6, 6), "W8A8": (8, 8), "W4A16": (4, 16)}


@pytest.mark.parametrize("name", list(PRESETS))
def test_preset_round_trip(name: str) -> None:
    w_bits, a_bits = PRESETS[name]
    assert QuantConfig(w_bits=w_bits, a_bits=a_bits).preset == name


def test_published_defaults() -> None:
    config = QuantConfig()
    assert config.method is Method.RUQUANT
    assert (config.w_bits, config.a_bits) == (4, 4)
    assert config.smooth_alpha == 0.6
    assert config.greedy_steps == 16
    assert config.givens_rounds == 3
    assert config.givens_convention is GivensConvention.REFERENCE
    assert config.duquant_max_steps == 256
    assert config.stage2 is False
    assert config.stage2_epochs == 20
    assert config.stage2_lr == 1e-2
    assert config.stage2_token_chunk == 256
    assert config.seed == 444


def test_version_pinned() -> None:
    assert QuantConfig().version == 1
    with pytest.raises(ValidationError):
        QuantConfig(version=2)


def test_config_frozen() -> None:
    config = QuantConfig()
    with pytest.raises(ValidationError):
        config.w_bits = 8


def test_json_round_trip() -> None:
    config = QuantConfig(
        method=Method.DUQUANT, w_bits=6, a_bits=6, block_size=64, duquant_max_steps=32
    )
    assert QuantConfig.model_validate_json(config.model_dump_json()) == config


def test_method_by_value() -> None:
    assert QuantConfig(method="smoothquant").method is Method.SMOOTHQUANT
    with pytest.raises(ValidationError):
        QuantConfig(method="gptq")


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("greedy_steps", 0),
        ("givens_rounds", -1),
        ("duquant_max_steps", 0),
        ("stage2_epochs", 0),
        ("stage2_lr", 0.0),
        ("stage2_token_chunk", -1),
        ("seed", -1),
        ("smooth_alpha", 1.5),
    ],
)
def test_search_settings_out_of_range(field: str, value: float) -> None:
    with pytest.raises(ValidationError):
        QuantConfig(**{field: value})


def test_run_config_rejects_unknown_nested_field() -> None:
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        RunConfig(quant={"method": "ruquant", "bitz": 4})


def test_run_config_nested_validation() -> None:
    with pytest.raises(ValidationError, match="stage2 applies to method 'ruquant' only"):
        RunConfig(quant={"method": "rtn", "stage2": True})


def test_calibration_defaults() -> None:
    calibration = CalibrationConfig()
    assert (calibration.samples, calibration.seq_len, calibration.seed) == (128, 2048, 444)
