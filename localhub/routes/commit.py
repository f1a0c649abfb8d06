"""Upload endpoints: preupload (upload mode per file) and the ndjson commit."""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from starlette.responses import JSONResponse, Response

from localhub import errors
from localhub.context import RequestContext
from localhub.lfs_rules import lfs_patterns, upload_mode
from localhub.repo_paths import check_repo_path
from localhub.storage.blobs import is_sha256
from localhub.storage.commits import (
    AddFile,
    CommitRejectedError,
    DeleteFile,
    DeleteFolder,
    EntryMissingError,
    Operation,
    ParentCommitMismatchError,
    RevisionMissingError,
    apply_commit,
)
from localhub.storage.gitobjects import git_blob_oid, lfs_pointer
from localhub.storage.records import Commit, FileEntry

__all__ = ["commit", "preupload"]


def _flag(ctx: RequestContext, name: str) -> bool:
    return ctx.request.query_params.get(name, "").lower() in ("1", "true")


def _gitattributes_patterns(ctx: RequestContext, commit: Commit) -> list[str]:
    entry = commit.files.get(".gitattributes")
    if entry is None or entry.lfs:
        return []
    text = ctx.state.storage.blobs.read_bytes(entry.sha256).decode("utf-8", errors="replace")
    return lfs_patterns(text)


def preupload(ctx: RequestContext) -> Response:
    """Tell the client how to upload each file (`POST /api/{type}s/{repo_id}/preupload/{rev}`).

    Each file entry has `uploadMode` (`lfs` or `regular`), `shouldIgnore` and `oid`, the id of the
    file already at that path: sha256 for an LFS file, git blob id otherwise. The client
    leaves out of the commit any file whose local id equals `oid`.

    NOTE: `shouldIgnore` is always false because `.gitignore` rules are not evaluated.
    """
    ctx.writable_repo()
    head = ctx.resolve(ctx.params["rev"])
    payload = ctx.json_body()
    if not isinstance(payload, dict) or not isinstance(payload.get("files"), list):
        raise errors.bad_request("Invalid preupload request: expected a 'files' list")
    patterns = _gitattributes_patterns(ctx, head)
    answers = []
    for item in payload["files"]:
        if not isinstance(item, dict):
            raise errors.bad_request("Invalid preupload request: each file must be an object")
        path = check_repo_path(item.get("path"))
        size = item.get("size")
        if not isinstance(size, int) or size < 0:
            raise errors.bad_request(f"Invalid size {size!r} for {path}: expected an integer")
        try:
            sample = base64.b64decode(item.get("sample", ""), validate=True)
        except (binascii.Error, TypeError):
            raise errors.bad_request(f"Invalid sample for {path}: expected base64") from None
        existing = head.files.get(path)
        remote_oid = None
        if existing is not None:
            remote_oid = existing.sha256 if existing.lfs else existing.git_oid
        answers.append(
            {
                "path": path,
                "uploadMode": upload_mode(path, size, sample, patterns),
                "shouldIgnore": False,
                "oid": remote_oid,
            }
        )
    return JSONResponse({"files": answers, "commitOid": head.oid})


