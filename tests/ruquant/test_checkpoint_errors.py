"""Damaged checkpoints fail to load with a ``CheckpointError`` that names the file and the tensor."""

from __future__ import annotations

import json
import shutil
import struct
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM

from ruquant.config import QuantConfig
from ruquant.export.checkpoint import save_quantized_checkpoint
from ruquant.export.errors import CheckpointError
from ruquant.export.files import write_shards
from ruquant.export.tensors import round_float_tensors
from ruquant.pipeline import quantize_model
from tests.ruquant.tiny_models import build_tiny_model, calibration_ids, single_thread

TARGET = "model.layers.1.mlp.up_proj.weight_packed"


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    with single_thread():
        yield


@pytest.fixture(scope="module")
def original(tmp_path_factory: pytest.TempPathFactory) -> Path:
    model = build_tiny_model("llama-gqa")
    quant = QuantConfig(greedy_steps=4, givens_rounds=1)
    quantize_model(model, calibration_ids(), quant, progress=False)
    round_float_tensors(model, torch.float16)
    folder = tmp_path_factory.mktemp("original")
    save_quantized_checkpoint(model, None, folder, quant)
    return folder


@pytest.fixture
def checkpoint(original: Path, tmp_path: Path) -> Path:
    folder = tmp_path / "checkpoint"
    shutil.copytree(original, folder)
    return folder


def _load(folder: Path) -> None:
    AutoModelForCausalLM.from_pretrained(str(folder))


def _header(path: Path) -> tuple[int, dict[str, dict[str, object]]]:
    raw = path.read_bytes()
    (length,) = struct.unpack("<Q", raw[:8])
    return length, json.loads(raw[8 : 8 + length])


def _rewrite(folder: Path, edit: Callable[[dict[str, torch.Tensor]], None]) -> None:
    """Rewrite the weights with ``edit`` applied and fresh checksums, so only the edit is wrong."""
    path = folder / "model.safetensors"
    tensors = load_file(str(path))
    edit(tensors)
    path.unlink()
    write_shards(tensors, folder, max_shard_bytes=1 << 30)


def test_corrupted_tensor_named(checkpoint: Path) -> None:
    path = checkpoint / "model.safetensors"
    length, header = _header(path)
    begin = int(header[TARGET]["data_offsets"][0])  # type: ignore[index]
    raw = bytearray(path.read_bytes())
    raw[8 + length + begin + 3] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.raises(CheckpointError, match=rf"{path}: tensor {TARGET} is corrupted"):
        _load(checkpoint)


def test_truncated_file_named(checkpoint: Path) -> None:
    path = checkpoint / "model.safetensors"
    raw = path.read_bytes()
    path.write_bytes(raw[:-100])
    with pytest.raises(CheckpointError, match=rf"{path} is truncated: tensor \S+ needs bytes"):
        _load(checkpoint)


def test_file_cut_inside_header(checkpoint: Path) -> None:
    path = checkpoint / "model.safetensors"
    path.write_bytes(path.read_bytes()[:40])
    with pytest.raises(CheckpointError, match=rf"{path} is truncated or not a safetensors file"):
        _load(checkpoint)


def test_empty_file(checkpoint: Path) -> None:
    path = checkpoint / "model.safetensors"
    path.write_bytes(b"")
    with pytest.raises(CheckpointError, match=rf"{path} is truncated: it has 0 bytes"):
        _load(checkpoint)


def test_corrupted_header(checkpoint: Path) -> None:
    path = checkpoint / "model.safetensors"
    length, _ = _header(path)
    raw = bytearray(path.read_bytes())
    raw[8 : 8 + 10] = b"#" * 10
    path.write_bytes(bytes(raw))
    with pytest.raises(CheckpointError, match=rf"{path} has a corrupted safetensors header"):
        _load(checkpoint)


def test_missing_tensor_named(checkpoint: Path) -> None:
    _rewrite(checkpoint, lambda tensors: tensors.pop(TARGET))
    with pytest.raises(CheckpointError, match=rf"model.safetensors: tensor {TARGET} is missing"):
        _load(checkpoint)


def test_missing_transform_named(checkpoint: Path) -> None:
    name = "model.layers.0.ruquant_sites.mlp_in.omega"
    _rewrite(checkpoint, lambda tensors: tensors.pop(name))
    with pytest.raises(CheckpointError, match=rf"tensor {name} is missing"):
        _load(checkpoint)


def test_unexpected_tensor_named(checkpoint: Path) -> None:
    _rewrite(checkpoint, lambda tensors: tensors.update({"model.layers.0.extra": torch.zeros(2)}))
    with pytest.raises(CheckpointError, match=r"tensor model.layers.0.extra is not part of"):
        _load(checkpoint)


def test_wrong_dtype_named(checkpoint: Path) -> None:
    name = "model.layers.0.self_attn.q_proj.weight_scale"
    _rewrite(checkpoint, lambda tensors: tensors.update({name: tensors[name].half()}))
    with pytest.raises(CheckpointError, match=rf"tensor {name} has dtype F16, expected F32"):
        _load(checkpoint)


def test_wrong_shape_named(checkpoint: Path) -> None:
    _rewrite(checkpoint, lambda tensors: tensors.update({TARGET: tensors[TARGET][:, :-1].contiguous()}))
    with pytest.raises(CheckpointError, match=rf"tensor {TARGET} has shape"):
        _load(checkpoint)


def test_unknown_format_version_in_config(checkpoint: Path) -> None:
    path = checkpoint / "config.json"
    config = json.loads(path.read_text())
    config["quantization_config"]["format_version"] = 99
    path.write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match=rf"{path}: quantization_config.format_version 99 is not supported"):
        _load(checkpoint)


def test_unknown_format_version_in_file(checkpoint: Path) -> None:
    path = checkpoint / "model.safetensors"
    tensors = load_file(str(path))
    from safetensors.torch import save_file

    save_file(tensors, str(path), metadata={"format": "pt", "ruquant_format": "ruquant-packed", "ruquant_format_version": "99"})
    with pytest.raises(CheckpointError, match=rf"{path} has ruquant-packed format version 99"):
        _load(checkpoint)


def test_invalid_config_field(checkpoint: Path) -> None:
    path = checkpoint / "config.json"
    config = json.loads(path.read_text())
    config["quantization_config"]["weights"]["strategy"] = "group"
    path.write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match=rf"{path}: invalid quantization_config"):
        _load(checkpoint)
