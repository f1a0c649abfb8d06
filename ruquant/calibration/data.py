"""Calibration windows and evaluation text from WikiText-2 or a local text file.

A data source is one of:

* ``"wikitext2"``: the folder named by ``RUQUANT_DATA_DIR`` when that variable is set, else the
  ``wikitext`` dataset on the Hugging Face Hub (train split for calibration, test split for
  evaluation).
* a folder that contains the WikiText-2 files ``wikitext-2-raw-v1.test.jsonl`` (evaluation) and
  ``wikitext-2-v1.validation.tokens.txt`` (calibration).
* a text file, used whole for both; a ``.jsonl`` file is read as ``{"text": ...}`` rows joined
  with blank lines, like the WikiText-2 test file.

The train split is not stored offline, so offline calibration draws from the validation split.
Every loader returns a ``description`` that names the split and file actually read, so that
reports can state it.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import PreTrainedTokenizerBase

from ruquant.errors import DataError

__all__ = [
    "CALIBRATION_FILE",
    "DATA_DIR_ENV",
    "EVALUATION_FILE",
    "WIKITEXT2",
    "CalibrationData",
    "EvaluationText",
    "load_calibration_windows",
    "load_evaluation_text",
    "tokenize_text",
]

logger = logging.getLogger(__name__)

WIKITEXT2 = "wikitext2"
DATA_DIR_ENV = "RUQUANT_DATA_DIR"
EVALUATION_FILE = "wikitext-2-raw-v1.test.jsonl"
CALIBRATION_FILE = "wikitext-2-v1.validation.tokens.txt"
# Name of the WikiText-2 folder inside the RUQUANT_DATA_DIR root.
_WIKITEXT2_SUBDIR = "wikitext-2"
_HUB_DATASET = ("wikitext", "wikitext-2-raw-v1")


@dataclass(frozen=True)
class CalibrationData:
    """Random token windows for calibration.

    ``input_ids`` is a LongTensor of shape [num_samples, seq_len] on CPU. ``source_tokens`` is
    the token count of the whole text the windows were drawn from.
    """

    input_ids: torch.Tensor
    description: str
    seed: int
    seq_len: int
    source_tokens: int


@dataclass(frozen=True)
class EvaluationText:
    """Evaluation text and a description of where it came from."""

    text: str
    description: str


@dataclass(frozen=True)
class _TextSource:
    text: str
    description: str


def load_calibration_windows(
    tokenizer: PreTrainedTokenizerBase,
    source: str = WIKITEXT2,
    num_samples: int = 128,
    seq_len: int = 2048,
    seed: int = 444,
) -> CalibrationData:
    """Draw ``num_samples`` random windows of ``seq_len`` tokens from the calibration text.

    The text is tokenized once, and the window starts are drawn uniformly from every start that
    leaves a full window, with a local ``torch.Generator`` seeded with ``seed``. The same
    tokenizer, source and seed give the same windows.

    Args:
        tokenizer: Tokenizer of the model being calibrated.
        source: ``"wikitext2"``, a WikiText-2 folder or a text file (see the module docstring).
        num_samples: Number of windows.
        seq_len: Tokens per window.
        seed: Seed of the window starts.

    Returns:
        The windows as a LongTensor [num_samples, seq_len] with the source description.

    Raises:
        DataError: The source is missing or empty, or has fewer than ``seq_len`` tokens.
        ValueError: ``num_samples`` or ``seq_len`` is below 1.
    """
    if num_samples < 1:
        raise ValueError(f"num_samples={num_samples} must be at least 1")
    if seq_len < 1:
        raise ValueError(f"seq_len={seq_len} must be at least 1")

    calibration = _load_text(source, split="calibration")
    token_ids = tokenize_text(tokenizer, calibration.text)  # [N]
    num_tokens = token_ids.numel()
    if num_tokens < seq_len:
        raise DataError(
            f"calibration text from {calibration.description} has {num_tokens} tokens, but one "
            f"window of seq_len={seq_len} needs at least {seq_len}: use a longer text or a "
            "smaller seq_len"
        )

    generator = torch.Generator().manual_seed(seed)
    starts = torch.randint(0, num_tokens - seq_len + 1, (num_samples,), generator=generator)
    offsets = torch.arange(seq_len)
    input_ids = token_ids[starts[:, None] + offsets[None, :]]  # [num_samples, seq_len]
    logger.info(
        "calibration windows: samples=%d seq_len=%d seed=%d source_tokens=%d data=%s",
        num_samples,
        seq_len,
        seed,
        num_tokens,
        calibration.description,
    )
    return CalibrationData(
        input_ids=input_ids,
        description=calibration.description,
        seed=seed,
        seq_len=seq_len,
        source_tokens=num_tokens,
    )


def load_evaluation_text(source: str = WIKITEXT2) -> EvaluationText:
    r"""Load the evaluation text of ``source``.

    For WikiText-2 this is the ``wikitext-2-raw-v1`` test split with its rows joined by
    ``"\n\n"``, the test string that GPTQ-style perplexity evaluations tokenize.

    Raises:
        DataError: The source is missing, empty or unreadable.
    """
    loaded = _load_text(source, split="test")
    return EvaluationText(text=loaded.text, description=loaded.description)


def tokenize_text(tokenizer: PreTrainedTokenizerBase, text: str) -> torch.Tensor:
    """Tokenize ``text`` in one call and return the ids as a 1-D LongTensor [N].

    Special tokens are added as the tokenizer does by default, as the usual WikiText-2
    perplexity code does. The warning about sequences longer than the model's maximum length is
    silenced because the caller cuts the ids into windows.
    """
    encoding = tokenizer(text, return_tensors="pt", verbose=False)
    return encoding["input_ids"][0].to(torch.long)


def _load_text(source: str, *, split: str) -> _TextSource:
    if source == WIKITEXT2:
        data_dir = os.environ.get(DATA_DIR_ENV)
        if data_dir:
            return _read_wikitext2_folder(_find_wikitext2_folder(Path(data_dir)), split=split)
        return _load_wikitext2_from_hub(split=split)

    path = Path(source).expanduser()
    if not path.exists():
        raise DataError(
            f"data source {source!r} not found: pass 'wikitext2', an existing text file, or a "
            "folder holding the WikiText-2 files"
        )
    if path.is_dir():
        return _read_wikitext2_folder(path, split=split)
    return _TextSource(text=_read_text_file(path), description=f"text file {path}")


def _find_wikitext2_folder(data_dir: Path) -> Path:
    """Return ``data_dir/wikitext-2``, or ``data_dir`` itself when it contains the files directly."""
    if not data_dir.is_dir():
        raise DataError(
            f"{DATA_DIR_ENV}={str(data_dir)!r} is not an existing folder: point it at the data "
            f"folder that contains {_WIKITEXT2_SUBDIR}/, or unset it to load WikiText-2 from the Hub"
        )
    subdir = data_dir / _WIKITEXT2_SUBDIR
    if subdir.is_dir():
        return subdir
    return data_dir


def _read_wikitext2_folder(folder: Path, *, split: str) -> _TextSource:
    name = EVALUATION_FILE if split == "test" else CALIBRATION_FILE
    path = folder / name
    if not path.is_file():
        present = sorted(child.name for child in folder.iterdir())[:10]
        raise DataError(
            f"folder {folder} has no {name} (it contains {present}): a WikiText-2 folder needs "
            f"{EVALUATION_FILE} for evaluation and {CALIBRATION_FILE} for calibration"
        )

    if split == "test":
        return _TextSource(
            text=_read_jsonl_rows(path),
            description=f"wikitext-2-raw-v1 test (local file {path})",
        )
    logger.warning(
        "calibrating on the WikiText-2 validation split from %s: the train split is not "
        "available offline",
        path,
    )
    return _TextSource(
        text=_read_text_file(path),
        description=f"wikitext-2-v1 validation, in place of train (local file {path})",
    )


def _load_wikitext2_from_hub(*, split: str) -> _TextSource:
    # Imported here because `datasets` is slow to import and only this path needs it.
    import datasets

    hub_split = "test" if split == "test" else "train"
    name, config = _HUB_DATASET
    logger.info("loading %s/%s split=%s from the Hugging Face Hub", name, config, hub_split)
    try:
        rows = datasets.load_dataset(name, config, split=hub_split)
    except (OSError, datasets.exceptions.DatasetsError) as err:
        raise DataError(
            f"failed to load {name}/{config} split={hub_split} from the Hugging Face Hub "
            f"({type(err).__name__}: {err}); without network access, set {DATA_DIR_ENV} to a "
            f"folder that contains {_WIKITEXT2_SUBDIR}/{EVALUATION_FILE} and {CALIBRATION_FILE}"
        ) from err

    text = "\n\n".join(rows["text"])
    if not text.strip():
        raise DataError(f"{name}/{config} split={hub_split} from the Hub is empty")
    return _TextSource(text=text, description=f"{config} {hub_split} (Hugging Face Hub: {name})")


def _read_text_file(path: Path) -> str:
    if path.suffix == ".jsonl":
        return _read_jsonl_rows(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise DataError(f"failed to read text file {path}: {err}") from err
    if not text.strip():
        raise DataError(f"text file {path} is empty")
    return text


def _read_jsonl_rows(path: Path) -> str:
    r"""Join the ``text`` field of every JSON line with ``"\n\n"``, keeping blank rows."""
    rows: list[str] = []
    try:
        with path.open(encoding="utf-8") as lines:
            for line_number, line in enumerate(lines, start=1):
                if line.strip():
                    rows.append(_parse_text_row(line, path, line_number))
    except (OSError, UnicodeDecodeError) as err:
        raise DataError(f"failed to read {path}: {err}") from err

    text = "\n\n".join(rows)
    if not text.strip():
        raise DataError(f"{path} has no text")
    return text


def _parse_text_row(line: str, path: Path, line_number: int) -> str:
    try:
        row = json.loads(line)
    except json.JSONDecodeError as err:
        raise DataError(f"{path} line {line_number} is not valid JSON: {err.msg}") from err
    if not isinstance(row, dict) or not isinstance(row.get("text"), str):
        raise DataError(f"{path} line {line_number} is not an object with a string 'text' field")
    return row["text"]
