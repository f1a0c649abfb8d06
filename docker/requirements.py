"""Print requirement lines from pyproject.toml, so the images install what the package declares.

    python docker/requirements.py --core pydantic --extra service   # the API image: no torch
    python docker/requirements.py --core torch                      # the worker's torch pin

``--core NAME`` picks one entry of ``[project] dependencies`` by distribution name, and
``--extra NAME`` every entry of that optional-dependency group. Exit code 2 when a name is absent.
"""

from __future__ import annotations

import argparse
import re
import sys
import tomllib
from collections.abc import Sequence
from pathlib import Path

__all__ = ["main", "requirement_name", "select_requirements"]

_NAME_RE = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")


def requirement_name(requirement: str) -> str:
    """Return the normalized distribution name of a requirement line (PEP 503)."""
    match = _NAME_RE.match(requirement)
    if match is None:
        raise ValueError(f"not a requirement: {requirement!r}")
    return re.sub(r"[-_.]+", "-", match.group(1)).lower()


def select_requirements(
    project: dict[str, object], core: list[str], extras: list[str]
) -> list[str]:
    """Return the named core requirements and every requirement of the named extras."""
    dependencies = [str(item) for item in project.get("dependencies", [])]  # type: ignore[attr-defined]
    optional: dict[str, list[str]] = project.get("optional-dependencies", {})  # type: ignore[assignment]
    by_name = {requirement_name(item): item for item in dependencies}
    selected = []
    for name in core:
        key = requirement_name(name)
        if key not in by_name:
            raise KeyError(f"{name!r} is not a core dependency in pyproject.toml")
        selected.append(by_name[key])
    for extra in extras:
        if extra not in optional:
            raise KeyError(f"{extra!r} is not an optional-dependency group in pyproject.toml")
        selected.extend(optional[extra])
    return selected


def main(argv: Sequence[str] | None = None) -> int:
    """Print the selected requirements, one a line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pyproject", type=Path, default=Path("pyproject.toml"))
    parser.add_argument("--core", action="append", default=[], help="A core dependency by name.")
    parser.add_argument("--extra", action="append", default=[], help="An optional group by name.")
    args = parser.parse_args(argv)
    project = tomllib.loads(args.pyproject.read_text(encoding="utf-8"))["project"]
    try:
        lines = select_requirements(project, args.core, args.extra)
    except KeyError as error:
        sys.stderr.write(f"{error.args[0]}\n")
        return 2
    sys.stdout.write("".join(f"{line}\n" for line in lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
