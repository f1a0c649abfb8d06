"""docker-compose.yml and the Dockerfiles: they parse, and everything they name exists here.

No Docker engine runs in CI, so these checks stand in for ``docker compose config`` and a build:
build contexts, Dockerfiles and the files they copy, bind-mounted paths, named volumes, the
commands each container runs, and the ``RUQUANT_*`` variables the settings read.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from service.settings import Settings

REPO_ROOT = Path(__file__).resolve().parents[2]
COMPOSE = REPO_ROOT / "docker-compose.yml"
PYPROJECT = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
SCRIPTS: dict[str, str] = PYPROJECT["project"]["scripts"]
# Programs that come with a third-party image rather than this repository.
IMAGE_PROGRAMS = {"redis-server", "redis-cli", "pg_isready"}
_DEFAULT_RE = re.compile(r"^\$\{[A-Z_]+:-([^}]+)\}")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return loaded


def _mount_source(volume: str) -> str:
    """Return the source part of a short volume entry (``source:target[:mode]``)."""
    if volume.startswith("${"):
        return volume[: volume.index("}") + 1]
    return volume.split(":")[0]


def _host_path(source: str) -> Path | None:
    """Return the repository path of a bind-mount source (``./x`` or ``${VAR:-./x}``), else None."""
    match = _DEFAULT_RE.match(source)
    source = match.group(1) if match else source
    if source.startswith(("./", "../")):
        return (REPO_ROOT / source).resolve()
    return None


def _check_command(argv: list[str]) -> None:
    """Assert that the program of ``argv`` and the Python object it starts exist."""
    program = argv[0]
    if program in SCRIPTS:
        module, _, attribute = SCRIPTS[program].partition(":")
        assert callable(getattr(importlib.import_module(module), attribute)), argv
    elif program == "uvicorn":
        target = argv[argv.index("--factory") + 1]
        module, _, attribute = target.partition(":")
        assert callable(getattr(importlib.import_module(module), attribute)), argv
    elif program in ("python", "python3") and argv[1] == "-m":
        assert importlib.util.find_spec(argv[2]) is not None, argv
    elif program in ("python", "python3") and argv[1] == "-c":
        compile(argv[2], "<command>", "exec")
    else:
        assert program in IMAGE_PROGRAMS, f"unknown program in {argv}"


def _dockerfile_lines(path: Path) -> list[str]:
    """Return the instructions of a Dockerfile with continuation lines joined."""
    text = re.sub(r"\\\n\s*", " ", path.read_text())
    return [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]


def test_services_and_roles(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) == {"redis", "postgres", "api", "worker", "localhub"}
    assert services["redis"]["command"][:3] == ["redis-server", "--appendonly", "yes"]
    assert "redis-data:/data" in services["redis"]["volumes"]
    assert "postgres-data:/var/lib/postgresql/data" in services["postgres"]["volumes"]
    devices = services["worker"]["deploy"]["resources"]["reservations"]["devices"]
    assert devices == [{"driver": "nvidia", "device_ids": ["0"], "capabilities": ["gpu"]}]
    assert services["localhub"]["profiles"] == ["localhub"]
    for name in ("api", "worker"):
        environment = services[name]["environment"]
        assert environment["RUQUANT_BROKER_URL"].startswith("redis://redis:")
        assert environment["RUQUANT_DATABASE_URL"].startswith("postgresql+psycopg://")
        assert environment["RUQUANT_ENVIRONMENT"] == "production"


def test_environment_names_are_settings(compose: dict[str, Any]) -> None:
    fields = {f"RUQUANT_{name.upper()}" for name in Settings.model_fields}
    for name, service in compose["services"].items():
        for variable in service.get("environment", {}):
            if variable.startswith("RUQUANT_"):
                assert variable in fields, f"{name}: {variable} is not a setting"


def test_required_variables_documented(compose: dict[str, Any]) -> None:
    required = set(re.findall(r"\$\{([A-Z_]+):\?", COMPOSE.read_text()))
    assert required == {"POSTGRES_PASSWORD", "RUQUANT_SECRET_KEY"}
    example = (REPO_ROOT / "docker" / "env.example").read_text()
    for variable in required:
        assert re.search(rf"^{variable}=", example, re.MULTILINE), variable


def test_builds_and_copied_files_exist(compose: dict[str, Any]) -> None:
    builds = [service["build"] for service in compose["services"].values() if "build" in service]
    assert builds
    for build in builds:
        context = REPO_ROOT / build["context"]
        dockerfile = context / build["dockerfile"]
        assert dockerfile.is_file(), dockerfile
        lines = _dockerfile_lines(dockerfile)
        assert any(line.startswith("FROM ") for line in lines), dockerfile
        for line in lines:
            if line.startswith("COPY "):
                sources = shlex.split(line)[1:-1]
                for source in sources:
                    assert (context / source).exists(), f"{dockerfile.name}: {source}"


def test_external_images_pinned(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        if "build" in service:
            continue
        image = service["image"]
        assert ":" in image, f"{name}: {image} has no tag"
        assert not image.endswith(":latest"), f"{name}: {image}"


def test_commands_exist(compose: dict[str, Any]) -> None:
    for service in compose["services"].values():
        if "command" in service:
            _check_command(service["command"])
        for test in [service.get("healthcheck", {}).get("test", [])]:
            if test and test[0] == "CMD":
                _check_command(test[1:])
    for dockerfile in (REPO_ROOT / "docker").glob("Dockerfile.*"):
        for line in _dockerfile_lines(dockerfile):
            if line.startswith("CMD ["):
                _check_command(json.loads(line.removeprefix("CMD ")))


def test_mounts_and_volumes_exist(compose: dict[str, Any]) -> None:
    declared = set(compose["volumes"])
    for name, service in compose["services"].items():
        for volume in service.get("volumes", []):
            source = _mount_source(volume)
            host = _host_path(source)
            if host is not None:
                assert host.exists(), f"{name}: {source} does not exist"
            else:
                assert source in declared, f"{name}: volume {source} is not declared"
        for env_file in service.get("env_file", []):
            assert env_file["required"] is False, f"{name}: {env_file}"


def test_api_image_installs_no_torch() -> None:
    result = subprocess.run(
        [sys.executable, "docker/requirements.py", "--core", "pydantic", "--extra", "service"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    names = {re.split(r"[<>=\[ ]", line)[0].lower() for line in result.stdout.splitlines()}
    assert "pydantic" in names
    assert "fastapi" in names
    assert not names & {"torch", "transformers", "accelerate", "datasets"}
    torch_pin = subprocess.run(
        [sys.executable, "docker/requirements.py", "--core", "torch"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert torch_pin in PYPROJECT["project"]["dependencies"]


def _compose_cli() -> bool:
    if shutil.which("docker") is None:
        return False
    version = subprocess.run(["docker", "compose", "version"], capture_output=True, check=False)
    return version.returncode == 0


@pytest.mark.skipif(not _compose_cli(), reason="the docker compose CLI plugin is not installed")
def test_docker_compose_config() -> None:
    env = {**os.environ, "POSTGRES_PASSWORD": "x", "RUQUANT_SECRET_KEY": "y"}
    subprocess.run(
        ["docker", "compose", "-f", str(COMPOSE), "config", "--quiet"],
        cwd=REPO_ROOT,
        env=env,
        check=True,
    )
