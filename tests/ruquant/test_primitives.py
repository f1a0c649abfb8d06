"""Asymmetric min-max quantizers against an independent NumPy reference.

The reference repeats the documented formula with NumPy in the input's precision (float32 or
float64), in the same order of operations, so the library must match it bit for bit.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
import torch

from ruquant.quant.primitives import (
    SCALE_EPS,
    asymmetric_qparams,
    dequantize,
    fake_quantize,
    quantize,
    round_ste,
)
from tests.ruquant.tiny_models import single_thread

SEED = 1234
BITS = range(2, 9)
CLIP_RATIOS = (1.0, 0.9, 0.8)
# (name, shape, reduction dim): activations [T, C] per token, weights [out, in] per output
# channel, and a weight stored [in, out] that reduces over dim 0.
LAYOUTS = (
    ("per-token", (32, 96), -1),
    ("per-output-channel", (48, 80), -1),
    ("per-column", (80, 48), 0),
)


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    with single_thread():
        yield


def _reference(x: np.ndarray, num_bits: int, clip_ratio: float, axis: int) -> dict[str, np.ndarray]:
    """Quantize ``x`` with NumPy in its own precision and return scale, zero_point, codes and x_hat."""
    dtype = x.dtype.type
    max_vals = x.max(axis=axis, keepdims=True) * dtype(clip_ratio)
    min_vals = x.min(axis=axis, keepdims=True) * dtype(clip_ratio)
    qmax = 2**num_bits - 1
    scale = np.maximum((max_vals - min_vals) / dtype(qmax), dtype(SCALE_EPS))
    zero_point = np.round(-min_vals / scale)  # NumPy rounds half to even, as torch does
    codes = np.clip(np.round(x / scale) + zero_point, 0, qmax)
    x_hat = (codes - zero_point) * scale
    return {"scale": scale, "zero_point": zero_point, "codes": codes, "x_hat": x_hat}


def _activations(shape: tuple[int, int], dtype: torch.dtype, seed: int = SEED) -> torch.Tensor:
    """Gaussian values with a per-row offset and a few large entries, so rows are not centred."""
    generator = torch.Generator().manual_seed(seed)
    x = 2.0 * torch.randn(shape, generator=generator, dtype=torch.float64)
    x += torch.randn(shape[0], 1, generator=generator, dtype=torch.float64)
    x[::7, ::11] *= 12.0
    return x.to(dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("clip_ratio", CLIP_RATIOS)
@pytest.mark.parametrize("num_bits", BITS)
@pytest.mark.parametrize("layout", LAYOUTS, ids=[layout[0] for layout in LAYOUTS])
def test_quantizer_matches_reference(
    layout: tuple[str, tuple[int, int], int], num_bits: int, clip_ratio: float, dtype: torch.dtype
) -> None:
    _, shape, dim = layout
    x = _activations(shape, dtype)
    expected = _reference(x.numpy(), num_bits, clip_ratio, axis=dim)

    scale, zero_point = asymmetric_qparams(x, num_bits, clip_ratio, dim=dim)
    codes = quantize(x, scale, zero_point, num_bits)
    x_hat = dequantize(codes, scale, zero_point)
    fake = fake_quantize(x, num_bits, clip_ratio, dim=dim)

    assert torch.equal(scale, torch.from_numpy(expected["scale"]))
    assert torch.equal(zero_point, torch.from_numpy(expected["zero_point"]))
    assert torch.equal(codes, torch.from_numpy(expected["codes"]))
    assert torch.equal(x_hat, torch.from_numpy(expected["x_hat"]))
    assert torch.equal(fake, torch.from_numpy(expected["x_hat"]))
    assert fake.dtype == dtype


@pytest.mark.parametrize("num_bits", BITS)
def test_codes_are_integers_in_range(num_bits: int) -> None:
    x = _activations((64, 128), torch.float32)
    for clip_ratio in CLIP_RATIOS:
        scale, zero_point = asymmetric_qparams(x, num_bits, clip_ratio)
        codes = quantize(x, scale, zero_point, num_bits)
        assert codes.min() >= 0
        assert codes.max() <= 2**num_bits - 1
        assert torch.equal(codes, codes.round())
        assert torch.equal(zero_point, zero_point.round())


def test_unclipped_codes_use_both_ends_of_range() -> None:
    # With clip ratio 1.0, each row's min maps to code 0 and its max to 2**b - 1.
    x = _activations((16, 64), torch.float64)
    scale, zero_point = asymmetric_qparams(x, 4, 1.0)
    codes = quantize(x, scale, zero_point, 4)
    assert torch.equal(codes.amin(dim=-1), torch.zeros(16, dtype=torch.float64))
    assert torch.equal(codes.amax(dim=-1), torch.full((16,), 15.0, dtype=torch.float64))


def test_bfloat16_input_matches_float32_reference() -> None:
    # bfloat16 inputs are quantized in float32 and the result is cast back once.
    x = _activations((32, 96), torch.bfloat16)
    expected = _reference(x.float().numpy(), 4, 0.9, axis=-1)["x_hat"]
    fake = fake_quantize(x, 4, 0.9)
    assert fake.dtype == torch.bfloat16
    assert torch.equal(fake, torch.from_numpy(expected).to(torch.bfloat16))


@pytest.mark.parametrize("clip_ratio", CLIP_RATIOS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
def test_constant_rows_stay_finite(dtype: torch.dtype, clip_ratio: float) -> None:
    x = torch.tensor([[0.0] * 8, [3.0] * 8, [-2.5] * 8, [1e4] * 8], dtype=dtype)
    for num_bits in BITS:
        fake = fake_quantize(x, num_bits, clip_ratio)
        assert torch.isfinite(fake).all()
        assert torch.equal(fake[0], torch.zeros(8, dtype=dtype))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
def test_constant_row_unclipped_is_reproduced(dtype: torch.dtype) -> None:
    x = torch.tensor([[3.0] * 8, [-2.5] * 8, [1e4] * 8], dtype=dtype)
    for num_bits in BITS:
        # Observed exact in both dtypes. The bound allows 2 ulp of float32.
        torch.testing.assert_close(fake_quantize(x, num_bits, 1.0), x, atol=0.0, rtol=2.4e-7)


@pytest.mark.parametrize("num_bits", BITS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
def test_fake_quantize_idempotent_unclipped(dtype: torch.dtype, num_bits: int) -> None:
    x = _activations((64, 96), dtype)
    once = fake_quantize(x, num_bits, 1.0)
    twice = fake_quantize(once, num_bits, 1.0)
    # The second pass recovers the same codes and zero point, and the scale up to its rounding,
    # so every entry moves by the same relative amount. Observed max relative change: 1.8e-7 in
    # float32 and 2.1e-16 in float64 (about 1.5 ulp), at 7 and 8 bits. The bound is 4 ulp.
    rtol = 4 * torch.finfo(dtype).eps
    torch.testing.assert_close(twice, once, atol=0.0, rtol=rtol)


def test_fake_quantize_deterministic() -> None:
    x = _activations((64, 96), torch.float32)
    assert torch.equal(fake_quantize(x, 4, 0.9), fake_quantize(x.clone(), 4, 0.9))


def test_round_ste_identity_gradient() -> None:
    x = (torch.linspace(-3.0, 3.0, 61, dtype=torch.float64) + 0.013).requires_grad_()
    y = round_ste(x)
    assert torch.equal(y.detach(), x.detach().round())
    upstream = torch.linspace(0.5, 1.5, 61, dtype=torch.float64)
    y.backward(upstream)
    assert torch.equal(x.grad, upstream)


@pytest.mark.parametrize("num_bits", [2, 4, 8])
def test_fake_quantize_ste_forward_unchanged(num_bits: int) -> None:
    x = _activations((16, 64), torch.float32)
    assert torch.equal(fake_quantize(x, num_bits, 0.9, ste=True), fake_quantize(x, num_bits, 0.9))


@pytest.mark.parametrize("num_bits", [2, 4, 8])
def test_fake_quantize_ste_gradient_is_identity(num_bits: int) -> None:
    # With clip 1.0 nothing is clamped, so d x_hat / d x is 1 for every entry that is not a row's
    # min or max (those two also feed the scale, so their gradient has extra terms).
    x = _activations((16, 64), torch.float64).requires_grad_()
    upstream = torch.randn(
        16, 64, generator=torch.Generator().manual_seed(SEED), dtype=torch.float64
    )
    fake_quantize(x, num_bits, 1.0, ste=True).backward(upstream)
    interior = torch.ones_like(upstream, dtype=torch.bool)
    rows = torch.arange(16)
    interior[rows, x.detach().argmax(dim=-1)] = False
    interior[rows, x.detach().argmin(dim=-1)] = False
    # The gradient passes through x / s and * s, which may round. Observed max error: 4.4e-16.
    torch.testing.assert_close(x.grad[interior], upstream[interior], atol=2e-15, rtol=0.0)


def test_fake_quantize_without_ste_blocks_gradient() -> None:
    x = _activations((8, 32), torch.float64).requires_grad_()
    fake_quantize(x, 4, 1.0).sum().backward()
    assert torch.equal(x.grad, torch.zeros_like(x))
