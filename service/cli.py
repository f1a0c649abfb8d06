"""``ruquant-service``: migrate the job store, manage API keys, run the reaper once.

Exit codes: 0 success, 1 the key to revoke was not found or already revoked, 2 usage error.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from service.auth import create_key, list_keys, revoke_key
from service.db.engine import make_engine, make_session_factory
from service.db.migrate import upgrade_to_head
from service.logging import configure_logging
from service.settings import get_settings

__all__ = ["main"]

logger = logging.getLogger(__name__)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ruquant-service", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("migrate", help="Upgrade the job store schema to the latest revision.")
    keys = commands.add_parser("keys", help="Create, list or revoke API keys.")
    key_commands = keys.add_subparsers(dest="key_command", required=True)
    create = key_commands.add_parser("create", help="Create a key and print its secret once.")
    create.add_argument("name", help="Who or what uses the key, e.g. 'nightly-batch'.")
    key_commands.add_parser("list", help="List keys (id, name, created, revoked).")
    revoke = key_commands.add_parser("revoke", help="Revoke a key by id.")
    revoke.add_argument("key_id")
    commands.add_parser("reap", help="Requeue or fail stale jobs once, then exit.")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one ``ruquant-service`` command and return its exit code."""
    args = _parser().parse_args(argv)
    configure_logging()
    settings = get_settings()
    url = settings.resolved_database_url
    if args.command == "migrate":
        settings.work_dir.mkdir(parents=True, exist_ok=True)
        upgrade_to_head(url)
        return 0
    if args.command == "reap":
        from worker.reaper import reap_once

        reap_once(settings)
        return 0

    engine = make_engine(url)
    sessions = make_session_factory(engine)
    try:
        with sessions.begin() as session:
            if args.key_command == "create":
                created = create_key(session, args.name)
                sys.stdout.write(
                    f"id: {created.id}\nname: {created.name}\nsecret: {created.secret}\n"
                )
                sys.stdout.write("Store the secret now; it cannot be shown again.\n")
                return 0
            if args.key_command == "list":
                for key in list_keys(session):
                    revoked = key.revoked_at.isoformat() if key.revoked_at else "-"
                    created_at = key.created_at.isoformat()
                    sys.stdout.write(f"{key.id}\t{key.name}\t{created_at}\trevoked={revoked}\n")
                return 0
            if revoke_key(session, args.key_id):
                logger.info("API key %s revoked", args.key_id)
                return 0
            sys.stderr.write(f"no active API key with id {args.key_id!r}\n")
            return 1
    finally:
        engine.dispose()


if __name__ == "__main__":
    raise SystemExit(main())
