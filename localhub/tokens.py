"""Access tokens: a JSON or YAML file mapping each token to its user, orgs and role.

Example file (JSON; YAML with the same structure works when the name ends in .yaml or .yml)::

    {
      "hf_local_alice_write": {"user": "alice", "orgs": ["ruquant"], "role": "write"},
      "hf_local_bob_read": {"user": "bob", "role": "read", "name": "bob-ci"}
    }

`orgs` defaults to none, `role` to read and `name` (shown by whoami) to `<user>-<role>`.
The server rereads the file when it changes, so tokens added by `localhub add-token` work
without a restart. Tokens never appear in logs or error messages.
"""

from __future__ import annotations

import enum
import json
import logging
import os
import re
import secrets
import string
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

__all__ = ["Role", "TokenRecord", "TokenTable", "add_token", "load_token_file", "new_token"]

logger = logging.getLogger(__name__)

_NAMESPACE_RE = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?")


class Role(enum.StrEnum):
    """Permission level of a token: read visible repositories, or also write to its namespaces."""

    READ = "read"
    WRITE = "write"


@dataclass(frozen=True)
class TokenRecord:
    """The identity a token stands for."""

    user: str
    orgs: tuple[str, ...]
    role: Role
    name: str


def _parse_record(index: int, raw: Any) -> TokenRecord:
    # Errors name the entry by its position rather than its token, so messages leak no token.
    where = f"token entry #{index + 1}"
    if not isinstance(raw, Mapping):
        raise ValueError(f"{where}: expected a mapping with 'user', 'orgs' and 'role'")
    user = raw.get("user")
    if not isinstance(user, str) or _NAMESPACE_RE.fullmatch(user) is None:
        raise ValueError(f"{where}: 'user' must be a valid user name, got {user!r}")
    orgs = raw.get("orgs", [])
    if not isinstance(orgs, list) or not all(isinstance(org, str) for org in orgs):
        raise ValueError(f"{where}: 'orgs' must be a list of organization names")
    role_value = raw.get("role", Role.READ.value)
    try:
        role = Role(role_value)
    except ValueError:
        raise ValueError(f"{where}: 'role' must be 'read' or 'write', got {role_value!r}") from None
    name = raw.get("name", f"{user}-{role.value}")
    if not isinstance(name, str):
        raise ValueError(f"{where}: 'name' must be a string")
    return TokenRecord(user=user, orgs=tuple(orgs), role=role, name=name)


def _parse_table(raw: Any) -> dict[str, TokenRecord]:
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise ValueError("token file must contain a mapping from token to {user, orgs, role}")
    table: dict[str, TokenRecord] = {}
    for index, (token, record) in enumerate(raw.items()):
        if not isinstance(token, str) or not token:
            raise ValueError(f"token entry #{index + 1}: the token must be a non-empty string")
        table[token] = _parse_record(index, record)
    return table


def _is_yaml(path: Path) -> bool:
    return path.suffix.lower() in (".yaml", ".yml")


def _read_raw(path: Path) -> Any:
    text = path.read_text("utf-8")
    return yaml.safe_load(text) if _is_yaml(path) else json.loads(text or "{}")


def load_token_file(path: Path | str) -> dict[str, TokenRecord]:
    """Read and validate a token file.

    Raises:
        ValueError: the file is not a valid token table.
    """
    return _parse_table(_read_raw(Path(path)))


def new_token() -> str:
    """Return a fresh random token: `hf_` followed by 34 random letters."""
    return "hf_" + "".join(secrets.choice(string.ascii_letters) for _ in range(34))


def add_token(
    path: Path | str,
    *,
    user: str,
    role: Role,
    orgs: tuple[str, ...] = (),
    name: str | None = None,
    token: str | None = None,
) -> str:
    """Add a token to the token file (created when missing) and return the token.

    A new random token is generated unless `token` is given.

    Raises:
        ValueError: the token is already in the file, or an argument is invalid.
    """
    path = Path(path)
    raw: dict[str, Any] = dict(_read_raw(path) or {}) if path.exists() else {}
    token = token or new_token()
    if token in raw:
        raise ValueError(f"this token is already in {path}")
    entry: dict[str, Any] = {"user": user, "orgs": list(orgs), "role": role.value}
    if name is not None:
        entry["name"] = name
    raw[token] = entry
    _parse_table(raw)  # Validate before writing.
    text = yaml.safe_dump(raw, sort_keys=True) if _is_yaml(path) else json.dumps(raw, indent=2)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    handle = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(handle, "w", encoding="utf-8") as file:
        file.write(text)
    os.replace(tmp, path)
    return token


class TokenTable:
    """Look up tokens, from a fixed mapping or from a file reread whenever it changes."""

    def __init__(
        self,
        records: Mapping[str, TokenRecord] | None = None,
        *,
        path: Path | None = None,
    ) -> None:
        self._records = dict(records or {})
        self._path = path
        self._mtime_ns: int | None = None
        self._failed_mtime_ns: int | None = None
        self._guard = threading.Lock()
        if path is not None:
            self._reload_if_changed()

    @classmethod
    def from_file(cls, path: Path | str) -> TokenTable:
        """Build a table backed by a token file, which must exist and be valid."""
        return cls(path=Path(path))

    @classmethod
    def from_mapping(cls, raw: Mapping[str, Any]) -> TokenTable:
        """Build a fixed table from a mapping in the token file format."""
        return cls(_parse_table(raw))

    def lookup(self, token: str) -> TokenRecord | None:
        """Return the record of `token`, or None when the token is unknown."""
        if self._path is not None:
            self._reload_if_changed()
        return self._records.get(token)

    def _reload_if_changed(self) -> None:
        assert self._path is not None
        with self._guard:
            try:
                mtime_ns = self._path.stat().st_mtime_ns
            except OSError:
                mtime_ns = -1  # A missing file counts as one more version that fails to load.
            if mtime_ns in (self._mtime_ns, self._failed_mtime_ns):
                return
            try:
                records = load_token_file(self._path)
            except (OSError, ValueError, yaml.YAMLError) as exc:
                if self._mtime_ns is None:
                    raise
                # A half-edited file must not lock everyone out: keep serving the last good
                # table, and log each broken version of the file once.
                self._failed_mtime_ns = mtime_ns
                logger.error("Keeping the previous tokens: cannot load %s: %s", self._path, exc)
                return
            self._records = records
            self._mtime_ns = mtime_ns
        logger.info("Loaded %d token(s) from %s", len(records), self._path)
