"""Pre-flight checks: everything that can fail a job before download and GPU time.

Each failure is a :class:`JobError` with a stable code and a message that states the next step.
"""

from __future__ import annotations

import fnmatch
import shutil
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Protocol

from service.jobs.datasets import unknown_datasets
from service.jobs.request import JobRequest, default_target_repo
from service.settings import Settings
from worker.errors import JobError
from worker.hub_gateway import Identity, SourceInfo

__all__ = [
    "SUPPORTED_ARCHITECTURES",
    "Plan",
    "check_block_size",
    "check_config",
    "check_datasets",
    "download_patterns",
    "job_branch",
    "preflight",
    "weight_files",
]

SUPPORTED_ARCHITECTURES = frozenset({"LlamaForCausalLM", "MistralForCausalLM", "Qwen2ForCausalLM"})

_SAFETENSORS = ("*.safetensors",)
_PICKLES = ("*.bin", "*.pt", "*.pth", "*.ckpt", "*.pkl")
# Config, tokenizer and generation files copied next to the quantized weights.
_METADATA = ("*.json", "*.model", "*.txt", "*.tiktoken", "LICENSE*", "README.md")
# PEFT names its weights adapter_model.safetensors or adapter_model.bin.
_ADAPTER_PREFIX = "adapter_model."
# config.json fields the library reads to find every transformed width.
_WIDTH_FIELDS = ("hidden_size", "intermediate_size", "num_attention_heads")


class SourceHub(Protocol):
    """The Hub calls pre-flight needs (implemented by ``HubGateway``)."""

    def inspect_source(self, model_id: str, revision: str | None, work_dir: Path) -> SourceInfo:
        """Return the source model's commit, files and config."""

    def identity(self) -> Identity:
        """Return the token's owner."""

    def repo_exists(self, repo_id: str) -> bool:
        """Return whether ``repo_id`` exists."""


@dataclass(frozen=True)
class Plan:
    """Download source and push target of a job."""

    source_sha: str
    size_bytes: int
    download_patterns: list[str]
    target_repo: str
    target_revision: str
    target_exists: bool


def job_branch(job_id: str) -> str:
    """Return the branch a ``new_revision`` job pushes to."""
    return f"ruquant-{job_id[:12]}"


def _matching(files: dict[str, int], patterns: tuple[str, ...]) -> dict[str, int]:
    return {
        name: size
        for name, size in files.items()
        if any(fnmatch.fnmatch(name.rsplit("/", 1)[-1], pattern) for pattern in patterns)
    }


def weight_files(files: dict[str, int], *, allow_pickle: bool) -> tuple[dict[str, int], str]:
    """Return the weight files the job will load and their format (``safetensors``/``pickle``).

    PEFT adapter weights (``adapter_model.*``) do not count: a repository with only those is an
    adapter, not a model.
    """
    model_files = {
        name: size
        for name, size in files.items()
        if not name.rsplit("/", 1)[-1].startswith(_ADAPTER_PREFIX)
    }
    safetensors = _matching(model_files, _SAFETENSORS)
    if safetensors:
        return safetensors, "safetensors"
    pickles = _matching(model_files, _PICKLES)
    if pickles and allow_pickle:
        return pickles, "pickle"
    if pickles:
        raise JobError(
            "pickle_weights",
            "The source has weights only in pickle format (.bin/.pt), which this service does "
            "not load: convert them to safetensors, or ask the operator to allow pickles.",
        )
    if "adapter_config.json" in files:
        raise JobError(
            "adapter_only",
            "The source is an adapter (PEFT/LoRA) without base weights: merge the adapter into "
            "its base model and submit the merged repository.",
        )
    raise JobError("no_weights", "The source repository has no safetensors or pickle weights.")


def download_patterns(weight_format: str) -> list[str]:
    """Return the ``allow_patterns`` of the download for the chosen weight format."""
    weights = _SAFETENSORS if weight_format == "safetensors" else _PICKLES
    return [*_METADATA, *weights]


def check_config(config: dict[str, Any] | None, files: dict[str, int], request: JobRequest) -> None:
    """Reject an adapter-only repository, an unsupported architecture and custom code."""
    if config is None:
        if "adapter_config.json" in files:
            raise JobError(
                "adapter_only",
                "The source is an adapter (PEFT/LoRA) without config.json: merge the adapter "
                "into its base model and submit the merged repository.",
            )
        raise JobError("missing_config", "The source repository has no config.json.")
    if "auto_map" in config and not request.trust_remote_code:
        raise JobError(
            "trust_remote_code_required",
            "The source config names custom modeling code (auto_map): resubmit with "
            "trust_remote_code=true if you trust that repository.",
        )
    architectures = config.get("architectures") or []
    supported = sorted(SUPPORTED_ARCHITECTURES)
    if not any(name in SUPPORTED_ARCHITECTURES for name in architectures):
        raise JobError(
            "unsupported_architecture",
            f"Architecture {architectures or 'unknown'} is not supported; supported: {supported}.",
        )


