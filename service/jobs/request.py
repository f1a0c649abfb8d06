"""The job request: one pydantic model for the HTTP body, the stored job and the batch file.

It nests the library's own ``QuantConfig``, ``CalibrationConfig`` and ``EvaluationConfig``, so a
request the API accepts is a configuration the library accepts, and unknown fields are rejected
at every level.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from ruquant.config import PRESETS, CalibrationConfig, EvaluationConfig, QuantConfig, RunConfig

__all__ = [
    "IfExists",
    "JobRequest",
    "PresetName",
    "default_target_repo",
    "validate_repo_id",
]

PresetName = Literal["W4A4", "W6A6", "W8A8", "W4A16"]
IfExists = Literal["fail", "new_revision", "overwrite"]

# Hub repository names: letters, digits, '-', '_', '.', at most 96 characters, no '--' or '..',
# not starting or ending with '-' or '.', and not ending in '.git' (huggingface_hub's own rules).
_NAME_RE = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9_])?$")
_REVISION_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,199}$")

# The library also reads calibration and evaluation text from local paths, but a service request
# may only name a data set the workers provide (see Settings.datasets), never a path on a worker.
_DATASET_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")


def validate_repo_id(value: str, *, namespace_required: bool) -> str:
    """Return ``value`` if it is a valid Hub model id, else raise ``ValueError`` saying why."""
    parts = value.split("/")
    if len(parts) > 2 or (namespace_required and len(parts) != 2):
        form = "'namespace/name'" if namespace_required else "'name' or 'namespace/name'"
        raise ValueError(f"repository id {value!r} must have the form {form}")
    for part in parts:
        if not _NAME_RE.match(part) or "--" in part or ".." in part or part.endswith(".git"):
            raise ValueError(
                f"repository id {value!r} is invalid: each part uses letters, digits, '-', '_' "
                "and '.', at most 96 characters, with no '--' or '..'"
            )
    return value


def default_target_repo(namespace: str, model_id: str, preset: str) -> str:
    """Return ``<namespace>/<model-name>-RUQuant-<preset>``, trimmed to the Hub's name limit."""
    suffix = f"-RUQuant-{preset}"
    model_name = model_id.split("/")[-1][: 96 - len(suffix)]
    return f"{namespace}/{model_name}{suffix}"


class JobRequest(BaseModel):
    """A request to quantize one Hub model and push the result to the Hub."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        json_schema_extra={
            "examples": [
                {"model_id": "HuggingFaceTB/SmolLM2-135M", "preset": "W4A4"},
                {
                    "model_id": "Qwen/Qwen2.5-0.5B",
                    "revision": "main",
                    "quant": {"w_bits": 6, "a_bits": 6, "stage2": True},
                    "calibration": {"samples": 64, "seq_len": 1024},
                    "evaluation": {"seq_len": 1024, "windows": 40},
                    "target_repo": "my-org/Qwen2.5-0.5B-RUQuant-W6A6",
                    "private": True,
                    "if_exists": "new_revision",
                },
            ]
        },
    )

    model_id: str = Field(..., description="Source model repository on the Hub.")
    revision: str | None = Field(None, description="Branch, tag or commit of the source model.")
    preset: PresetName | None = Field(
        None, description="Bit preset; sets quant.w_bits and quant.a_bits (default W4A4)."
    )
    quant: QuantConfig = Field(
        default_factory=QuantConfig,
        description="Method and quantizer options; unset fields keep the published defaults.",
    )
    calibration: CalibrationConfig = Field(default_factory=CalibrationConfig)
    evaluation: EvaluationConfig | None = Field(
        default_factory=EvaluationConfig, description="Perplexity evaluation; null skips it."
    )
    target_repo: str | None = Field(
        None,
        description="Repository to push to; default <token owner>/<model name>-RUQuant-<preset>.",
    )
    private: bool = Field(True, description="Create the target repository as private.")
    if_exists: IfExists = Field(
        "fail",
        description="When the target exists: 'fail', 'new_revision' (push to a new branch named "
        "after the job) or 'overwrite' (replace the files on main in one commit).",
    )
    trust_remote_code: bool = Field(
        False, description="Accept a source repository whose config names custom code."
    )
    hub_token: SecretStr | None = Field(
        None,
        exclude=True,
        description="Hub token for this job; default is the service's token. Never returned.",
    )

    @field_validator("model_id")
    @classmethod
    def _check_model_id(cls, value: str) -> str:
        return validate_repo_id(value, namespace_required=False)

    @field_validator("target_repo")
    @classmethod
    def _check_target_repo(cls, value: str | None) -> str | None:
        return None if value is None else validate_repo_id(value, namespace_required=True)

    @field_validator("revision")
    @classmethod
    def _check_revision(cls, value: str | None) -> str | None:
        if value is not None and (not _REVISION_RE.match(value) or ".." in value):
            raise ValueError(f"revision {value!r} is not a valid branch, tag or commit name")
        return value

    @field_validator("calibration", "evaluation")
    @classmethod
    def _check_data(cls, value: Any) -> Any:
        if value is not None and not _DATASET_NAME_RE.match(value.data):
            raise ValueError(
                f"data {value.data!r} is not a data set name: use 'wikitext2' or a name the "
                "service offers (letters, digits, '-' and '_'); paths are not accepted"
            )
        return value

    @model_validator(mode="after")
    def _apply_preset(self) -> JobRequest:
        if self.preset is None:
            return self
        w_bits, a_bits = PRESETS[self.preset]
        explicit = self.quant.model_fields_set
        for name, preset_value in (("w_bits", w_bits), ("a_bits", a_bits)):
            given = getattr(self.quant, name)
            if name in explicit and given != preset_value:
                raise ValueError(
                    f"preset {self.preset} sets quant.{name}={preset_value} but the request "
                    f"gives quant.{name}={given}: drop one of them"
                )
        quant = QuantConfig.model_validate(
            {**self.quant.model_dump(exclude_unset=True), "w_bits": w_bits, "a_bits": a_bits}
        )
        object.__setattr__(self, "quant", quant)
        return self

    @property
    def preset_name(self) -> str:
        """Bit preset of the resolved configuration, such as ``W4A4``."""
        return self.quant.preset

    def run_config(self) -> RunConfig:
        """Return the library configuration this request runs with."""
        return RunConfig(quant=self.quant, calibration=self.calibration, evaluation=self.evaluation)

    def stored_dict(self) -> dict[str, Any]:
        """Return the request as JSON-ready data without the Hub token."""
        return self.model_dump(mode="json")

    def fingerprint(self) -> str:
        """Return a SHA-256 of the canonical request (token excluded) for idempotency checks."""
        canonical = json.dumps(self.stored_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()
