"""Safetensors shards with per-tensor SHA-256 checksums, and their validation before loading.

A safetensors file is an 8-byte little-endian header length N, a JSON header of N bytes that
maps each tensor name to its dtype, shape and ``data_offsets`` (begin and end, relative to the
first byte after the header), and the tensor bytes. Every shard written here carries, in the
header's ``__metadata__``, the format name and version and a JSON object of tensor name ->
SHA-256 of its bytes, so truncation and corruption are reported with the file and tensor name.
"""

from __future__ import annotations

import hashlib
import json
import logging
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from ruquant.export.errors import CheckpointError
from ruquant.export.format import (
    FORMAT_NAME,
    FORMAT_VERSION,
    METADATA_CHECKSUMS,
    METADATA_FORMAT,
    METADATA_VERSION,
)

__all__ = [
    "INDEX_FILE",
    "SINGLE_FILE",
    "ShardHeader",
    "read_header",
    "tensor_sha256",
    "verify_shard",
    "write_shards",
]

logger = logging.getLogger(__name__)

SINGLE_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"
# A header larger than this is not a safetensors header (the reference implementation uses 100 MB).
_MAX_HEADER_BYTES = 100 * 1024 * 1024
_READ_CHUNK = 1 << 22


@dataclass(frozen=True)
class ShardHeader:
    """The parsed header of one safetensors file."""

    path: Path
    tensors: dict[str, dict[str, Any]]
    metadata: dict[str, str]
    data_start: int
    file_size: int


def tensor_sha256(tensor: torch.Tensor) -> str:
    """Return the SHA-256 hex digest of a CPU tensor's bytes in row-major order."""
    raw = tensor.detach().contiguous().reshape(-1).view(torch.uint8)
    return hashlib.sha256(raw.numpy().tobytes()).hexdigest()


def _shard_names(count: int) -> list[str]:
    if count == 1:
        return [SINGLE_FILE]
    return [f"model-{index:05d}-of-{count:05d}.safetensors" for index in range(1, count + 1)]


def _split(tensors: dict[str, torch.Tensor], max_shard_bytes: int) -> list[dict[str, torch.Tensor]]:
    """Split tensors into shards of at most ``max_shard_bytes`` (a larger single tensor gets its own)."""
    shards: list[dict[str, torch.Tensor]] = [{}]
    size = 0
    for name, tensor in tensors.items():
        nbytes = tensor.numel() * tensor.element_size()
        if shards[-1] and size + nbytes > max_shard_bytes:
            shards.append({})
            size = 0
        shards[-1][name] = tensor
        size += nbytes
    return shards


def write_shards(tensors: dict[str, torch.Tensor], folder: Path, max_shard_bytes: int) -> list[Path]:
    """Write ``tensors`` (CPU, contiguous) as checksummed safetensors shards into ``folder``.

    One shard is written as ``model.safetensors``; several get ``model-0000k-of-0000n`` names and
    a ``model.safetensors.index.json`` that maps each tensor to its file, as transformers expects.
    Returns the written weight files.
    """
    shards = _split(tensors, max_shard_bytes)
    names = _shard_names(len(shards))
    weight_map: dict[str, str] = {}
    paths = []
    total = 0
    for name, shard in zip(names, shards, strict=True):
        checksums = {key: tensor_sha256(value) for key, value in shard.items()}
        metadata = {
            "format": "pt",
            METADATA_FORMAT: FORMAT_NAME,
            METADATA_VERSION: str(FORMAT_VERSION),
            METADATA_CHECKSUMS: json.dumps(checksums, sort_keys=True),
        }
        path = folder / name
        save_file(shard, str(path), metadata=metadata)
        paths.append(path)
        weight_map.update({key: name for key in shard})
        total += sum(value.numel() * value.element_size() for value in shard.values())
    if len(shards) > 1:
        index = {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}
        (folder / INDEX_FILE).write_text(json.dumps(index, indent=2) + "\n", encoding="utf-8")
    logger.info("wrote %d tensors (%d bytes) in %d file(s) to %s", len(tensors), total, len(paths), folder)
    return paths


