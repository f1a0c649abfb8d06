"""Weight-side folding of site transforms, the fake-quantized linear layer and stage-2 omega folding.

The identity under test is W' x' = W x with x' = H_omega (I x M2) Pi (I x M1) diag(s)^-1 x and
W' = W diag(s) (I x M1)^T Pi^T (I x M2)^T H_omega.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from ruquant.config import Method, QuantConfig
from ruquant.models.attention import AttentionQuantizer
from ruquant.quant.modules import ActivationQuantizer, QuantLinear
from ruquant.quant.primitives import asymmetric_qparams, dequantize, fake_quantize, quantize
from ruquant.stage2 import _unfold_omega
from ruquant.transforms.hadamard import random_hadamard, random_orthogonal
from ruquant.transforms.householder import reflect
from ruquant.transforms.search import SiteStatistics, build_site_transform
from ruquant.transforms.site import SiteTransform
from tests.ruquant.tiny_models import single_thread

SEED = 7
WIDTH = 128
BLOCK = 32
OUT_FEATURES = 48
TOKENS = 10
PARTS = ("identity", "smoothing", "hadamard", "full", "searched")


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    with single_thread():
        yield


def _inputs(seed: int = SEED) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Return x [T, C] with outlier channels, W [out, C] and b [out], all float64."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(TOKENS, WIDTH, generator=generator, dtype=torch.float64)
    x[:, [3, 40, 77]] *= 25.0
    weight = 0.1 * torch.randn(OUT_FEATURES, WIDTH, generator=generator, dtype=torch.float64)
    bias = torch.randn(OUT_FEATURES, generator=generator, dtype=torch.float64)
    return x, weight, bias


def _transform(
    parts: str, compute_dtype: torch.dtype, smooth_online: bool, seed: int = SEED
) -> SiteTransform:
    """Build a site transform with the named parts from a seeded generator."""
    generator = torch.Generator().manual_seed(seed)
    if parts == "searched":
        x, weight, _ = _inputs(seed)
        stats = SiteStatistics(
            absmax=x.abs().amax(dim=0).float(),
            mean=x,
            weight_absmax=weight.abs().amax(dim=0).float(),
        )
        config = QuantConfig(method=Method.RUQUANT, greedy_steps=4, givens_rounds=2)
        return build_site_transform(
            stats,
            config,
            block_size=BLOCK,
            generator=generator,
            smooth_online=smooth_online,
            compute_dtype=compute_dtype,
        )
    transform = SiteTransform(WIDTH, compute_dtype=compute_dtype)
    if parts in ("smoothing", "full"):
        transform.smooth_scale = torch.exp(
            torch.randn(WIDTH, generator=generator, dtype=torch.float64)
        )
        transform.smooth_online = smooth_online
    if parts == "hadamard":
        transform.m1 = random_hadamard(BLOCK, generator)
    if parts == "full":
        transform.m1 = random_orthogonal(BLOCK, generator)
        transform.perm = torch.randperm(WIDTH, generator=generator)
        transform.m2 = random_orthogonal(BLOCK, generator)
        transform.set_omega(torch.randn(WIDTH, generator=generator, dtype=torch.float64))
    return transform


def _site_input(transform: SiteTransform, x: torch.Tensor) -> torch.Tensor:
    """Return what the site receives: x itself, or x / s when the producer folded the smoothing."""
    if transform.smooth_scale is not None and not transform.smooth_online:
        return x / transform.smooth_scale
    return x


# Fusion identity.


@pytest.mark.parametrize("smooth_online", [True, False], ids=["online", "folded"])
@pytest.mark.parametrize("parts", PARTS)
def test_fold_preserves_linear_float64(parts: str, smooth_online: bool) -> None:
    x, weight, bias = _inputs()
    transform = _transform(parts, torch.float64, smooth_online)
    actual = F.linear(transform(_site_input(transform, x)), transform.fold_weight(weight)) + bias
    expected = F.linear(x, weight) + bias
    # Outputs reach 17. Observed max abs error: 4.7e-14.
    torch.testing.assert_close(actual, expected, atol=1e-10, rtol=0.0)


@pytest.mark.parametrize("smooth_online", [True, False], ids=["online", "folded"])
@pytest.mark.parametrize("parts", PARTS)
def test_fold_preserves_linear_float32(parts: str, smooth_online: bool) -> None:
    x, weight, bias = _inputs()
    transform = _transform(parts, torch.float32, smooth_online)
    # The fold runs in float64 and is cast to the float32 storage dtype once.
    folded = transform.fold_weight(weight.float()).float()
    site_input = _site_input(transform, x).float()
    actual = F.linear(transform(site_input), folded) + bias.float()
    expected = F.linear(x, weight) + bias
    # Outputs reach 17 and inputs 44. Observed max abs error: 1.5e-5 (full chain, online).
    torch.testing.assert_close(actual.double(), expected, atol=5e-5, rtol=1e-5)


def test_fold_returns_float64() -> None:
    _, weight, _ = _inputs()
    transform = _transform("full", torch.float32, True)
    assert transform.fold_weight(weight.float()).dtype == torch.float64


def test_identity_transform_is_identity() -> None:
    x, weight, _ = _inputs()
    transform = SiteTransform(WIDTH, compute_dtype=torch.float64)
    assert transform.is_identity
    assert torch.equal(transform(x), x)
    assert torch.equal(transform.fold_weight(weight), weight)


def test_rotate_without_omega_drops_reflection() -> None:
    x, _, _ = _inputs()
    transform = _transform("full", torch.float64, True)
    with_omega = transform.rotate(x)
    without_omega = transform.rotate(x, include_omega=False)
    torch.testing.assert_close(
        reflect(without_omega, transform.omega), with_omega, atol=1e-12, rtol=0.0
    )


# QuantLinear.


def _quant_linear(
    parts: str, *, w_bits: int, a_bits: int, dtype: torch.dtype = torch.float32
) -> tuple[QuantLinear, nn.Linear, SiteTransform]:
    """Build a QuantLinear the way install_site does: copy the layer, then store the folded weight."""
    _, weight, bias = _inputs()
    linear = nn.Linear(WIDTH, OUT_FEATURES).to(dtype)
    with torch.no_grad():
        linear.weight.copy_(weight)
        linear.bias.copy_(bias)
    transform = _transform(parts, torch.float32, smooth_online=True)
    act = ActivationQuantizer(a_bits, 0.9)
    layer = QuantLinear(linear, transform, act, w_bits=w_bits, w_clip_ratio=0.8)
    layer.weight.data = transform.fold_weight(linear.weight).to(dtype)
    return layer, linear, transform


@pytest.mark.parametrize("parts", PARTS)
def test_quant_linear_off_reproduces_linear(parts: str) -> None:
    layer, linear, _ = _quant_linear(parts, w_bits=4, a_bits=4)
    layer.act_quantizer.enabled = False
    layer.quantize_weight = False
    x = _inputs()[0].float()
    with torch.no_grad():
        # Observed max abs error: 1.5e-5 on outputs up to 17.
        torch.testing.assert_close(layer(x), linear(x), atol=5e-5, rtol=1e-5)




def test_quant_linear_follows_quantizer_switch() -> None:
    layer, linear, _ = _quant_linear("full", w_bits=4, a_bits=4)
    x = _inputs()[0].float()
    with torch.no_grad():
        layer(x)
        layer.act_quantizer.enabled = False
        layer.quantize_weight = False
        torch.testing.assert_close(layer(x), linear(x), atol=5e-5, rtol=1e-5)


def test_quant_linear_follows_omega_change() -> None:
    # With the weight unfolded (stage-2 state) any omega gives the float output, as long as the
    # activation side uses the same omega as the weight side.
    pair, transform = _shared_pair(torch.float32)
    layer = pair.first
    _unfold_omega(pair)
    layer.act_quantizer.enabled = False
    layer.quantize_weight = False
    x = _inputs()[0].float()
    reference = F.linear(x, _inputs()[1].float(), layer.bias.detach())
    with torch.no_grad():
        layer(x)
        transform.set_omega(torch.randn(WIDTH, generator=torch.Generator().manual_seed(SEED + 3)))
        torch.testing.assert_close(layer(x), reference, atol=5e-5, rtol=1e-5)


def test_quant_linear_16_bits_is_float() -> None:
    layer, linear, _ = _quant_linear("full", w_bits=16, a_bits=16)
    assert not layer.act_quantizer.enabled
    assert not layer.quantize_weight
    x = _inputs()[0].float()
    with torch.no_grad():
        torch.testing.assert_close(layer(x), linear(x), atol=5e-5, rtol=1e-5)


def test_quant_linear_forward_composition() -> None:
    # forward(x) = linear(Q_a(T(x)), Q_w(W'), b), with the activation clip 0.9 and weight clip 0.8.
    layer, linear, transform = _quant_linear("full", w_bits=4, a_bits=4)
    x = _inputs()[0].float()
    expected = F.linear(
        fake_quantize(transform(x), 4, 0.9), fake_quantize(layer.weight, 4, 0.8), linear.bias
    )
    with torch.no_grad():
        assert torch.equal(layer(x), expected)


@pytest.mark.parametrize("w_bits", [2, 4, 6, 8])
def test_finalize_puts_weight_on_grid(w_bits: int) -> None:
    layer, _, _ = _quant_linear("full", w_bits=w_bits, a_bits=16)
    layer.finalize()
    scale, zero_point = layer.weight_scale, layer.weight_zero_point
    assert scale.shape == (OUT_FEATURES, 1)
    assert zero_point.shape == (OUT_FEATURES, 1)
    raw_codes = layer.weight / scale + zero_point
    codes = raw_codes.round()
    assert codes.min() >= 0
    assert codes.max() <= 2**w_bits - 1
    # Observed max distance of w / scale + zero_point to an integer: 7.6e-6.
    torch.testing.assert_close(raw_codes, codes, atol=1e-4, rtol=0.0)
    assert torch.equal(dequantize(codes, scale, zero_point), layer.weight)


def test_finalize_matches_fake_quantized_weight() -> None:
    layer, _, _ = _quant_linear("full", w_bits=4, a_bits=4)
    expected = fake_quantize(layer.weight.detach(), 4, 0.8)
    layer.finalize()
    assert torch.equal(layer.weight.detach(), expected)




@pytest.mark.parametrize(
    "w_bits",
    [4, 6, 8],
)
def test_finalize_bfloat16_keeps_codes(w_bits: int) -> None:
    # A bfloat16 weight cannot hold every grid value (it keeps 8 significant bits, so at 8 bits a
    # value moves by up to |codes - zero_point| * 2**-8 steps), so finalize keeps the exact codes
    # in ``weight_codes`` and the weight is the grid value rounded to bfloat16.
    layer, _, _ = _quant_linear("full", w_bits=w_bits, a_bits=16, dtype=torch.bfloat16)
    scale, zero_point = asymmetric_qparams(layer.weight.detach(), w_bits, 0.8)
    original_codes = quantize(layer.weight.detach(), scale, zero_point, w_bits)
    layer.finalize()
    assert layer.weight.dtype == torch.bfloat16
    assert layer.weight_codes.dtype == torch.uint8
    assert torch.equal(layer.weight_codes.float(), original_codes)
    grid = dequantize(layer.weight_codes, layer.weight_scale, layer.weight_zero_point)
    assert torch.equal(grid.to(torch.bfloat16), layer.weight)


@pytest.mark.parametrize("w_bits", [2, 3, 4, 6, 8])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_finalize_wide_dtype_recovers_codes(w_bits: int, dtype: torch.dtype) -> None:
    # Wide weights keep no code buffer: codes() recomputes them from the grid-valued weight.
    layer, _, _ = _quant_linear("full", w_bits=w_bits, a_bits=16, dtype=dtype)
    with torch.no_grad():
        layer.weight[0, 0] = 40.0  # an outlier row stretches its scale
    scale, zero_point = asymmetric_qparams(layer.weight.detach(), w_bits, 0.8)
    original_codes = quantize(layer.weight.detach(), scale, zero_point, w_bits)
    layer.finalize()
    assert layer.weight_codes is None
    codes = layer.codes()
    assert codes.dtype == torch.uint8
    assert torch.equal(codes.to(original_codes.dtype), original_codes)


def test_codes_before_finalize_raise() -> None:
    layer, _, _ = _quant_linear("full", w_bits=4, a_bits=4)
    with pytest.raises(ValueError, match="finalize"):
        layer.codes()


def test_finalize_idempotent() -> None:
    layer, _, _ = _quant_linear("full", w_bits=4, a_bits=4)
    layer.finalize()
    once = layer.weight.detach().clone()
    layer.finalize()
    assert torch.equal(layer.weight.detach(), once)


def test_finalized_forward_skips_weight_requantization() -> None:
    layer, linear, transform = _quant_linear("full", w_bits=4, a_bits=4)
    layer.finalize()
    x = _inputs()[0].float()
    expected = F.linear(fake_quantize(transform(x), 4, 0.9), layer.weight, linear.bias)
    with torch.no_grad():
        assert torch.equal(layer(x), expected)


def test_finalize_float_weight_unchanged() -> None:
    layer, _, _ = _quant_linear("full", w_bits=16, a_bits=4)
    before = layer.weight.detach().clone()
    layer.finalize()
    assert torch.equal(layer.weight.detach(), before)
    assert layer.weight_scale is None
    assert layer.weight_zero_point is None


# Stage-2 omega unfold / fold.


class _Pair(nn.Module):
    """Two QuantLinear layers reading one site, as gate_proj and up_proj read mlp-in."""

    def __init__(self, first: QuantLinear, second: QuantLinear) -> None:
        super().__init__()
        self.first = first
        self.second = second


def _shared_pair(dtype: torch.dtype) -> tuple[_Pair, SiteTransform]:
    transform = _transform("full", torch.float32, smooth_online=True)
    _, weight, bias = _inputs()
    layers = []
    for offset in (0.0, 0.5):
        linear = nn.Linear(WIDTH, OUT_FEATURES).to(dtype)
        with torch.no_grad():
            linear.weight.copy_(weight + offset)
            linear.bias.copy_(bias)
        layer = QuantLinear(
            linear, transform, ActivationQuantizer(4, 0.9), w_bits=4, w_clip_ratio=0.8
        )
        layer.weight.data = transform.fold_weight(linear.weight).to(dtype)
        layers.append(layer)
    return _Pair(*layers), transform


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
def test_omega_unfold_fold_round_trip(dtype: torch.dtype) -> None:
    pair, _ = _shared_pair(dtype)
    before = [pair.first.weight.detach().clone(), pair.second.weight.detach().clone()]
    _unfold_omega(pair)
    assert not pair.first.omega_folded
    assert not pair.second.omega_folded
    pair.first.fold_omega()
    pair.second.fold_omega()
    # Weights reach 1.95: observed max abs error 2.4e-7 in float32 (two float64 reflections, two
    # casts) and 8.9e-16 in float64.
    atol = 2e-6 if dtype == torch.float32 else 1e-13
    for layer, original in zip((pair.first, pair.second), before, strict=True):
        assert layer.omega_folded
        torch.testing.assert_close(layer.weight.detach(), original, atol=atol, rtol=0.0)


def test_unfolded_effective_weight_matches_folded() -> None:
    pair, _ = _shared_pair(torch.float32)
    folded = pair.first.weight.detach().clone()
    _unfold_omega(pair)
    pair.first.quantize_weight = False
    # The unfolded weight is reflected in float32 on the fly. Observed max abs error: 1.2e-7.
    torch.testing.assert_close(pair.first.effective_weight().detach(), folded, atol=2e-6, rtol=0.0)


def test_unfold_twice_is_noop() -> None:
    pair, _ = _shared_pair(torch.float32)
    _unfold_omega(pair)
    once = pair.first.weight.detach().clone()
    _unfold_omega(pair)
    assert torch.equal(pair.first.weight.detach(), once)


def test_trainable_omega_keeps_output() -> None:
    # Any omega cancels between the online reflection and the unfolded weight, so stage 2 may
    # move omega freely.
    pair, transform = _shared_pair(torch.float32)
    layer = pair.first
    x = _inputs()[0].float()
    reference = F.linear(x, _inputs()[1].float(), layer.bias.detach())  # the unfolded W, b
    _unfold_omega(pair)
    new_omega = torch.randn(WIDTH, generator=torch.Generator().manual_seed(SEED + 3))
    transform.set_omega(new_omega, trainable=True)
    layer.act_quantizer.enabled = False
    layer.quantize_weight = False
    assert isinstance(transform.omega, nn.Parameter)
    with torch.no_grad():
        # Observed max abs error: 1.5e-5 on outputs up to 17.
        torch.testing.assert_close(layer(x), reference, atol=5e-5, rtol=1e-5)


def test_trainable_omega_gets_gradient() -> None:
    # With straight-through quantization on, the output depends on omega.
    pair, transform = _shared_pair(torch.float32)
    layer = pair.first
    _unfold_omega(pair)
    transform.set_omega(transform.omega.float(), trainable=True)
    layer.act_quantizer.ste = True
    layer(_inputs()[0].float()).pow(2).mean().backward()
    assert transform.omega.grad is not None
    assert float(transform.omega.grad.abs().max()) > 0.0


# Attention quantizer.


@pytest.mark.parametrize("head_dim", [16, 64, 24])
def test_head_rotation_orthogonal(head_dim: int) -> None:
    # Sizes 16 and 64 use a Hadamard matrix. 24 is not a power of two, so it gets a random
    # orthogonal matrix.
    quantizer = AttentionQuantizer(head_dim, 4, 0.9, torch.Generator().manual_seed(SEED))
    rotation = quantizer.head_rotation.double()
    # Stored in float32: observed max |R^T R - I| 0 for Hadamard sizes, 3.3e-8 for 24.
    torch.testing.assert_close(
        rotation.t() @ rotation, torch.eye(head_dim, dtype=torch.float64), atol=1e-6, rtol=0.0
    )


def _qkv(head_dim: int = 16) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(SEED)
    query = torch.randn(1, 4, 12, head_dim, generator=generator)  # [B, H, T, D]
    key = torch.randn(1, 2, 12, head_dim, generator=generator)  # [B, KVH, T, D]
    value = torch.randn(1, 2, 12, head_dim, generator=generator)
    return query, key, value


def test_attention_quantizer_16_bits_passthrough() -> None:
    query, key, value = _qkv()
    q, k, v = AttentionQuantizer(16, 16, 1.0)(query, key, value)
    assert q is query
    assert k is key
    assert v is value


def test_attention_quantizer_per_head() -> None:
    query, key, value = _qkv()
    quantizer = AttentionQuantizer(16, 4, 0.9)
    q, k, v = quantizer(query, key, value)
    rotation = quantizer.head_rotation
    assert torch.equal(q, fake_quantize(query @ rotation, 4, 0.9))
    assert torch.equal(k, fake_quantize(key @ rotation, 4, 0.9))
    # V is neither rotated nor clipped.
    assert torch.equal(v, fake_quantize(value, 4, 1.0))


def test_head_rotation_cancels_in_scores() -> None:
    query, key, _ = _qkv()
    rotation = AttentionQuantizer(16, 4, 0.9).head_rotation
    scores = query @ key[:, [0, 0, 1, 1]].transpose(-1, -2)  # each KV head serves two Q heads
    rotated = (query @ rotation) @ (key[:, [0, 0, 1, 1]] @ rotation).transpose(-1, -2)
    # Scores reach 15. Observed max abs error: 2.4e-6.
    torch.testing.assert_close(rotated, scores, atol=1e-5, rtol=0.0)
