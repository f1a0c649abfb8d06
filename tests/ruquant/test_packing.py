"""Bit packing of weight codes: exact round trips at every width, byte layout and input checks."""

from __future__ import annotations

import pytest
import torch

from ruquant.export.packing import codes_per_byte, pack_codes, packed_width, unpack_codes

GENERATOR_SEED = 1234


@pytest.mark.parametrize("num_bits", range(1, 9))
@pytest.mark.parametrize("in_features", [1, 7, 64, 129])
def test_round_trip_exact(num_bits: int, in_features: int) -> None:
    generator = torch.Generator().manual_seed(GENERATOR_SEED + num_bits)
    codes = torch.randint(0, 2**num_bits, (5, in_features), generator=generator, dtype=torch.int64).to(torch.uint8)
    packed = pack_codes(codes, num_bits)
    assert packed.dtype == torch.uint8
    assert packed.shape == (5, packed_width(in_features, num_bits))
    assert torch.equal(unpack_codes(packed, num_bits, in_features), codes)


@pytest.mark.parametrize("num_bits", range(1, 9))
def test_extreme_codes_round_trip(num_bits: int) -> None:
    codes = torch.tensor([[0, 2**num_bits - 1] * 8], dtype=torch.uint8)
    assert torch.equal(unpack_codes(pack_codes(codes, num_bits), num_bits, 16), codes)


@pytest.mark.parametrize(
    ("num_bits", "expected"), [(1, 8), (2, 4), (3, 1), (4, 2), (5, 1), (6, 1), (7, 1), (8, 1)]
)
def test_codes_per_byte(num_bits: int, expected: int) -> None:
    assert codes_per_byte(num_bits) == expected


def test_four_bit_layout_low_nibble_first() -> None:
    codes = torch.tensor([[0x1, 0xA, 0xF, 0x3, 0x7]], dtype=torch.uint8)
    packed = pack_codes(codes, 4)
    # Two codes per byte, the first in the low nibble; the odd fifth code is padded with 0.
    assert packed.tolist() == [[0xA1, 0x3F, 0x07]]


def test_two_bit_layout() -> None:
    codes = torch.tensor([[1, 2, 3, 0]], dtype=torch.uint8)
    assert pack_codes(codes, 2).tolist() == [[1 | 2 << 2 | 3 << 4]]


def test_float_codes_accepted() -> None:
    codes = torch.tensor([[3.0, 0.0, 15.0, 8.0]])
    assert torch.equal(unpack_codes(pack_codes(codes, 4), 4, 4), codes.to(torch.uint8))


def test_code_out_of_range_rejected() -> None:
    with pytest.raises(ValueError, match=r"does not fit 4 bits"):
        pack_codes(torch.tensor([[16, 0]]), 4)


def test_negative_code_rejected() -> None:
    with pytest.raises(ValueError, match=r"does not fit 6 bits"):
        pack_codes(torch.tensor([[-1, 0]]), 6)


def test_fractional_code_rejected() -> None:
    with pytest.raises(ValueError, match="integer values"):
        pack_codes(torch.tensor([[1.5, 0.0]]), 4)


def test_unsupported_width_rejected() -> None:
    with pytest.raises(ValueError, match="num_bits=9"):
        codes_per_byte(9)


def test_wrong_packed_width_rejected() -> None:
    with pytest.raises(ValueError, match="need 3"):
        unpack_codes(torch.zeros(2, 4, dtype=torch.uint8), 4, 5)
