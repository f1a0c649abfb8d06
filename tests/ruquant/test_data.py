"""Calibration windows and evaluation text: sources, determinism and errors."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import datasets
import pytest
import torch

from ruquant.calibration import data
from ruquant.calibration.data import (
    CALIBRATION_FILE,
    EVALUATION_FILE,
    load_calibration_windows,
    load_evaluation_text,
    tokenize_text,
)
from ruquant.errors import DataError

# Length and sha256 of "\n\n".join(rows of the wikitext-2-raw-v1 test split), the GPTQ-style test string.
TEST_STRING_CHARS = 1_294_336
TEST_STRING_SHA256 = "696cca6b65a171b0a358a4be6732cdfdf2dd6164a32e20fd70e3c13fc4dfae83"

SAMPLE_TEXT = " ".join(f"sentence {index} has some words in it." for index in range(200))


@pytest.fixture
def text_file(tmp_path: Path) -> Path:
    path = tmp_path / "sample.txt"
    path.write_text(SAMPLE_TEXT, encoding="utf-8")
    return path


@pytest.fixture
def no_data_dir(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(data.DATA_DIR_ENV, raising=False)


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def test_test_string_from_folder(data_dir: Path) -> None:
    evaluation = load_evaluation_text(str(data_dir / "wikitext-2"))

    assert len(evaluation.text) == TEST_STRING_CHARS
    assert _sha256(evaluation.text) == TEST_STRING_SHA256
    assert evaluation.description.startswith("wikitext-2-raw-v1 test (local file ")
    assert EVALUATION_FILE in evaluation.description


@pytest.mark.parametrize("subdir", ["", "wikitext-2"])
def test_wikitext2_from_data_dir_env(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch, subdir: str
) -> None:
    # RUQUANT_DATA_DIR may name the data root or the wikitext-2 folder itself.
    monkeypatch.setenv(data.DATA_DIR_ENV, str(data_dir / subdir))

    evaluation = load_evaluation_text("wikitext2")

    assert len(evaluation.text) == TEST_STRING_CHARS
    assert _sha256(evaluation.text) == TEST_STRING_SHA256


def test_offline_calibration_uses_validation(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch, byte_tokenizer: Any
) -> None:
    monkeypatch.setenv(data.DATA_DIR_ENV, str(data_dir))

    calibration = load_calibration_windows(byte_tokenizer, num_samples=2, seq_len=32)

    assert "validation" in calibration.description
    assert "in place of train" in calibration.description
    assert CALIBRATION_FILE in calibration.description


def test_windows_shape_and_dtype(text_file: Path, byte_tokenizer: Any) -> None:
    calibration = load_calibration_windows(
        byte_tokenizer, str(text_file), num_samples=5, seq_len=48
    )

    assert calibration.input_ids.shape == (5, 48)
    assert calibration.input_ids.dtype == torch.long
    assert calibration.seq_len == 48
    assert calibration.seed == 444
    assert calibration.source_tokens == len(SAMPLE_TEXT)  # one byte per token
    assert calibration.description == f"text file {text_file}"


def test_windows_are_slices_of_text(text_file: Path, byte_tokenizer: Any) -> None:
    calibration = load_calibration_windows(
        byte_tokenizer, str(text_file), num_samples=8, seq_len=40
    )
    token_ids = tokenize_text(byte_tokenizer, SAMPLE_TEXT)
    every_window = token_ids.unfold(0, 40, 1)  # [N - 39, 40]

    for row in calibration.input_ids:
        assert (every_window == row).all(dim=1).any()


def test_windows_deterministic_per_seed(text_file: Path, byte_tokenizer: Any) -> None:
    first = load_calibration_windows(
        byte_tokenizer, str(text_file), num_samples=6, seq_len=32, seed=7
    )
    second = load_calibration_windows(
        byte_tokenizer, str(text_file), num_samples=6, seq_len=32, seed=7
    )
    other = load_calibration_windows(
        byte_tokenizer, str(text_file), num_samples=6, seq_len=32, seed=8
    )

    assert torch.equal(first.input_ids, second.input_ids)
    assert not torch.equal(first.input_ids, other.input_ids)


def test_windows_leave_global_rng_alone(text_file: Path, byte_tokenizer: Any) -> None:
    state = torch.get_rng_state()

    load_calibration_windows(byte_tokenizer, str(text_file), num_samples=4, seq_len=32)

    assert torch.equal(torch.get_rng_state(), state)


def test_text_exactly_one_window(tmp_path: Path, byte_tokenizer: Any) -> None:
    path = tmp_path / "short.txt"
    path.write_text("abcdefgh", encoding="utf-8")

    calibration = load_calibration_windows(byte_tokenizer, str(path), num_samples=3, seq_len=8)

    assert calibration.input_ids.shape == (3, 8)
    assert (calibration.input_ids == tokenize_text(byte_tokenizer, "abcdefgh")).all()


def test_jsonl_file_rows_joined(tmp_path: Path) -> None:
    path = tmp_path / "rows.jsonl"
    rows = ["", " = Title = \n", "", " Body text .\n"]
    path.write_text("".join(json.dumps({"text": row}) + "\n" for row in rows), encoding="utf-8")

    assert load_evaluation_text(str(path)).text == "\n\n".join(rows)


def test_missing_path_raises(byte_tokenizer: Any) -> None:
    with pytest.raises(DataError, match="not found"):
        load_evaluation_text("/nonexistent/wikitext.txt")
    with pytest.raises(DataError, match="not found"):
        load_calibration_windows(byte_tokenizer, "no-such-dataset")


@pytest.mark.parametrize("content", ["", " \n\n\t "])
def test_empty_file_raises(tmp_path: Path, content: str) -> None:
    path = tmp_path / "empty.txt"
    path.write_text(content, encoding="utf-8")

    with pytest.raises(DataError, match="is empty"):
        load_evaluation_text(str(path))


def test_folder_without_files_raises(tmp_path: Path, byte_tokenizer: Any) -> None:
    (tmp_path / "notes.txt").write_text("unrelated", encoding="utf-8")

    with pytest.raises(DataError, match=EVALUATION_FILE):
        load_evaluation_text(str(tmp_path))
    with pytest.raises(DataError, match=CALIBRATION_FILE):
        load_calibration_windows(byte_tokenizer, str(tmp_path))


def test_data_dir_env_missing_raises(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(data.DATA_DIR_ENV, str(tmp_path / "missing"))

    with pytest.raises(DataError, match="RUQUANT_DATA_DIR"):
        load_evaluation_text("wikitext2")


def test_text_too_short_raises(tmp_path: Path, byte_tokenizer: Any) -> None:
    path = tmp_path / "short.txt"
    path.write_text("only twenty bytes ok", encoding="utf-8")

    with pytest.raises(DataError, match=r"has 20 tokens.*needs at least 64"):
        load_calibration_windows(byte_tokenizer, str(path), num_samples=1, seq_len=64)


def test_invalid_jsonl_raises(tmp_path: Path) -> None:
    path = tmp_path / "rows.jsonl"
    path.write_text('{"text": "fine"}\n{"text": broken\n', encoding="utf-8")

    with pytest.raises(DataError, match="line 2 is not valid JSON"):
        load_evaluation_text(str(path))


@pytest.mark.parametrize(("num_samples", "seq_len"), [(0, 16), (4, 0)])
def test_invalid_window_counts_raise(
    text_file: Path, byte_tokenizer: Any, num_samples: int, seq_len: int
) -> None:
    with pytest.raises(ValueError, match="must be at least 1"):
        load_calibration_windows(
            byte_tokenizer, str(text_file), num_samples=num_samples, seq_len=seq_len
        )


def test_hub_splits(
    monkeypatch: pytest.MonkeyPatch, no_data_dir: None, byte_tokenizer: Any
) -> None:
    requests: list[tuple[str, str, str]] = []

    def fake_load_dataset(name: str, config: str, *, split: str) -> dict[str, list[str]]:
        requests.append((name, config, split))
        return {"text": [f"{split} row {index} " * 20 for index in range(10)]}

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)

    evaluation = load_evaluation_text("wikitext2")
    calibration = load_calibration_windows(byte_tokenizer, num_samples=2, seq_len=16)

    assert requests == [
        ("wikitext", "wikitext-2-raw-v1", "test"),
        ("wikitext", "wikitext-2-raw-v1", "train"),
    ]
    assert evaluation.text.startswith("test row 0")
    assert evaluation.description == "wikitext-2-raw-v1 test (Hugging Face Hub: wikitext)"
    assert calibration.description == "wikitext-2-raw-v1 train (Hugging Face Hub: wikitext)"


def test_hub_failure_raises(monkeypatch: pytest.MonkeyPatch, no_data_dir: None) -> None:
    def unreachable(*args: object, **kwargs: object) -> None:
        raise ConnectionError("Couldn't reach 'wikitext' on the Hub")

    monkeypatch.setattr(datasets, "load_dataset", unreachable)

    with pytest.raises(DataError, match="set RUQUANT_DATA_DIR"):
        load_evaluation_text("wikitext2")
