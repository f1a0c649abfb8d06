"""Branch and tag endpoints: create and delete."""

from __future__ import annotations

import re

from starlette.responses import JSONResponse, Response

from localhub import errors
from localhub.context import RequestContext
from localhub.storage.repos import DEFAULT_BRANCH

__all__ = ["create_branch", "create_tag", "delete_branch", "delete_tag"]

_REF_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/-]*")
_COMMIT_OID_RE = re.compile(r"[0-9a-fA-F]{40}")


def _check_ref_name(name: str, kind: str) -> str:
    if (
        _REF_NAME_RE.fullmatch(name) is None
        or ".." in name
        or "//" in name
        or name.endswith(("/", ".lock"))
        or name.startswith("refs/")
        or _COMMIT_OID_RE.fullmatch(name) is not None
    ):
        raise errors.bad_request(
            f"Invalid {kind} name {name!r}: use letters, digits, '.', '_', '-' and '/', without "
            "'..', a 'refs/' prefix or the form of a commit id"
        )
    return name


def create_branch(ctx: RequestContext) -> Response:
    """Create a branch (`POST /api/{type}s/{repo_id}/branch/{branch}`).

    The body's optional `startingPoint` names the revision to start from (default: main).
    An existing branch gets 409, which `create_branch(exist_ok=True)` accepts.
    """
    ctx.writable_repo()
    name = _check_ref_name(ctx.params["rev"], "branch")
    payload = ctx.json_body()
    starting_point = payload.get("startingPoint") if isinstance(payload, dict) else None
    start = ctx.resolve(str(starting_point or DEFAULT_BRANCH))
    repo = ctx.repo
    repos = ctx.state.storage.repos
    with repos.lock(repo.repo_type, repo.repo_id):
        refs = repos.read_refs(repo.repo_type, repo.repo_id)
        if name in refs.branches:
            raise errors.HubError(409, f"Branch {name} already exists in {repo.label}")
        refs.branches[name] = start.oid
        repos.write_refs(repo.repo_type, repo.repo_id, refs)
    return JSONResponse({})


def delete_branch(ctx: RequestContext) -> Response:
    """Delete a branch other than main (`DELETE /api/{type}s/{repo_id}/branch/{branch}`)."""
    ctx.writable_repo()
    name = ctx.params["rev"]
    if name == DEFAULT_BRANCH:
        raise errors.forbidden(f"The default branch {DEFAULT_BRANCH} cannot be deleted")
    repo = ctx.repo
    repos = ctx.state.storage.repos
    with repos.lock(repo.repo_type, repo.repo_id):
        refs = repos.read_refs(repo.repo_type, repo.repo_id)
        if refs.branches.pop(name, None) is None:
            raise errors.revision_not_found(name)
        repos.write_refs(repo.repo_type, repo.repo_id, refs)
    return JSONResponse({})


def create_tag(ctx: RequestContext) -> Response:
    """Tag a revision (`POST /api/{type}s/{repo_id}/tag/{rev}` with body `{"tag": name}`)."""
    ctx.writable_repo()
    payload = ctx.json_body()
    if not isinstance(payload, dict) or not isinstance(payload.get("tag"), str):
        raise errors.bad_request("Invalid tag request: expected JSON with a 'tag' string")
    name = _check_ref_name(payload["tag"], "tag")
    target = ctx.resolve(ctx.params["rev"])
    repo = ctx.repo
    repos = ctx.state.storage.repos
    with repos.lock(repo.repo_type, repo.repo_id):
        refs = repos.read_refs(repo.repo_type, repo.repo_id)
        if name in refs.tags:
            raise errors.HubError(409, f"Tag {name} already exists in {repo.label}")
        refs.tags[name] = target.oid
        repos.write_refs(repo.repo_type, repo.repo_id, refs)
    return JSONResponse({})


def delete_tag(ctx: RequestContext) -> Response:
    """Delete a tag (`DELETE /api/{type}s/{repo_id}/tag/{tag}`)."""
    ctx.writable_repo()
    name = ctx.params["rev"]
    repo = ctx.repo
    repos = ctx.state.storage.repos
    with repos.lock(repo.repo_type, repo.repo_id):
        refs = repos.read_refs(repo.repo_type, repo.repo_id)
        if refs.tags.pop(name, None) is None:
            raise errors.revision_not_found(name)
        repos.write_refs(repo.repo_type, repo.repo_id, refs)
    return JSONResponse({})
