"""Facts about the base model for the model card: its Hub id and its licence.

The Hub id comes from, in order: a ``base_model`` or ``model_id`` entry of the run's log
context (the service passes the requested repo id there), the model argument when it is a
repo id (``owner/name``), the bundled-model table, or a Hugging Face cache path
(``.../models--owner--name/snapshots/...``). The licence comes from the ``license`` field of the
source folder's ``README.md`` front matter, else the bundled-model table.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["BUNDLED_SOURCES", "BaseModelInfo", "describe_base_model", "read_front_matter"]

# Hub id and licence of the models ``ruquant.models.loading`` builds locally.
BUNDLED_SOURCES: dict[str, tuple[str, str]] = {
    "smollm2-135m": ("HuggingFaceTB/SmolLM2-135M-Instruct", "apache-2.0"),
}
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_CACHE_DIR = re.compile(r"models--([\w.-]+)--([\w.-]+)")


@dataclass(frozen=True)
class BaseModelInfo:
    """The base model's Hub id (None when unknown), licence id and where the licence came from."""

    base_model: str | None
    license: str
    license_source: str


def read_front_matter(readme: Path) -> dict[str, str]:
    """Return the top-level ``key: value`` scalars of a README's YAML front matter (lists are skipped)."""
    if not readme.is_file():
        return {}
    lines = readme.read_text(encoding="utf-8", errors="replace").splitlines()
    if not lines or lines[0].strip() != "---":
        return {}
    fields: dict[str, str] = {}
    for line in lines[1:]:
        if line.strip() == "---":
            break
        match = re.match(r"^([A-Za-z_][\w-]*):\s*(\S.*)?$", line)
        if match and match.group(2):
            fields[match.group(1)] = match.group(2).strip().strip("'\"")
    return fields


def _hub_id(model: str, folder: Path | None, context: dict[str, Any]) -> str | None:
    for key in ("base_model", "model_id"):
        value = context.get(key)
        if isinstance(value, str) and _REPO_ID.match(value):
            return value
    if model in BUNDLED_SOURCES:
        return BUNDLED_SOURCES[model][0]
    if _REPO_ID.match(model) and not Path(model).exists():
        return model
    for text in (model, str(folder or "")):
        match = _CACHE_DIR.search(text)
        if match:
            return f"{match.group(1)}/{match.group(2)}"
    return None


def describe_base_model(model: str, folder: Path | None, context: dict[str, Any] | None = None) -> BaseModelInfo:
    """Return the Hub id and licence of the model a run quantized.

    ``model`` is the argument given to the run, ``folder`` the local folder it resolved to.
    """
    context = context or {}
    front_matter = read_front_matter(folder / "README.md") if folder is not None else {}
    if front_matter.get("license"):
        license_id, source = front_matter["license"], "README.md front matter of the base model"
    elif model in BUNDLED_SOURCES:
        license_id, source = BUNDLED_SOURCES[model][1], f"the {BUNDLED_SOURCES[model][0]} model card"
    else:
        license_id, source = "other", "unknown: the base model folder has no licence in its README.md"
    return BaseModelInfo(base_model=_hub_id(model, folder, context), license=license_id, license_source=source)
