"""Read-only listings: tree, paths-info, refs and commit history."""

from __future__ import annotations

from urllib.parse import parse_qs

from starlette.responses import JSONResponse, Response

from localhub import errors
from localhub.context import RequestContext
from localhub.listing import FolderIndex

__all__ = ["list_commits", "list_refs", "list_tree", "paths_info"]


def _flag(ctx: RequestContext, name: str) -> bool:
    return ctx.request.query_params.get(name, "").lower() in ("1", "true")


def list_tree(ctx: RequestContext) -> Response:
    """List a folder (`GET /api/{type}s/{repo_id}/tree/{rev}[/{path}][?recursive=true]`).

    All entries come in one page, so the response has no `Link` header for a next page.
    """
    ctx.visible_repo()
    commit = ctx.resolve(ctx.params["rev"])
    folder = ctx.params.get("path", "").strip("/")
    index = FolderIndex(commit.files)
    if not index.is_folder(folder):
        kind = "is a file, not a folder" if folder in commit.files else "does not exist"
        raise errors.entry_not_found(
            f"Entry not found: {folder} {kind} in {ctx.repo.label} at {commit.oid}",
            commit=commit.oid,
        )
    return JSONResponse(index.list_folder(folder, recursive=_flag(ctx, "recursive")))


def _requested_paths(ctx: RequestContext) -> list[str]:
    content_type = ctx.request.headers.get("content-type", "")
    if content_type.startswith("application/json"):
        payload = ctx.json_body()
        paths = payload.get("paths") if isinstance(payload, dict) else None
    else:
        # The client sends a form: paths=a&paths=b&expand=False.
        paths = parse_qs(ctx.body.decode("utf-8"), keep_blank_values=True).get("paths")
    if isinstance(paths, str):
        paths = [paths]
    if not isinstance(paths, list) or not all(isinstance(path, str) for path in paths):
        raise errors.bad_request("Invalid paths-info request: expected a 'paths' list")
    return paths


def paths_info(ctx: RequestContext) -> Response:
    """Describe given paths (`POST /api/{type}s/{repo_id}/paths-info/{rev}`).

    Paths that do not exist are left out of the response, which is not an error.
    """
    ctx.visible_repo()
    commit = ctx.resolve(ctx.params["rev"])
    index = FolderIndex(commit.files)
    answers = []
    for raw_path in _requested_paths(ctx):
        path = raw_path.strip("/")
        if path in commit.files or (path and index.is_folder(path)):
            answers.append(index.entry_json(path))
    return JSONResponse(answers)


def list_refs(ctx: RequestContext) -> Response:
    """List branches, tags and, with `?include_prs=1`, pull requests (`GET .../refs`)."""
    ctx.visible_repo()
    repo = ctx.repo
    refs = ctx.state.storage.repos.read_refs(repo.repo_type, repo.repo_id)
    body: dict[str, list[dict[str, str]]] = {
        "branches": [
            {"name": name, "ref": f"refs/heads/{name}", "targetCommit": oid}
            for name, oid in sorted(refs.branches.items())
        ],
        "converts": [],
        "tags": [
            {"name": name, "ref": f"refs/tags/{name}", "targetCommit": oid}
            for name, oid in sorted(refs.tags.items())
        ],
    }
    if _flag(ctx, "include_prs"):
        body["pullRequests"] = [
            {"name": str(number), "ref": f"refs/pr/{number}", "targetCommit": oid}
            for number, oid in sorted(refs.pulls.items())
        ]
    return JSONResponse(body)


def list_commits(ctx: RequestContext) -> Response:
    """List the first-parent history of a revision, newest first (`GET .../commits/{rev}`).

    All commits come in one page, so the response has no `Link` header for a next page.
    """
    ctx.visible_repo()
    repo = ctx.repo
    head = ctx.resolve(ctx.params["rev"])
    formatted = "formatted" in ctx.request.query_params.getlist("expand[]")
    items = []
    for commit in ctx.state.storage.repos.history(repo.repo_type, repo.repo_id, head):
        item: dict[str, object] = {
            "id": commit.oid,
            "title": commit.summary,
            "message": commit.description,
            "date": commit.date,
            "authors": [{"user": commit.author}],
        }
        if formatted:
            # The Hub fills these with HTML renderings; this server returns the plain text.
            item["formatted"] = {"title": commit.summary, "message": commit.description}
        items.append(item)
    return JSONResponse(items)
