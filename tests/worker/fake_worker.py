"""Start a real Celery worker whose Hub and quantizer are the fakes (plumbing tests only).

The patch is made in the worker's parent before any child is forked, so every job child runs
the fakes; everything else (Celery, the broker, the store, the pipeline) is the real code.
"""

from __future__ import annotations

import sys

from tests.worker.fakes import FakeHub, fake_quantize
from worker import pipeline

pipeline.DEFAULT_STAGES = pipeline.Stages(hub=FakeHub, quantize=fake_quantize)  # type: ignore[arg-type]

if __name__ == "__main__":
    from worker.main import main

    raise SystemExit(main(sys.argv[1:]))
