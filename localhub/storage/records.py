"""Records kept on disk for each repository: settings, refs and commits, with their JSON forms."""

from __future__ import annotations

import enum
import hashlib
import json
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

__all__ = [
    "Commit",
    "FileEntry",
    "GateMode",
    "Refs",
    "RepoSettings",
    "RepoType",
    "commit_oid",
    "utc_timestamp",
]


class RepoType(enum.StrEnum):
    """Repository kinds this server stores."""

    MODEL = "model"
    DATASET = "dataset"

    @property
    def url_prefix(self) -> str:
        """Path prefix of the repository's web and resolve URLs (models have none)."""
        return "" if self is RepoType.MODEL else f"{self.value}s/"

    @property
    def api_collection(self) -> str:
        """Collection name in `/api/{collection}/{repo_id}` routes."""
        return f"{self.value}s"


class GateMode(enum.StrEnum):
    """Access-request mode of a gated repository on the real Hub.

    This server grants access only through its admin CLI (`localhub grant`), whatever the mode.
    The mode is stored and reported so clients see the value they set.
    """

    AUTO = "auto"
    MANUAL = "manual"


def utc_timestamp(moment: datetime | None = None) -> str:
    """Format `moment` (default: now) as the Hub does: ``2024-05-01T12:00:00.000Z``."""
    moment = moment or datetime.now(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


@dataclass(frozen=True)
class FileEntry:
    """One file of a commit's tree: where its bytes are and how git identifies it."""

    sha256: str
    size: int
    lfs: bool
    git_oid: str


@dataclass(frozen=True)
class Commit:
    """A commit with its whole tree as a flat `path -> FileEntry` map."""

    oid: str
    parents: tuple[str, ...]
    files: dict[str, FileEntry]
    summary: str
    description: str
    author: str
    date: str

    def to_json(self) -> str:
        """Serialize the commit for storage."""
        payload = asdict(self)
        payload["parents"] = list(self.parents)
        return json.dumps(payload, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Commit:
        """Parse a commit written by `to_json`."""
        payload = json.loads(text)
        return cls(
            oid=payload["oid"],
            parents=tuple(payload["parents"]),
            files={path: FileEntry(**entry) for path, entry in payload["files"].items()},
            summary=payload["summary"],
            description=payload["description"],
            author=payload["author"],
            date=payload["date"],
        )


def commit_oid(
    *,
    parents: tuple[str, ...],
    files: dict[str, FileEntry],
    summary: str,
    description: str,
    author: str,
    date: str,
) -> str:
    """Return a 40-hex commit id derived from everything the commit records.

    Like a git commit id it changes with the tree, the parents, the message, the author and the
    date, but it is not git's byte-for-byte commit hash.
    """
    content = {
        "parents": list(parents),
        "files": {path: asdict(entry) for path, entry in sorted(files.items())},
        "summary": summary,
        "description": description,
        "author": author,
        "date": date,
    }
    encoded = json.dumps(content, sort_keys=True).encode()
    return hashlib.sha1(encoded, usedforsecurity=False).hexdigest()


@dataclass
class RepoSettings:
    """Visibility, gating and ownership of one repository."""

    repo_type: RepoType
    repo_id: str
    private: bool
    created_at: str
    created_by: str
    gated: GateMode | None = None
    gated_access: list[str] = field(default_factory=list)

    @property
    def namespace(self) -> str:
        """User or organization that owns the repository."""
        return self.repo_id.split("/", 1)[0]

    def to_json(self) -> str:
        """Serialize the settings for storage."""
        payload: dict[str, Any] = asdict(self)
        payload["repo_type"] = self.repo_type.value
        payload["gated"] = self.gated.value if self.gated is not None else None
        return json.dumps(payload, indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> RepoSettings:
        """Parse settings written by `to_json`."""
        payload = json.loads(text)
        gated = payload.get("gated")
        return cls(
            repo_type=RepoType(payload["repo_type"]),
            repo_id=payload["repo_id"],
            private=bool(payload["private"]),
            created_at=payload["created_at"],
            created_by=payload["created_by"],
            gated=GateMode(gated) if gated else None,
            gated_access=list(payload.get("gated_access", [])),
        )


@dataclass
class Refs:
    """Branches, tags and pull-request refs of one repository, each naming a commit id."""

    branches: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    pulls: dict[int, str] = field(default_factory=dict)

    def to_json(self) -> str:
        """Serialize the refs for storage."""
        payload = {
            "branches": self.branches,
            "tags": self.tags,
            "pulls": {str(number): oid for number, oid in self.pulls.items()},
        }
        return json.dumps(payload, indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Refs:
        """Parse refs written by `to_json`."""
        payload = json.loads(text)
        return cls(
            branches=dict(payload["branches"]),
            tags=dict(payload["tags"]),
            pulls={int(number): oid for number, oid in payload["pulls"].items()},
        )
