"""transformers integration: the ``ruquant`` quantization config and quantizer.

Registered with transformers' extension points for custom quantization methods
(``register_quantization_config`` and ``register_quantizer`` from ``transformers.quantizers``),
so ``AutoModelForCausalLM.from_pretrained`` dispatches a ``config.json`` whose
``quantization_config.quant_method`` is ``"ruquant"`` to ``RUQuantHfQuantizer``. No modeling
file is forked: the quantizer swaps modules on the freshly built model and picks the
``ruquant_sdpa`` attention implementation.

This module runs while ``transformers.quantizers.auto`` finishes importing (see
``ruquant.integration.hook``), possibly in the middle of importing ``transformers.modeling_utils``,
so it imports only what that module has loaded already; the model surgery imports lazily.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from transformers.quantizers.auto import (
    AUTO_QUANTIZATION_CONFIG_MAPPING,
    AUTO_QUANTIZER_MAPPING,
    register_quantization_config,
    register_quantizer,
)
from transformers.quantizers.base import HfQuantizer
from transformers.utils.quantization_config import QuantizationConfigMixin

from ruquant.export.format import QUANT_METHOD, CheckpointConfig

__all__ = ["RUQuantHfQuantizer", "RUQuantQuantizationConfig", "register"]

logger = logging.getLogger(__name__)


class RUQuantQuantizationConfig(QuantizationConfigMixin):
    """The ``quantization_config`` of a ruquant checkpoint, as transformers carries it.

    It keeps the fields of ``config.json`` as attributes; ``checkpoint_config`` validates them
    (format name and version first) into ``ruquant.export.format.CheckpointConfig``.
    """

    def __init__(self, **kwargs: Any) -> None:
        for key, value in kwargs.items():
            setattr(self, key, value)
        self.quant_method = QUANT_METHOD

    def checkpoint_config(self, source: str = "config.json") -> CheckpointConfig:
        """Return the validated configuration; ``source`` names the file in error messages."""
        from ruquant.integration.validation import parse_checkpoint_config

        return parse_checkpoint_config(self.to_dict(), source)


class RUQuantHfQuantizer(HfQuantizer):
    """Loads ruquant checkpoints: validates the files, builds the quantized layout, restores buffers."""

    requires_calibration = True
    quantization_config: RUQuantQuantizationConfig

    def __init__(self, quantization_config: RUQuantQuantizationConfig, **kwargs: Any) -> None:
        super().__init__(quantization_config, **kwargs)
        self._checkpoint: CheckpointConfig | None = None

    def update_attn_implementation(self, config: Any) -> Any:
        """Use the ``ruquant_sdpa`` attention, which quantizes Q, K and V per head."""
        from ruquant.models.attention import ATTENTION_IMPLEMENTATION, register_attention

        register_attention()
        requested = getattr(config, "_attn_implementation", None)
        if requested not in (None, "sdpa", ATTENTION_IMPLEMENTATION):
            logger.warning(
                "attn_implementation=%s replaced by %s: the checkpoint quantizes Q, K and V inside attention",
                requested, ATTENTION_IMPLEMENTATION,
            )
        config._attn_implementation = ATTENTION_IMPLEMENTATION
        return config

    def _process_model_before_weight_loading(self, model: Any, **kwargs: Any) -> Any:
        from ruquant.integration.skeleton import build_quantized_layers
        from ruquant.integration.validation import validate_checkpoint_files

        files = [str(path) for path in kwargs.get("checkpoint_files") or []]
        source = str(Path(files[0]).parent / "config.json") if files else "quantization_config"
        checkpoint = self.quantization_config.checkpoint_config(source)
        dtype = kwargs.get("dtype") or next(model.parameters()).dtype
        build_quantized_layers(model, checkpoint, dtype)
        if files:
            validate_checkpoint_files(model, files)
        else:
            logger.warning("no checkpoint files to validate: loading from a state dict")
        self._checkpoint = checkpoint
        return model

    def _process_model_after_weight_loading(self, model: Any, **kwargs: Any) -> Any:
        from ruquant.integration.skeleton import (
            align_cpu_tensors,
            restore_head_rotations,
            set_kernel,
        )

        if self._checkpoint is None:
            raise RuntimeError("the ruquant quantizer did not build the model before loading its weights")
        restore_head_rotations(model, self._checkpoint)
        aligned = align_cpu_tensors(model)
        logger.debug("copied %d misaligned tensors into aligned memory", aligned)
        count = set_kernel(model, self._checkpoint.kernel)
        logger.info(
            "loaded ruquant %s checkpoint (%s): %d quantized linear layers, kernel=%s",
            self._checkpoint.preset, self._checkpoint.method, count, self._checkpoint.kernel,
        )
        return model

    def is_serializable(self, *args: Any, **kwargs: Any) -> bool:
        """Return False: write checkpoints with ``ruquant.export.checkpoint``, which adds the checksums."""
        return False

    @property
    def is_trainable(self) -> bool:
        """Return False: the packed weights are for inference."""
        return False


def register() -> None:
    """Register the ``ruquant`` config and quantizer with transformers (idempotent)."""
    for mapping, cls, register_fn in (
        (AUTO_QUANTIZATION_CONFIG_MAPPING, RUQuantQuantizationConfig, register_quantization_config),
        (AUTO_QUANTIZER_MAPPING, RUQuantHfQuantizer, register_quantizer),
    ):
        current = mapping.get(QUANT_METHOD)
        if current is cls:
            continue
        if current is not None and current.__module__ != cls.__module__:
            raise RuntimeError(f"quant_method {QUANT_METHOD!r} is already registered by {current.__module__}")
        if current is not None:
            # The same class from a re-imported module: replace it.
            mapping[QUANT_METHOD] = cls
            continue
        register_fn(QUANT_METHOD)(cls)
    logger.debug("registered the %r quantization method with transformers", QUANT_METHOD)
