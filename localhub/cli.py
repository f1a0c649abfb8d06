"""Command line: serve the local Hub, add tokens, gate repositories and grant access.

python -m localhub --storage DIR [--host H] [--port P] [--tokens FILE]
python -m localhub add-token --tokens FILE --user alice [--org ORG ...] [--role write]
python -m localhub gate --storage DIR alice/tiny [--mode auto|manual|off]
python -m localhub grant --storage DIR alice/tiny bob
python -m localhub revoke --storage DIR alice/tiny bob
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

import yaml

from localhub import admin
from localhub.server import serve
from localhub.storage.records import GateMode, RepoType
from localhub.tokens import Role, add_token

__all__ = ["main"]

logger = logging.getLogger(__name__)

_SUBCOMMANDS = ("serve", "add-token", "gate", "grant", "revoke")


def _serve_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--storage", required=True, help="storage folder (created if missing)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=8765, help="TCP port to listen on")
    parser.add_argument(
        "--tokens", help="JSON or YAML token file; without it only anonymous reads work"
    )
    parser.add_argument(
        "--public-url",
        help="base URL written into returned links (default: taken from each request)",
    )
    parser.add_argument(
        "--log-level", default="info", choices=("debug", "info", "warning", "error")
    )


def _repo_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--storage", required=True, help="storage folder of the server")
    parser.add_argument("repo_id", help="repository id, namespace/name")
    parser.add_argument(
        "--repo-type", default=RepoType.MODEL.value, choices=[kind.value for kind in RepoType]
    )


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m localhub",
        description="A Hugging Face Hub compatible server for tests and offline demos. "
        "Clients need HF_ENDPOINT set to its URL and HF_HUB_DISABLE_XET=1.",
    )
    commands = parser.add_subparsers(dest="command")
    _serve_parser(commands.add_parser("serve", help="serve the Hub API (the default command)"))

    token = commands.add_parser("add-token", help="add a token and write it to standard output")
    token.add_argument("--tokens", required=True, help="token file to update (created if missing)")
    token.add_argument("--user", required=True, help="user the token authenticates as")
    token.add_argument(
        "--org", action="append", default=[], help="organization of the user (repeatable)"
    )
    token.add_argument("--role", default=Role.READ.value, choices=[role.value for role in Role])
    token.add_argument("--name", help="display name of the token (default: <user>-<role>)")
    token.add_argument("--token", help="token value to store (default: a new random token)")

    gate = commands.add_parser("gate", help="gate a repository or remove its gate")
    _repo_arguments(gate)
    gate.add_argument("--mode", default=GateMode.AUTO.value, choices=("auto", "manual", "off"))

    for name, action in (("grant", "grant"), ("revoke", "withdraw")):
        command = commands.add_parser(name, help=f"{action} a user's access to a gated repository")
        _repo_arguments(command)
        command.add_argument("user", help="user name")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line and return the exit status."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    if not args_list or args_list[0] not in (*_SUBCOMMANDS, "-h", "--help"):
        args_list.insert(0, "serve")
    args = _build_parser().parse_args(args_list)
    logging.basicConfig(
        level=getattr(args, "log_level", "info").upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        if args.command == "serve":
            serve(
                args.storage,
                args.tokens,
                host=args.host,
                port=args.port,
                public_url=args.public_url,
                log_level=args.log_level,
            )
        elif args.command == "add-token":
            token = add_token(
                args.tokens,
                user=args.user,
                role=Role(args.role),
                orgs=tuple(args.org),
                name=args.name,
                token=args.token,
            )
            # The token goes to standard output only, so a script can capture it.
            sys.stdout.write(token + "\n")
            logger.info("Added a %s token for %s to %s", args.role, args.user, args.tokens)
        elif args.command == "gate":
            mode = None if args.mode == "off" else GateMode(args.mode)
            admin.set_gated(args.storage, args.repo_id, mode, repo_type=RepoType(args.repo_type))
            logger.info("Set gated=%s on %s", args.mode, args.repo_id)
        elif args.command == "grant":
            admin.grant_access(
                args.storage, args.repo_id, args.user, repo_type=RepoType(args.repo_type)
            )
            logger.info("Granted %s access to %s", args.user, args.repo_id)
        elif args.command == "revoke":
            admin.revoke_access(
                args.storage, args.repo_id, args.user, repo_type=RepoType(args.repo_type)
            )
            logger.info("Revoked the access of %s to %s", args.user, args.repo_id)
    except (LookupError, ValueError, OSError, yaml.YAMLError) as exc:
        logger.error("%s failed: %s", args.command, exc)
        return 1
    return 0
