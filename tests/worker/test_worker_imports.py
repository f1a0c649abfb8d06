"""The Celery parent process imports no torch, so no CUDA state exists before it forks a job child."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.service.fixtures import TEST_SECRET
from tests.worker.processes import REPO_ROOT


def test_worker_app_keeps_torch_out(tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "import worker.app\n"
        "print(','.join(m for m in ('torch', 'transformers') if m in sys.modules))\n"
    )
    env = {"RUQUANT_SECRET_KEY": TEST_SECRET, "RUQUANT_WORK_DIR": str(tmp_path), "PATH": "/usr/bin"}
    result = subprocess.run(
        [sys.executable, "-W", "ignore", "-c", code],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert result.stdout.strip() == ""
