"""RUQuant stage 2: train the global Householder vectors of one layer.

Only the omega vector of each site is trained, and everything else is frozen. The loss is
MSE(float layer output on float inputs, fake-quantized layer output on quantized inputs).
Rounding uses a straight-through estimator, and the optimizer is AdamW (no weight decay, batch 1).

The MLP half of a layer works on each token alone, so a step runs attention over the whole
window once and then the MLP and its backward pass over chunks of tokens. Autograd then keeps the
MLP's intermediate activations (``[T, intermediate_size]``, the widest of the layer) for one chunk
at a time, and the gradients equal those of one pass up to float rounding.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import torch
from torch import nn

from ruquant.calibration.capture import move_to_device
from ruquant.models.layer_surgery import quant_linears, set_quantization, sharing_site_inputs
from ruquant.models.mappings import ArchitectureMapping
from ruquant.transforms.householder import reflect
from ruquant.transforms.site import SiteTransform
from ruquant.utils.memory import release_free_memory

__all__ = ["train_omegas"]

logger = logging.getLogger(__name__)


@torch.no_grad()
def _unfold_omega(layer: nn.Module) -> None:
    """Take H_omega back out of each weight (H_omega is its own inverse) so omega can be trained."""
    for linear in quant_linears(layer):
        omega = linear.transform.omega
        if omega is not None and linear.omega_folded:
            unfolded = reflect(linear.weight.to(torch.float64), omega.to(torch.float64))
            linear.weight.data = unfolded.to(linear.weight.dtype)
            linear.omega_folded = False


def _backward_window(
    layer: nn.Module,
    x: torch.Tensor,
    target: torch.Tensor,
    kwargs: dict[str, Any],
    mapping: ArchitectureMapping | None,
    token_chunk: int,
) -> torch.Tensor:
    """Back-propagate the MSE loss of one window ``x`` ([1, T, C]) and return the loss (detached).

    Returns a non-finite loss without back-propagating the rest when a chunk's loss is not finite.
    """
    tokens = x.shape[1]
    if mapping is None or token_chunk <= 0 or token_chunk >= tokens:
        out = layer(x, **kwargs)
        out = out[0] if isinstance(out, tuple) else out
        loss = torch.nn.functional.mse_loss(out.float(), target.float())
        if bool(torch.isfinite(loss)):
            loss.backward()
        return loss.detach()
    # Calling the submodules skips the layer's forward hooks, so ``sharing_site_inputs`` lets
    # q/k/v (and gate/up) reuse one transformed, quantized input, as a whole-layer pass does.
    attention = layer.get_submodule(mapping.attention)
    input_norm = layer.get_submodule(mapping.input_norm)
    post_attention_norm = layer.get_submodule(mapping.post_attention_norm)
    mlp = layer.get_submodule(mapping.mlp)
    with sharing_site_inputs(attention):
        attn_out = attention(hidden_states=input_norm(x), **kwargs)
    hidden = x + (attn_out[0] if isinstance(attn_out, tuple) else attn_out)  # [1, T, C]
    # Cut the graph after attention: the chunks back-propagate into ``hidden_leaf.grad``, and one
    # final backward carries that gradient through attention.
    hidden_leaf = hidden.detach().requires_grad_(True)
    # The MLP's weights depend on the omegas too: compute them once, let every chunk read a leaf
    # copy, and carry the leaves' gradients back through the weight graph after the chunks.
    linears = quant_linears(mlp)
    weights = [linear.effective_weight(ste=True) for linear in linears]
    weight_leaves = [weight.detach().requires_grad_(weight.requires_grad) for weight in weights]
    total = torch.zeros((), dtype=torch.float32, device=x.device)
    numel = target.numel()
    try:
        for linear, leaf in zip(linears, weight_leaves, strict=True):
            linear.step_weight = leaf
        for start in range(0, tokens, token_chunk):
            part = hidden_leaf[:, start : start + token_chunk]
            with sharing_site_inputs(mlp):
                out = part + mlp(post_attention_norm(part))
            # Sum over the chunk divided by the window's element count, so the chunks add up to the mean.
            loss = torch.nn.functional.mse_loss(
                out.float(), target[:, start : start + token_chunk].float(), reduction="sum"
            ) / numel
            if not bool(torch.isfinite(loss)):
                return loss.detach()
            loss.backward()
            total += loss.detach()
    finally:
        for linear in linears:
            linear.step_weight = None
    pending = [(weight, leaf.grad) for weight, leaf in zip(weights, weight_leaves, strict=True) if leaf.grad is not None]
    if hidden.requires_grad and hidden_leaf.grad is not None:  # False when no attention site trains
        pending.append((hidden, hidden_leaf.grad))
    if pending:
        torch.autograd.backward([tensor for tensor, _ in pending], [grad for _, grad in pending])
    return total


def train_omegas(
    layer: nn.Module,
    transforms: list[SiteTransform],
    quant_inputs: torch.Tensor,
    fp_targets: torch.Tensor,
    layer_kwargs: dict[str, Any],
    device: torch.device,
    *,
    epochs: int,
    lr: float,
    mapping: ArchitectureMapping | None = None,
    token_chunk: int = 0,
) -> dict[str, float]:
    """Train the omegas of ``transforms`` in place.

    The weights stay unfolded (``omega_folded`` is False) until ``QuantLinear.finalize`` folds
    the trained omegas into them.

    ``quant_inputs`` and ``fp_targets`` are ``[N, T, C]``. Returns the first and last epoch's
    mean loss and the number of skipped steps. A step with a non-finite loss is skipped and the
    omegas fall back to the last values that gave a finite loss. With a ``mapping`` and a
    ``token_chunk`` shorter than the window, the MLP half runs ``token_chunk`` tokens at a time.
    """
    trainable = [t for t in transforms if t.omega is not None]
    stats = {"first_loss": math.nan, "last_loss": math.nan, "skipped_steps": 0.0}
    if not trainable:
        return stats
    _unfold_omega(layer)
    for transform in trainable:
        transform.set_omega(transform.omega.to(torch.float32), trainable=True)
    params = [t.omega for t in trainable]
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    kwargs = {k: move_to_device(v, device) for k, v in layer_kwargs.items()}
    last_finite = [p.detach().clone() for p in params]
    set_quantization(layer, True, ste=True)
    try:
        for epoch in range(epochs):
            total, steps = 0.0, 0
            for index in range(quant_inputs.shape[0]):
                x = quant_inputs[index : index + 1].to(device)
                target = fp_targets[index : index + 1].to(device)
                if device.type == "cpu":
                    # The last step's activations and graph are freed by now. Handing the heap's free
                    # pages back keeps this step's peak from adding to holes the allocator did not reuse.
                    release_free_memory()
                optimizer.zero_grad(set_to_none=True)
                with torch.enable_grad():
                    loss = _backward_window(layer, x, target, kwargs, mapping, token_chunk)
                    finite = bool(torch.isfinite(loss))
                    if finite:
                        finite = all(p.grad is None or bool(torch.isfinite(p.grad).all()) for p in params)
                if finite:
                    optimizer.step()
                    finite = all(bool(torch.isfinite(p).all()) for p in params)
                if not finite:
                    # Restore the last finite omegas and restart AdamW, whose moments may hold NaN.
                    stats["skipped_steps"] += 1
                    with torch.no_grad():
                        for p, saved in zip(params, last_finite, strict=True):
                            p.copy_(saved)
                    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
                    continue
                last_finite = [p.detach().clone() for p in params]
                total += float(loss)
                steps += 1
            mean_loss = total / max(steps, 1)
            if epoch == 0:
                stats["first_loss"] = mean_loss
            stats["last_loss"] = mean_loss
            logger.debug("stage 2 epoch %d/%d: mean loss %.6g", epoch + 1, epochs, mean_loss)
    finally:
        set_quantization(layer, True, ste=False)
        for transform, saved in zip(trainable, last_finite, strict=True):
            transform.set_omega(saved.to(torch.float64), trainable=False)
    return stats
