"""File download: `HEAD|GET /[datasets/]{repo_id}/resolve/{rev}/{path}`."""

from __future__ import annotations

from starlette.responses import FileResponse, Response

from localhub import access, errors
from localhub.context import RequestContext

__all__ = ["resolve_file"]


def resolve_file(ctx: RequestContext) -> Response:
    """Serve a file at a revision, with the headers `hf_hub_download` requires.

    `X-Repo-Commit` names the resolved commit and `ETag` the content: the git blob id of a
    regular file, or the sha256 of an LFS file. LFS files also get `X-Linked-Etag` and
    `X-Linked-Size`, which the client prefers. The file is served directly, with no redirect,
    and Range requests work (Starlette's FileResponse serves them).
    """
    settings = ctx.visible_repo()
    repo = ctx.repo
    access.check_downloadable(settings, repo.label, ctx.caller, repo.url(ctx.base_url))
    commit = ctx.resolve(ctx.params["rev"])
    path = ctx.params["path"]
    entry = commit.files.get(path)
    if entry is None:
        raise errors.entry_not_found(
            f"Entry not found: {path} does not exist in {repo.label} at {commit.oid}",
            commit=commit.oid,
        )
    headers = {"X-Repo-Commit": commit.oid}
    if entry.lfs:
        headers["ETag"] = f'"{entry.sha256}"'
        headers["X-Linked-Etag"] = f'"{entry.sha256}"'
        headers["X-Linked-Size"] = str(entry.size)
    else:
        headers["ETag"] = f'"{entry.git_oid}"'
    return FileResponse(
        ctx.state.storage.blobs.path(entry.sha256),
        headers=headers,
        media_type="application/octet-stream",
    )
