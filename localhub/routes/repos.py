"""Repository endpoints: create, delete, settings and info."""

from __future__ import annotations

import hashlib
from typing import Any

from starlette.responses import JSONResponse, Response

from localhub import access, errors, metadata
from localhub.context import RepoRef, RequestContext
from localhub.listing import sibling_json
from localhub.storage.records import FileEntry, GateMode, RepoType
from localhub.storage.repos import DEFAULT_BRANCH, RepoExistsError, is_valid_repo_id

__all__ = ["create_repo", "delete_repo", "repo_info", "update_settings"]


def _repo_type_from_body(payload: dict[str, Any]) -> RepoType:
    value = payload.get("type") or RepoType.MODEL.value
    try:
        return RepoType(value)
    except ValueError:
        supported = ", ".join(kind.value for kind in RepoType)
        raise errors.bad_request(
            f"Repository type {value!r} is not supported by localhub; use one of: {supported}"
        ) from None


def _target_repo(ctx: RequestContext) -> tuple[RepoRef, dict[str, Any]]:
    """Read `{name, organization, type}` from a create or delete body."""
    payload = ctx.json_body()
    if not isinstance(payload, dict) or not isinstance(payload.get("name"), str):
        raise errors.bad_request("Invalid request body: expected JSON with a 'name' string")
    namespace = payload.get("organization") or (ctx.caller.user if ctx.caller else None)
    if namespace is None:
        raise errors.authentication_required("create or delete a repository")
    repo_id = f"{namespace}/{payload['name']}"
    if not is_valid_repo_id(repo_id):
        raise errors.bad_request(
            f"Invalid repo id {repo_id!r}: each part uses letters, digits, '-', '_' and '.', "
            "starts and ends with a letter or digit, has no '--' or '..', and is at most 96 "
            "characters"
        )
    return RepoRef(_repo_type_from_body(payload), repo_id), payload


def create_repo(ctx: RequestContext) -> Response:
    """Create a repository (`POST /api/repos/create`).

    An existing repository gets 409 with its `url`, which `create_repo(exist_ok=True)` needs.
    """
    repo, payload = _target_repo(ctx)
    caller = access.check_can_create(repo.repo_id.split("/")[0], repo.repo_type.value, ctx.caller)
    private = payload.get("visibility") == "private" or payload.get("private") is True
    url = repo.url(ctx.base_url)
    try:
        ctx.state.storage.repos.create(
            repo.repo_type, repo.repo_id, private=private, created_by=caller.user
        )
    except RepoExistsError:
        return JSONResponse(
            {"error": f"You already created this {repo.repo_type.value} repo", "url": url},
            status_code=409,
        )
    return JSONResponse({"url": url, "name": repo.repo_id, "id": _object_id(repo)})


def delete_repo(ctx: RequestContext) -> Response:
    """Delete a repository (`DELETE /api/repos/delete`)."""
    repo, _ = _target_repo(ctx)
    repos = ctx.state.storage.repos
    settings = access.check_visible(
        repos.load_settings(repo.repo_type, repo.repo_id), repo.label, ctx.caller
    )
    access.check_writable(settings, repo.label, ctx.caller)
    if not repos.delete(repo.repo_type, repo.repo_id):
        raise errors.repo_not_found(repo.label, authenticated=ctx.caller is not None)
    return JSONResponse({})


def update_settings(ctx: RequestContext) -> Response:
    """Change gating or visibility (`PUT /api/{type}s/{repo_id}/settings`).

    Body keys: `gated` (`"auto"`, `"manual"` or false), `visibility` (`"public"` or
    `"private"`) and the older `private` boolean.
    """
    ctx.writable_repo()
    payload = ctx.json_body()
    if not isinstance(payload, dict):
        raise errors.bad_request("Invalid request body: expected a JSON object")
    repo = ctx.repo
    repos = ctx.state.storage.repos
    with repos.lock(repo.repo_type, repo.repo_id):
        settings = repos.load_settings(repo.repo_type, repo.repo_id)
        if settings is None:
            raise errors.repo_not_found(repo.label, authenticated=True)
        if "gated" in payload:
            settings.gated = _parse_gated(payload["gated"])
        if "visibility" in payload:
            if payload["visibility"] not in ("public", "private"):
                raise errors.bad_request(
                    f"Invalid visibility {payload['visibility']!r}: use 'public' or 'private'"
                )
            settings.private = payload["visibility"] == "private"
        elif isinstance(payload.get("private"), bool):
            settings.private = payload["private"]
        repos.save_settings(settings)
    return JSONResponse({})


def _parse_gated(value: Any) -> GateMode | None:
    if value is False:
        return None
    try:
        return GateMode(value)
    except ValueError:
        raise errors.bad_request(
            f"Invalid gated value {value!r}: use 'auto', 'manual' or false"
        ) from None


def _object_id(repo: RepoRef) -> str:
    # The Hub returns a 24-hex object id; derive a stable one from the repository name.
    name = f"{repo.repo_type.value}:{repo.repo_id}"
    return hashlib.sha1(name.encode(), usedforsecurity=False).hexdigest()[:24]


def repo_info(ctx: RequestContext) -> Response:
    """Describe a repository at a revision (`GET /api/{type}s/{repo_id}[/revision/{rev}]`).

    With `?blobs=true` each sibling also has `size`, `blobId` and `lfs`.
    """
    settings = ctx.visible_repo()
    commit = ctx.resolve(ctx.params.get("rev", DEFAULT_BRANCH))
    with_blobs = ctx.request.query_params.get("blobs", "").lower() in ("1", "true")
    blobs = ctx.state.storage.blobs
    card = metadata.card_data(commit.files, blobs)
    body: dict[str, Any] = {
        "_id": _object_id(ctx.repo),
        "id": settings.repo_id,
        "author": settings.namespace,
        "sha": commit.oid,
        "lastModified": commit.date,
        "createdAt": settings.created_at,
        "private": settings.private,
        "gated": settings.gated.value if settings.gated is not None else False,
        "disabled": False,
        "downloads": 0,
        "likes": 0,
        "tags": list(card.get("tags") or []) if card else [],
        "siblings": [
            sibling_json(path, entry, with_blobs=with_blobs)
            for path, entry in sorted(commit.files.items())
        ],
        "usedStorage": sum(entry.size for entry in commit.files.values()),
    }
    if card is not None:
        body["cardData"] = card
    if settings.repo_type is RepoType.MODEL:
        body["modelId"] = settings.repo_id
        _add_model_fields(body, commit.files, ctx)
    return JSONResponse(body)


def _add_model_fields(
    body: dict[str, Any], files: dict[str, FileEntry], ctx: RequestContext
) -> None:
    blobs = ctx.state.storage.blobs
    card = body.get("cardData") or {}
    for key in ("library_name", "pipeline_tag"):
        if isinstance(card.get(key), str):
            body[key] = card[key]
    config = metadata.config_summary(files, blobs)
    if config is not None:
        body["config"] = config
    safetensors = metadata.safetensors_summary(files, blobs)
    if safetensors is not None:
        body["safetensors"] = safetensors
