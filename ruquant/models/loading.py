"""Loading a causal LM and its tokenizer from a local folder, the Hugging Face Hub or an alias."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

import torch
from huggingface_hub import constants as hub_constants
from huggingface_hub import snapshot_download
from huggingface_hub.errors import (
    GatedRepoError,
    HfHubHTTPError,
    HFValidationError,
    LocalEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from ruquant.errors import ModelLoadError
from ruquant.models.smollm2 import export_smollm2

__all__ = ["BUNDLED_MODELS", "WEIGHT_FILES", "load_model", "resolve_model_folder"]

logger = logging.getLogger(__name__)

# Model names that map to a folder built locally instead of downloaded.
BUNDLED_MODELS: dict[str, Callable[[], Path]] = {"smollm2-135m": export_smollm2}
# A model folder needs one of these next to config.json.
WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)
# Files fetched from the Hub: config, safetensors weights, tokenizer and chat template.
_HUB_PATTERNS = ["*.json", "*.safetensors", "*.jinja", "*.model", "*.tiktoken", "*.txt"]
# Fetched only when a repo has no safetensors weights.
_HUB_BIN_PATTERNS = ["pytorch_model*.bin", "pytorch_model.bin.index.json"]
_REMOTE_CODE_PATTERNS = ["*.py"]


def load_model(
    model: str,
    *,
    revision: str | None = None,
    dtype: torch.dtype = torch.float32,
    token: str | None = None,
    trust_remote_code: bool = False,
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load a causal LM and its tokenizer on CPU, in eval mode, with SDPA attention.

    Args:
        model: A local model folder, a Hub repo id (``owner/name``), or a bundled alias from
            ``BUNDLED_MODELS`` such as ``"smollm2-135m"``.
        revision: Branch, tag or commit of a Hub repo; ignored for folders and aliases.
        dtype: Floating-point dtype of the loaded weights.
        token: Hub access token for private or gated repos; None uses the stored login.
        trust_remote_code: Allow model code shipped in the repo to run.

    Returns:
        The model and its tokenizer.

    Raises:
        ModelLoadError: The folder or repo does not exist, is gated or not accessible, lacks
            ``config.json`` or weights, or transformers fails to load it.
        ValueError: ``dtype`` is not a floating-point dtype.
    """
    if not dtype.is_floating_point:
        raise ValueError(f"dtype={dtype} is not a floating-point dtype")

    started = time.perf_counter()
    folder = resolve_model_folder(
        model, revision=revision, token=token, trust_remote_code=trust_remote_code
    )
    _check_model_folder(folder, model)

    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as err:
        raise ModelLoadError(
            f"failed to load the tokenizer of {model!r} from {folder}: {err}"
        ) from err
    try:
        loaded = AutoModelForCausalLM.from_pretrained(
            folder,
            dtype=dtype,
            attn_implementation="sdpa",
            trust_remote_code=trust_remote_code,
        )
    except (OSError, ValueError) as err:
        raise ModelLoadError(f"failed to load model {model!r} from {folder}: {err}") from err

    loaded.eval()
    logger.info(
        "loaded model=%s class=%s dtype=%s folder=%s seconds=%.1f",
        model,
        type(loaded).__name__,
        dtype,
        folder,
        time.perf_counter() - started,
    )
    return loaded, tokenizer


def resolve_model_folder(
    model: str,
    *,
    revision: str | None = None,
    token: str | None = None,
    trust_remote_code: bool = False,
) -> Path:
    """Return the local folder of ``model``, downloading a Hub repo into the Hub cache.

    The Hub endpoint is the one ``huggingface_hub`` is configured with (``HF_ENDPOINT``).

    Raises:
        ModelLoadError: The folder does not exist, or the Hub repo or revision is missing,
            gated, not accessible or unreachable.
    """
    if model in BUNDLED_MODELS:
        if revision is not None:
            logger.warning("revision=%s ignored for the bundled model %s", revision, model)
        return BUNDLED_MODELS[model]()

    path = Path(model).expanduser()
    if path.exists():
        if revision is not None:
            logger.warning("revision=%s ignored for the local folder %s", revision, path)
        return path
    if _looks_like_path(model):
        raise ModelLoadError(
            f"model folder {model!r} not found: pass an existing folder, a Hub repo id "
            f"(owner/name) or one of {sorted(BUNDLED_MODELS)}"
        )
    return _download(model, revision=revision, token=token, trust_remote_code=trust_remote_code)


def _looks_like_path(model: str) -> bool:
    """Return True for names that cannot be Hub repo ids, which have at most one ``/``."""
    return model.startswith(("/", ".", "~")) or model.count("/") > 1 or "\\" in model


def _download(
    model: str, *, revision: str | None, token: str | None, trust_remote_code: bool
) -> Path:
    patterns = _HUB_PATTERNS + (_REMOTE_CODE_PATTERNS if trust_remote_code else [])
    endpoint = hub_constants.ENDPOINT
    logger.info("downloading %s revision=%s from %s", model, revision or "main", endpoint)
    try:
        folder = Path(
            snapshot_download(
                repo_id=model, revision=revision, token=token, allow_patterns=patterns
            )
        )
        if not any(folder.glob("*.safetensors")):
            folder = Path(
                snapshot_download(
                    repo_id=model, revision=revision, token=token, allow_patterns=_HUB_BIN_PATTERNS
                )
            )
    except HFValidationError as err:
        raise ModelLoadError(
            f"{model!r} is neither an existing folder nor a valid Hub repo id (owner/name): {err}"
        ) from err
    except GatedRepoError as err:
        raise ModelLoadError(
            f"Hub repo {model!r} is gated: accept its conditions on the model page at {endpoint} "
            "and pass a token of an account that has access"
        ) from err
    except RepositoryNotFoundError as err:
        raise ModelLoadError(
            f"Hub repo {model!r} not found at {endpoint}, or it is private and the token has no "
            "access: check the repo id, or pass a token with read access"
        ) from err
    except RevisionNotFoundError as err:
        raise ModelLoadError(
            f"revision {revision!r} not found in Hub repo {model!r}: pass an existing branch, "
            "tag or commit"
        ) from err
    except LocalEntryNotFoundError as err:
        raise ModelLoadError(
            f"failed to reach the Hub at {endpoint} for {model!r}, and the Hub cache has no copy "
            "of it: check the network or HF_ENDPOINT, or pass a local folder"
        ) from err
    except HfHubHTTPError as err:
        status = err.response.status_code if err.response is not None else "unknown"
        raise ModelLoadError(
            f"Hub request for {model!r} failed with HTTP status {status}: {err}"
        ) from err

    logger.info("downloaded %s to %s", model, folder)
    return folder


def _check_model_folder(folder: Path, model: str) -> None:
    if not folder.is_dir():
        raise ModelLoadError(f"model path {folder} is not a folder: pass a model folder")
    if not (folder / "config.json").is_file():
        raise ModelLoadError(
            f"model folder {folder} has no config.json: pass a folder saved with "
            "save_pretrained, or a Hub repo id"
        )
    if not any((folder / name).is_file() for name in WEIGHT_FILES):
        raise ModelLoadError(
            f"model folder {folder} for {model!r} has no weights: expected one of "
            f"{', '.join(WEIGHT_FILES)}"
        )
