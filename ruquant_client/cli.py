"""``ruquant-client``: submit a batch file, read, wait for and cancel jobs.

Usage::

    ruquant-client submit jobs.yaml        # prints one job id per line
    ruquant-client status ID
    ruquant-client wait ID [ID...] [--timeout S]
    ruquant-client cancel ID

The service URL and key come from ``--url``/``--api-key`` or ``RUQUANT_URL``/``RUQUANT_API_KEY``.

A batch file contains ``jobs:`` (a list of job requests, the same fields as the API body) and an
optional ``defaults:`` mapping merged under each entry. Each entry is validated before anything
is sent, and gets an idempotency key derived from its content, so running ``submit`` again
after a failure submits no job twice.

Exit codes:
    0  success (``wait``: every job succeeded)
    1  ``wait``: at least one job failed or was cancelled
    2  usage error, unreadable or invalid batch file, or a request the service rejected (4xx)
    3  authentication failed (401)
    4  job not found (404)
    5  service unreachable or failing (connection errors, 5xx, 429) after all retries
    6  ``wait`` timed out
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from ruquant_client.client import Client, ClientError, RetryPolicy, idempotency_key_for

__all__ = ["EXIT_CODES", "load_batch", "main"]

EXIT_CODES = {
    "ok": 0,
    "job_failed": 1,
    "usage": 2,
    "auth": 3,
    "not_found": 4,
    "unavailable": 5,
    "timeout": 6,
}


class BatchError(Exception):
    """The batch file cannot be read or an entry is invalid."""


def load_batch(path: Path) -> list[dict[str, Any]]:
    """Read and validate a batch file; return its job entries with defaults merged in."""
    from service.jobs.request import JobRequest

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as error:
        raise BatchError(f"cannot read {path}: {error}") from error
    if isinstance(data, list):
        data = {"jobs": data}
    if not isinstance(data, dict) or not isinstance(data.get("jobs"), list):
        raise BatchError(f"{path}: expected a 'jobs:' list")
    unknown = set(data) - {"jobs", "defaults"}
    if unknown:
        raise BatchError(f"{path}: unknown top-level keys {sorted(unknown)}")
    defaults = data.get("defaults") or {}
    entries = []
    for index, entry in enumerate(data["jobs"]):
        if not isinstance(entry, dict):
            raise BatchError(f"{path}: jobs[{index}] is not a mapping")
        merged = {**defaults, **entry}
        try:
            JobRequest.model_validate(merged)
        except ValidationError as error:
            problems = "; ".join(
                f"{'.'.join(map(str, e['loc'])) or 'entry'}: {e['msg']}" for e in error.errors()
            )
            raise BatchError(f"{path}: jobs[{index}] is invalid: {problems}") from error
        entries.append(merged)
    return entries


def _exit_code(error: ClientError) -> int:
    if error.status is None or error.status >= 500 or error.status == 429:
        return EXIT_CODES["unavailable"]
    if error.status == 401:
        return EXIT_CODES["auth"]
    if error.status == 404:
        return EXIT_CODES["not_found"]
    return EXIT_CODES["usage"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ruquant-client",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--url",
        default=os.environ.get("RUQUANT_URL", "http://127.0.0.1:8000"),
        help="Service base URL (env RUQUANT_URL).",
    )
    parser.add_argument(
        "--api-key",
        default=os.environ.get("RUQUANT_API_KEY"),
        help="API key (env RUQUANT_API_KEY).",
    )
    parser.add_argument(
        "--retries",
        type=int,
        default=5,
        help="Retries of connection errors, 429 and 5xx (backoff from 0.5 s, doubling).",
    )

    commands = parser.add_subparsers(dest="command", required=True)
    submit = commands.add_parser("submit", help="Submit every job of a batch file.")
    submit.add_argument("batch", type=Path)
    submit.add_argument(
        "--key-prefix",
        default="",
        help="Prefix of the derived idempotency keys; change it to resubmit.",
    )

    status = commands.add_parser("status", help="Print a job as JSON.")
    status.add_argument("job_id")

    wait = commands.add_parser("wait", help="Wait until the jobs end; print one line per job.")
    wait.add_argument("job_ids", nargs="+")
    wait.add_argument("--timeout", type=float, default=None, help="Give up after S seconds.")
    wait.add_argument("--poll", type=float, default=10.0, help="Seconds between polls.")

    cancel = commands.add_parser("cancel", help="Cancel a job.")
    cancel.add_argument("job_id")
    return parser


def _run(args: argparse.Namespace, client: Client) -> int:
    if args.command == "submit":
        for entry in load_batch(args.batch):
            job = client.submit(
                entry, idempotency_key=idempotency_key_for(entry, prefix=args.key_prefix)
            )
            sys.stdout.write(f"{job['id']}\n")
        return EXIT_CODES["ok"]
    if args.command == "status":
        sys.stdout.write(json.dumps(client.get(args.job_id), indent=2) + "\n")
        return EXIT_CODES["ok"]
    if args.command == "cancel":
        sys.stdout.write(f"{args.job_id}\t{client.cancel(args.job_id)['state']}\n")
        return EXIT_CODES["ok"]
    jobs = client.wait(args.job_ids, poll_s=args.poll, timeout_s=args.timeout)
    for job_id, job in jobs.items():
        error = job.get("error") or {}
        sys.stdout.write(f"{job_id}\t{job['state']}\t{error.get('code') or ''}\n")
    failed = any(job["state"] != "succeeded" for job in jobs.values())
    return EXIT_CODES["job_failed"] if failed else EXIT_CODES["ok"]


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command and return its exit code (see the module docstring)."""
    args = _parser().parse_args(argv)
    if not args.api_key:
        sys.stderr.write("no API key: pass --api-key or set RUQUANT_API_KEY\n")
        return EXIT_CODES["usage"]
    try:
        with Client(args.url, args.api_key, retry=RetryPolicy(attempts=args.retries + 1)) as client:
            return _run(args, client)
    except BatchError as error:
        sys.stderr.write(f"{error}\n")
        return EXIT_CODES["usage"]
    except ClientError as error:
        sys.stderr.write(f"{error}\n")
        return _exit_code(error)
    except TimeoutError as error:
        sys.stderr.write(f"{error}\n")
        return EXIT_CODES["timeout"]


if __name__ == "__main__":
    raise SystemExit(main())
