"""Match request paths against the Hub's URL patterns.

Matching runs on the raw (still percent-encoded) path. `huggingface_hub` encodes a revision
with `quote(revision, safe="")`, so `refs/pr/1` arrives as `refs%2Fpr%2F1`. Decoding the path
before splitting it, as most routers do, would turn that one segment into three.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import unquote

from starlette.responses import Response

from localhub.context import RequestContext

__all__ = ["Handler", "Route", "StreamingHandler", "match_route", "route"]

Handler = Callable[[RequestContext], Response]
StreamingHandler = Callable[[RequestContext], Awaitable[Response]]

# Placeholders usable in route templates, each replaced by a named regex group.
_PLACEHOLDERS = {
    "{collection}": r"(?P<collection>models|datasets)",
    "{type_prefix}": r"(?:(?P<collection>datasets)/)?",
    "{repo_id}": r"(?P<repo_id>[^/]+/[^/]+?)",
    # A revision in the middle of a path: one encoded segment, or an unencoded refs/<kind>/<x>.
    "{rev}": r"(?P<rev>refs/[^/]+/[^/]+|[^/]+)",
    # A revision that ends the path may span several segments.
    "{rev_tail}": r"(?P<rev>.+)",
    "{name}": r"(?P<name>[^/]+)",
    "{path}": r"(?P<path>.+)",
}


@dataclass(frozen=True)
class Route:
    """An endpoint: HTTP methods, raw-path pattern and handler.

    A handler with `streams_body` is a coroutine that reads the request body itself. Any other
    handler is a plain function that runs in a worker thread with the whole body already read.
    """

    methods: frozenset[str]
    pattern: re.Pattern[str]
    handler: Handler | StreamingHandler
    streams_body: bool = False


def route(
    methods: str, template: str, handler: Handler | StreamingHandler, *, streams_body: bool = False
) -> Route:
    """Build a route from space-separated methods and a path template with placeholders."""
    pattern = re.escape(template)
    for placeholder, group in _PLACEHOLDERS.items():
        pattern = pattern.replace(re.escape(placeholder), group)
    return Route(
        methods=frozenset(methods.split()),
        pattern=re.compile(pattern),
        handler=handler,
        streams_body=streams_body,
    )


def match_route(
    routes: list[Route], method: str, raw_path: str
) -> tuple[Route | None, dict[str, str], bool]:
    """Find the route for a request.

    Returns the route (or None), its decoded path parameters, and whether the path matched a
    route of another method, which calls for 405 rather than 404.
    """
    path_matched = False
    for candidate in routes:
        found = candidate.pattern.fullmatch(raw_path)
        if found is None:
            continue
        if method not in candidate.methods:
            path_matched = True
            continue
        params = {key: unquote(value) for key, value in found.groupdict().items() if value}
        return candidate, params, False
    return None, {}, path_matched
