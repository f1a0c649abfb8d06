"""Optional zero-shot accuracy through lm-evaluation-harness (``lm_eval``) on the loaded checkpoint.

Nothing here is required: when ``lm_eval`` is not installed, or a task's data set cannot be
downloaded, the task is listed as skipped with the reason.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from collections.abc import Callable
from typing import Any

from torch import nn

__all__ = ["DEFAULT_TASKS", "TASKS_ENV", "requested_tasks", "run_zero_shot"]

logger = logging.getLogger(__name__)

# Comma-separated lm_eval task names; an empty value turns the zero-shot evaluation off.
TASKS_ENV = "RUQUANT_ZERO_SHOT_TASKS"
DEFAULT_TASKS = ("arc_easy", "piqa")


def requested_tasks() -> list[str]:
    """Return the tasks named by ``RUQUANT_ZERO_SHOT_TASKS``, or ``DEFAULT_TASKS`` when it is unset."""
    value = os.environ.get(TASKS_ENV)
    if value is None:
        return list(DEFAULT_TASKS)
    return [task.strip() for task in value.split(",") if task.strip()]


def run_zero_shot(
    load_model: Callable[[], nn.Module], tokenizer: Any, tasks: list[str], *, batch_size: int = 1
) -> dict[str, Any]:
    """Evaluate ``tasks`` zero-shot on the model ``load_model()`` returns (called only when lm_eval is installed).

    Returns ``{"tasks": [...], "ran": {task: metrics}, "skipped": {task: reason}}``.
    """
    outcome: dict[str, Any] = {"tasks": list(tasks), "ran": {}, "skipped": {}}
    if not tasks:
        outcome["skipped"]["*"] = f"no tasks requested ({TASKS_ENV} is empty)"
        return outcome
    if importlib.util.find_spec("lm_eval") is None:
        reason = "lm_eval is not installed (pip install lm-eval)"
        outcome["skipped"] = dict.fromkeys(tasks, reason)
        logger.info("zero-shot evaluation skipped: %s", reason)
        return outcome

    from lm_eval import simple_evaluate
    from lm_eval.models.huggingface import HFLM

    wrapped = HFLM(pretrained=load_model(), tokenizer=tokenizer, batch_size=batch_size)
    for task in tasks:
        try:
            results = simple_evaluate(model=wrapped, tasks=[task], num_fewshot=0)
        # lm_eval and datasets raise many unrelated types when a data set is unreachable or a task
        # is unknown. This optional step records the reason, so it never fails a finished run.
        except Exception as err:  # noqa: BLE001
            outcome["skipped"][task] = f"{type(err).__name__}: {err}"
            logger.warning("zero-shot task %s skipped: %s", task, outcome["skipped"][task])
            continue
        metrics = (results or {}).get("results", {}).get(task, {})
        outcome["ran"][task] = {key: value for key, value in metrics.items() if isinstance(value, int | float)}
        logger.info("zero-shot task %s: %s", task, outcome["ran"][task])
    return outcome