def check_block_size(config: dict[str, Any], request: JobRequest) -> None:
    """Reject a model whose transformed widths the requested block size does not fit.

    The library's own rule decides, so pre-flight and the run cannot disagree: ``auto`` needs a
    power of two >= 2 dividing every width, and an explicit size must divide them all. The
    library is imported here, in the job's child process, to keep torch out of the parent.
    """
    from ruquant.errors import BlockSizeError
    from ruquant.pipeline import resolve_model_block_size

    missing = [name for name in _WIDTH_FIELDS if not isinstance(config.get(name), int)]
    if missing:
        raise JobError(
            "invalid_config",
            f"The source config.json has no integer {', '.join(missing)}: check that the "
            "repository holds a complete transformers model.",
        )
    try:
        resolve_model_block_size(SimpleNamespace(**config), request.quant)
    except BlockSizeError as error:
        raise JobError(
            "block_size",
            f"{error}. Methods 'rtn' and 'smoothquant' have no block transform and fit any width.",
        ) from error


def check_datasets(request: JobRequest, settings: Settings) -> None:
    """Reject data set names this worker does not offer (its settings changed since submit)."""
    unknown = unknown_datasets(request, settings.dataset_names)
    if unknown:
        raise JobError(
            "unknown_dataset",
            "; ".join(f"{'.'.join(u.field)}: {u.message}" for u in unknown)
            + ". Resubmit the job with a data set this service offers.",
        )
    names = [request.calibration.data]
    if request.evaluation is not None:
        names.append(request.evaluation.data)
    for name in names:
        path = settings.datasets.get(name)
        if path is not None and not path.is_file():
            raise JobError(
                "dataset_missing",
                f"Data set {name!r} is configured as {str(path)!r}, which is not a file on "
                "this worker: ask the operator to fix RUQUANT_DATASETS.",
            )


def _check_size(size_bytes: int, settings: Settings) -> None:
    gib = 1024**3
    if size_bytes > settings.max_model_bytes:
        raise JobError(
            "model_too_large",
            f"The checkpoint is {size_bytes / gib:.1f} GiB, above this service's limit of "
            f"{settings.max_model_bytes / gib:.1f} GiB.",
        )
    settings.work_dir.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(settings.work_dir).free
    needed = int(size_bytes * settings.disk_headroom)
    if needed > free:
        raise JobError(
            "insufficient_disk",
            f"The worker needs {needed / gib:.1f} GiB of free disk for this model and has "
            f"{free / gib:.1f} GiB; retry later or use a worker with more disk.",
        )


def _target(hub: SourceHub, request: JobRequest) -> str:
    identity = hub.identity()
    target = request.target_repo or default_target_repo(
        identity.name, request.model_id, request.preset_name
    )
    namespace = target.split("/")[0]
    if namespace != identity.name and namespace not in identity.orgs:
        raise JobError(
            "namespace_forbidden",
            f"The token of {identity.name!r} cannot write to namespace {namespace!r}: use your "
            "own namespace or an organisation you belong to.",
        )
    if not identity.can_write:
        raise JobError(
            "token_read_only", "The Hub token is read-only: send a token with write access."
        )
    return target


def preflight(
    hub: SourceHub,
    request: JobRequest,
    settings: Settings,
    *,
    job_id: str,
    scratch_dir: Path,
    earlier_revision: str | None = None,
) -> Plan:
    """Run every check and return the plan, or raise the first :class:`JobError`.

    ``earlier_revision`` is the target revision an earlier run of this same job chose before it
    created the target. The target then does not count as "already exists", and the run pushes
    to the same revision, so a requeued job still makes at most one commit.
    """
    check_datasets(request, settings)
    target = _target(hub, request)
    source = hub.inspect_source(request.model_id, request.revision, scratch_dir)
    check_config(source.config, source.files, request)
    assert source.config is not None  # check_config raised otherwise
    check_block_size(source.config, request)
    weights, weight_format = weight_files(source.files, allow_pickle=settings.allow_pickle_weights)
    size = sum(weights.values())
    _check_size(size, settings)

    exists = hub.repo_exists(target)
    if exists and earlier_revision is None and request.if_exists == "fail":
        raise JobError(
            "target_exists",
            f"{target} already exists: choose another target_repo, or set if_exists to "
            "'new_revision' or 'overwrite'.",
        )
    if earlier_revision is not None:
        revision = earlier_revision
    elif exists and request.if_exists == "new_revision":
        revision = job_branch(job_id)
    else:
        revision = "main"
    return Plan(
        source_sha=source.sha,
        size_bytes=size,
        download_patterns=download_patterns(weight_format),
        target_repo=target,
        target_revision=revision,
        target_exists=exists,
    )
