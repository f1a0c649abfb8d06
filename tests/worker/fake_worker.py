"""Start a real Celery worker whose quantizer is the fake one (plumbing tests only).

The patch is made in the worker's parent before any child is forked, so every job child runs
the fake quantizer. Everything else is the real code: Celery, the broker, the store, the
pipeline, and the Hub client talking to a local Hub.
"""

from __future__ import annotations

import sys

from tests.worker.fakes import fake_quantize
from worker import pipeline

pipeline.DEFAULT_STAGES = pipeline.Stages(hub=pipeline.DEFAULT_STAGES.hub, quantize=fake_quantize)

if __name__ == "__main__":
    from worker.main import main

    raise SystemExit(main(sys.argv[1:]))