def _parse_lines(body: bytes) -> list[dict[str, Any]]:
    items = []
    for number, line in enumerate(body.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except ValueError as exc:
            raise errors.bad_request(f"Invalid JSON on line {number} of the commit: {exc}") from exc
        if not isinstance(item, dict) or not isinstance(item.get("value"), dict):
            raise errors.bad_request(
                f"Invalid commit line {number}: expected {{'key': ..., 'value': {{...}}}}"
            )
        items.append(item)
    return items


def _regular_file(ctx: RequestContext, value: dict[str, Any]) -> AddFile:
    path = check_repo_path(value.get("path"))
    content = value.get("content")
    encoding = value.get("encoding", "base64")
    if not isinstance(content, str):
        raise errors.bad_request(f"Invalid content for {path}: expected a string")
    if encoding == "base64":
        try:
            data = base64.b64decode(content, validate=True)
        except binascii.Error:
            raise errors.bad_request(f"Invalid base64 content for {path}") from None
    elif encoding in ("utf-8", "utf8"):
        data = content.encode("utf-8")
    else:
        raise errors.bad_request(f"Invalid encoding {encoding!r} for {path}: use base64")
    # Blobs are written before the commit lock is taken. A commit that then fails leaves
    # unreferenced blobs behind, which waste space but do no harm.
    sha256 = ctx.state.storage.blobs.put_bytes(data)
    entry = FileEntry(sha256=sha256, size=len(data), lfs=False, git_oid=git_blob_oid(data))
    return AddFile(path, entry)


def _lfs_file(ctx: RequestContext, value: dict[str, Any]) -> AddFile:
    path = check_repo_path(value.get("path"))
    oid = value.get("oid")
    if value.get("algo", "sha256") != "sha256" or not isinstance(oid, str) or not is_sha256(oid):
        raise errors.bad_request(f"Invalid LFS oid for {path}: expected a sha256 digest")
    stored_size = ctx.state.storage.blobs.size(oid)
    if stored_size is None:
        raise errors.bad_request(
            f"LFS object {oid} for {path} has not been uploaded: upload it through the LFS "
            "batch endpoint before committing"
        )
    announced = value.get("size")
    if announced is not None and announced != stored_size:
        raise errors.bad_request(
            f"LFS object {oid} for {path} has {stored_size} bytes, not {announced}"
        )
    pointer = lfs_pointer(oid, stored_size)
    entry = FileEntry(sha256=oid, size=stored_size, lfs=True, git_oid=git_blob_oid(pointer))
    return AddFile(path, entry)


def _operation(ctx: RequestContext, item: dict[str, Any]) -> Operation:
    key, value = item.get("key"), item["value"]
    if key == "file":
        return _regular_file(ctx, value)
    if key == "lfsFile":
        return _lfs_file(ctx, value)
    if key == "deletedFile":
        return DeleteFile(check_repo_path(value.get("path")))
    if key == "deletedFolder":
        return DeleteFolder(check_repo_path(str(value.get("path", "")).rstrip("/")))
    raise errors.bad_request(
        f"Unsupported commit operation {key!r}: use file, lfsFile, deletedFile or deletedFolder"
    )


def commit(ctx: RequestContext) -> Response:
    """Create a commit from an ndjson body (`POST /api/{type}s/{repo_id}/commit/{rev}`).

    The first line is `{"key": "header", "value": {"summary", "description",
    "parentCommit"?}}`. Each further line is a `file` (base64 content), `lfsFile` (sha256 of
    an uploaded object), `deletedFile` or `deletedFolder` operation. With `?create_pr=1` the
    commit opens a new pull-request ref instead of moving the branch.
    """
    ctx.writable_repo()
    items = _parse_lines(ctx.body)
    if not items or items[0].get("key") != "header":
        raise errors.bad_request("Invalid commit: the first line must be the header")
    header = items[0]["value"]
    summary = header.get("summary")
    if not isinstance(summary, str) or not summary.strip():
        raise errors.bad_request("Invalid commit header: 'summary' must be a non-empty string")
    description = header.get("description") or ""
    parent_commit = header.get("parentCommit")
    if parent_commit is not None and not isinstance(parent_commit, str):
        raise errors.bad_request("Invalid commit header: 'parentCommit' must be a string")
    operations = [_operation(ctx, item) for item in items[1:]]

    repo = ctx.repo
    revision = ctx.params["rev"]
    assert ctx.caller is not None  # writable_repo rejects anonymous callers
    try:
        result = apply_commit(
            ctx.state.storage.repos,
            repo.repo_type,
            repo.repo_id,
            revision=revision,
            operations=operations,
            summary=summary,
            description=str(description),
            author=ctx.caller.user,
            parent_commit=parent_commit,
            create_pr=_flag(ctx, "create_pr"),
        )
    except RevisionMissingError:
        raise errors.revision_not_found(revision) from None
    except ParentCommitMismatchError as exc:
        raise errors.HubError(412, str(exc)) from exc
    except EntryMissingError as exc:
        raise errors.entry_not_found(str(exc)) from exc
    except CommitRejectedError as exc:
        raise errors.bad_request(str(exc)) from exc

    repo_url = repo.url(ctx.base_url)
    oid = result.commit.oid
    pull_request_url = None
    if result.pull_request is not None:
        pull_request_url = f"{repo_url}/discussions/{result.pull_request}"
    return JSONResponse(
        {
            "success": True,
            "commitOid": oid,
            "commitUrl": f"{repo_url}/commit/{oid}",
            "commitMessage": summary,
            "hookOutput": "",
            "pullRequestUrl": pull_request_url,
        }
    )
