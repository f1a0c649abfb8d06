"""Metadata that repository info derives from files: model card, config and parameter counts."""

from __future__ import annotations

import json
import logging
import math
import struct
from typing import Any

import yaml

from localhub.storage.blobs import BlobStore
from localhub.storage.records import FileEntry

__all__ = ["card_data", "config_summary", "parse_front_matter", "safetensors_summary"]

logger = logging.getLogger(__name__)

# Files larger than this are not parsed for metadata; real cards and configs are far smaller.
_MAX_METADATA_FILE_BYTES = 1 << 20
# A safetensors header larger than this is treated as corrupt rather than read into memory.
_MAX_SAFETENSORS_HEADER_BYTES = 100 << 20
_CONFIG_KEYS = ("architectures", "model_type", "quantization_config")


def parse_front_matter(text: str) -> dict[str, Any] | None:
    """Return the YAML metadata block that opens a model card, or None when there is none.

    Raises:
        yaml.YAMLError: the block is not valid YAML.
        ValueError: the block is valid YAML but not a mapping.
    """
    lines = text.splitlines()
    if not lines or lines[0].strip() != "---":
        return None
    for index, line in enumerate(lines[1:], start=1):
        if line.strip() == "---":
            block = "\n".join(lines[1:index])
            break
    else:
        return None
    data = yaml.safe_load(block)
    if data is None:
        return None
    if not isinstance(data, dict):
        raise ValueError("the metadata block must be a YAML mapping")
    return data


def _small_text(files: dict[str, FileEntry], blobs: BlobStore, path: str) -> str | None:
    entry = files.get(path)
    if entry is None or entry.size > _MAX_METADATA_FILE_BYTES:
        return None
    return blobs.read_bytes(entry.sha256).decode("utf-8", errors="replace")


def card_data(files: dict[str, FileEntry], blobs: BlobStore) -> dict[str, Any] | None:
    """Return the metadata of README.md, or None when it has none or it cannot be parsed."""
    text = _small_text(files, blobs, "README.md")
    if text is None:
        return None
    try:
        return parse_front_matter(text)
    except (yaml.YAMLError, ValueError) as exc:
        logger.info("Ignoring invalid README.md metadata: %s", exc)
        return None


def config_summary(files: dict[str, FileEntry], blobs: BlobStore) -> dict[str, Any] | None:
    """Return `architectures`, `model_type` and `quantization_config` from config.json."""
    text = _small_text(files, blobs, "config.json")
    if text is None:
        return None
    try:
        config = json.loads(text)
    except json.JSONDecodeError as exc:
        logger.info("Ignoring invalid config.json: %s", exc)
        return None
    if not isinstance(config, dict):
        return None
    return {key: config[key] for key in _CONFIG_KEYS if key in config}


def _safetensors_counts(blobs: BlobStore, entry: FileEntry) -> dict[str, int]:
    # A safetensors file starts with a little-endian u64 header length, then a JSON header
    # mapping tensor names to {dtype, shape, data_offsets}.
    head = blobs.read_prefix(entry.sha256, 8)
    if len(head) < 8:
        raise ValueError("file shorter than the 8-byte header length")
    (header_size,) = struct.unpack("<Q", head)
    if header_size > min(_MAX_SAFETENSORS_HEADER_BYTES, entry.size - 8):
        raise ValueError(f"header length {header_size} does not fit the file")
    header = json.loads(blobs.read_prefix(entry.sha256, 8 + header_size)[8:])
    counts: dict[str, int] = {}
    for name, tensor in header.items():
        if name == "__metadata__":
            continue
        counts[tensor["dtype"]] = counts.get(tensor["dtype"], 0) + math.prod(tensor["shape"])
    return counts


def safetensors_summary(files: dict[str, FileEntry], blobs: BlobStore) -> dict[str, Any] | None:
    """Count parameters per dtype over all `.safetensors` files, as the Hub's `safetensors` field.

    Returns None when the commit has no readable safetensors file.
    """
    parameters: dict[str, int] = {}
    found = False
    for path, entry in files.items():
        if not path.endswith(".safetensors"):
            continue
        try:
            counts = _safetensors_counts(blobs, entry)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            # Debug level: repository info is polled often and would repeat this line.
            logger.debug("Cannot read the safetensors header of %s: %s", path, exc)
            continue
        found = True
        for dtype, count in counts.items():
            parameters[dtype] = parameters.get(dtype, 0) + count
    if not found:
        return None
    return {"parameters": parameters, "total": sum(parameters.values())}
