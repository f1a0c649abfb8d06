"""Run a model one decoder layer at a time: capture layer-0 inputs, run layers, collect site stats."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from ruquant.utils.memory import release_free_memory

__all__ = ["SiteRecorder", "capture_layer_inputs", "move_to_device", "observe_layer", "run_layer"]


class _StopForward(Exception):
    """Raised by the capture hook to end a forward pass after layer 0's inputs are known."""


@torch.no_grad()
def capture_layer_inputs(
    model: nn.Module, layers: nn.ModuleList, input_ids: torch.Tensor, device: torch.device
) -> tuple[torch.Tensor, dict[str, Any]]:
    """Return layer 0's hidden-state inputs ``[N, T, C]`` (on CPU) and its keyword arguments.

    The keyword arguments (position embeddings, attention mask) come from the first window; every
    window has the same length, so they serve all windows.
    """
    captured: list[torch.Tensor] = []
    layer_kwargs: dict[str, Any] = {}

    def hook(_module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        hidden = args[0] if args else kwargs["hidden_states"]
        captured.append(hidden.detach().to("cpu"))
        if not layer_kwargs:
            layer_kwargs.update({k: v for k, v in kwargs.items() if k != "hidden_states"})
        raise _StopForward

    # The embedding runs where it is stored (the CPU when layers are offloaded); only decoder
    # layers move to the compute device, one at a time.
    embedding = model.get_input_embeddings()
    input_device = embedding.weight.device if embedding is not None else device
    handle = layers[0].register_forward_pre_hook(hook, with_kwargs=True)
    try:
        for window in input_ids:
            try:
                model(window.unsqueeze(0).to(input_device), use_cache=False)
            except _StopForward:
                pass
    finally:
        handle.remove()
    return torch.cat(captured, dim=0), layer_kwargs


def move_to_device(value: Any, device: torch.device) -> Any:
    if isinstance(value, torch.Tensor):
        return value.to(device)
    if isinstance(value, tuple):
        return tuple(move_to_device(v, device) for v in value)
    return value


@torch.no_grad()
def run_layer(
    layer: nn.Module,
    hidden: torch.Tensor,
    layer_kwargs: dict[str, Any],
    device: torch.device,
    *,
    batch_size: int = 1,
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """Run ``layer`` over ``hidden`` ([N, T, C]) in batches; returns outputs on ``hidden``'s device.

    ``out`` receives the outputs when given. ``out=hidden`` overwrites the inputs batch by batch,
    which is safe because each batch is read in full before its outputs are written.
    """
    outputs = torch.empty_like(hidden) if out is None else out
    for start, batch_out in _layer_batches(layer, hidden, layer_kwargs, device, batch_size):
        outputs[start : start + batch_out.shape[0]] = batch_out.to(outputs.device)
    return outputs


@torch.no_grad()
def observe_layer(
    layer: nn.Module,
    hidden: torch.Tensor,
    layer_kwargs: dict[str, Any],
    device: torch.device,
    *,
    batch_size: int = 1,
) -> None:
    """Run ``layer`` over ``hidden`` ([N, T, C]) for its hooks only; the outputs are dropped."""
    for _start, _batch_out in _layer_batches(layer, hidden, layer_kwargs, device, batch_size):
        pass


# Windows between two heap trims in a layer pass.
_TRIM_INTERVAL = 8


def _layer_batches(
    layer: nn.Module, hidden: torch.Tensor, layer_kwargs: dict[str, Any], device: torch.device, batch_size: int
) -> Iterator[tuple[int, torch.Tensor]]:
    kwargs = {k: move_to_device(v, device) for k, v in layer_kwargs.items()}
    for start in range(0, hidden.shape[0], batch_size):
        batch = hidden[start : start + batch_size].to(device)
        batch_out = layer(batch, **kwargs)
        if isinstance(batch_out, tuple):
            batch_out = batch_out[0]
        yield start, batch_out
        # Freed temporaries stay in glibc's heap until a trim (about 200 MiB over a layer). Trimming
        # after every window cost a third more time on SmolLM2, every 8 windows an estimated 7%.
        if (start // batch_size + 1) % _TRIM_INTERVAL == 0:
            release_free_memory()


class SiteRecorder:
    """Forward pre-hooks on named modules that accumulate their input statistics.

    For each module: ``absmax`` ([C], max |x| over every token), ``sum`` ([T, C], float64, summed
    over windows, for the position-wise mean), ``count`` (windows seen) and ``sample`` (the first
    ``sample_tokens`` tokens of the first window, kept for checks and error metrics).
    """

    def __init__(self, sample_tokens: int = 256) -> None:
        self.sample_tokens = sample_tokens
        self.absmax: dict[str, torch.Tensor] = {}
        self.sum: dict[str, torch.Tensor] = {}
        self.count: dict[str, int] = {}
        self.sample: dict[str, torch.Tensor] = {}

    def _record(self, name: str, x: torch.Tensor) -> None:
        x = x.detach()
        tokens = x.reshape(-1, x.shape[-1])  # [N*T, C]
        absmax = tokens.abs().amax(dim=0).to(torch.float32)
        windows = x.reshape(-1, x.shape[-2], x.shape[-1]).to(torch.float64)  # [N, T, C]
        if name not in self.sum:
            self.absmax[name] = absmax
            self.sum[name] = windows.sum(dim=0)
            self.count[name] = windows.shape[0]
            self.sample[name] = windows[0, : self.sample_tokens].to(torch.float32).clone()
        else:
            self.absmax[name] = torch.maximum(self.absmax[name], absmax)
            self.sum[name] += windows.sum(dim=0)
            self.count[name] += windows.shape[0]

    def mean(self, name: str) -> torch.Tensor:
        """Return the position-wise mean ``[T, C]`` (float64) of the recorded inputs of ``name``."""
        return self.sum[name] / self.count[name]

    @contextmanager
    def recording(self, modules: dict[str, nn.Module]) -> Iterator[None]:
        """Record the inputs of ``modules`` (name -> module) while the context is open."""
        handles = []
        for name, module in modules.items():

            def hook(_module: nn.Module, args: tuple[Any, ...], _name: str = name) -> None:
                self._record(_name, args[0])

            handles.append(module.register_forward_pre_hook(hook))
        try:
            yield
        finally:
            for handle in handles:
                handle.remove()