def read_header(path: Path) -> ShardHeader:
    """Parse the header of a safetensors file; raise ``CheckpointError`` naming the file when it is invalid."""
    try:
        file_size = path.stat().st_size
        with path.open("rb") as stream:
            prefix = stream.read(8)
            if len(prefix) < 8:
                raise CheckpointError(f"{path} is truncated: it has {file_size} bytes, fewer than the 8-byte header length")
            (length,) = struct.unpack("<Q", prefix)
            if length > _MAX_HEADER_BYTES or 8 + length > file_size:
                raise CheckpointError(
                    f"{path} is truncated or not a safetensors file: its header claims {length} bytes but the "
                    f"file has {file_size}"
                )
            raw = stream.read(length)
    except OSError as err:
        raise CheckpointError(f"failed to read checkpoint file {path}: {err}") from err
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CheckpointError(f"{path} has a corrupted safetensors header: {err}") from err
    if not isinstance(header, dict):
        raise CheckpointError(f"{path} has a corrupted safetensors header: expected a JSON object")
    metadata = header.pop("__metadata__", None) or {}
    return ShardHeader(path=path, tensors=header, metadata=metadata, data_start=8 + length, file_size=file_size)


def _check_format(header: ShardHeader) -> dict[str, str]:
    path = header.path
    fmt = header.metadata.get(METADATA_FORMAT)
    if fmt != FORMAT_NAME:
        raise CheckpointError(f"{path} is not a {FORMAT_NAME} checkpoint file: its metadata names format {fmt!r}")
    version = header.metadata.get(METADATA_VERSION)
    if version != str(FORMAT_VERSION):
        raise CheckpointError(
            f"{path} has {FORMAT_NAME} format version {version}, but this ruquant reads version "
            f"{FORMAT_VERSION}: install the ruquant release that wrote it"
        )
    try:
        checksums = json.loads(header.metadata[METADATA_CHECKSUMS])
    except (KeyError, json.JSONDecodeError) as err:
        raise CheckpointError(f"{path} has no valid tensor checksums in its metadata ({METADATA_CHECKSUMS})") from err
    return dict(checksums)


def verify_shard(header: ShardHeader, *, check_data: bool = True) -> None:
    """Check a shard's format, that no tensor lies past its end, and (``check_data``) every checksum.

    Raises ``CheckpointError`` naming the file and the first tensor that fails.
    """
    checksums = _check_format(header)
    data_size = header.file_size - header.data_start
    spans = []
    for name, entry in header.tensors.items():
        try:
            begin, end = (int(v) for v in entry["data_offsets"])
        except (KeyError, TypeError, ValueError) as err:
            raise CheckpointError(f"{header.path}: tensor {name} has no valid data_offsets in the header") from err
        if end > data_size or begin > end:
            raise CheckpointError(
                f"{header.path} is truncated: tensor {name} needs bytes {begin}-{end} of the data section, "
                f"which has {data_size}"
            )
        if name not in checksums:
            raise CheckpointError(f"{header.path}: tensor {name} has no checksum in the file metadata")
        spans.append((begin, end, name))
    if not check_data:
        return
    with header.path.open("rb") as stream:
        for begin, end, name in sorted(spans):
            stream.seek(header.data_start + begin)
            digest = hashlib.sha256()
            remaining = end - begin
            while remaining > 0:
                chunk = stream.read(min(_READ_CHUNK, remaining))
                if not chunk:
                    raise CheckpointError(f"{header.path} is truncated inside tensor {name}")
                digest.update(chunk)
                remaining -= len(chunk)
            if digest.hexdigest() != checksums[name]:
                raise CheckpointError(
                    f"{header.path}: tensor {name} is corrupted (its SHA-256 does not match the checksum "
                    "written with it); download or copy the checkpoint again"
                )
