"""Git LFS endpoints: the batch API, the object upload and the verify step.

Only the `basic` transfer is offered: one PUT per object, with no multipart.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.responses import JSONResponse, Response

from localhub import errors
from localhub.context import RequestContext
from localhub.signing import UPLOAD_URL_LIFETIME_S
from localhub.storage.blobs import BlobMismatchError, is_sha256

__all__ = ["lfs_batch", "lfs_upload", "lfs_verify"]

LFS_MEDIA_TYPE = "application/vnd.git-lfs+json"


def _object_error(oid: Any, size: Any, code: int, message: str) -> dict[str, Any]:
    return {
        "oid": oid if isinstance(oid, str) else "",
        "size": size if isinstance(size, int) else 0,
        "error": {"code": code, "message": message},
    }


def lfs_batch(ctx: RequestContext) -> Response:
    """Return upload actions for an LFS batch request (`POST /{repo_id}.git/info/lfs/objects/batch`).

    Objects already stored with the announced size get no actions, so the client skips their
    upload. Others get a signed upload URL and a verify URL.
    """
    ctx.writable_repo()
    payload = ctx.json_body()
    if not isinstance(payload, dict) or not isinstance(payload.get("objects"), list):
        raise errors.bad_request("Invalid LFS batch request: expected an 'objects' list")
    if payload.get("operation") != "upload":
        raise errors.bad_request(
            f"Unsupported LFS operation {payload.get('operation')!r}: localhub accepts "
            "'upload' only; download files through /resolve"
        )
    if "basic" not in payload.get("transfers", ["basic"]):
        raise errors.bad_request("Unsupported LFS transfers: localhub offers 'basic' only")

    blobs = ctx.state.storage.blobs
    repo = ctx.repo
    verify_url = f"{repo.url(ctx.base_url)}.git/info/lfs/objects/verify"
    objects = []
    for item in payload["objects"]:
        oid = item.get("oid") if isinstance(item, dict) else None
        size = item.get("size") if isinstance(item, dict) else None
        if not isinstance(oid, str) or not is_sha256(oid):
            objects.append(_object_error(oid, size, 422, "Invalid oid: expected a sha256 digest"))
        elif not isinstance(size, int) or isinstance(size, bool) or size < 0:
            objects.append(_object_error(oid, size, 422, "Invalid size: expected an integer"))
        elif blobs.size(oid) == size:
            objects.append({"oid": oid, "size": size})
        else:
            objects.append(
                {
                    "oid": oid,
                    "size": size,
                    "authenticated": True,
                    "actions": {
                        "upload": {
                            "href": ctx.state.signer.upload_url(ctx.base_url, oid, size),
                            "expires_in": UPLOAD_URL_LIFETIME_S,
                        },
                        "verify": {"href": verify_url},
                    },
                }
            )
    return JSONResponse(
        {"transfer": "basic", "objects": objects, "hash_algo": "sha256"},
        media_type=LFS_MEDIA_TYPE,
    )


async def lfs_upload(ctx: RequestContext) -> Response:
    """Store one LFS object (`PUT /lfs/objects/{oid}?size=&expires=&signature=`).

    The body streams to a temporary file while its sha256 is computed. The object is published
    only when hash and size match the signed values. The client sends no token here, so the
    signature from the batch response authorizes the upload.
    """
    oid = ctx.params["name"]
    query = ctx.request.query_params
    try:
        size = int(query["size"])
        expires = int(query["expires"])
        signature = query["signature"]
    except (KeyError, ValueError):
        raise errors.bad_request("Invalid upload URL: missing size, expires or signature") from None
    if not is_sha256(oid) or not ctx.state.signer.is_valid(oid, size, expires, signature):
        raise errors.forbidden(
            "Upload URL is invalid or expired: request a new one from the LFS batch endpoint"
        )

    blobs = ctx.state.storage.blobs
    with blobs.writer() as writer:
        # NOTE: file writes run on the event loop, chunk by chunk. That is fine for the
        # page cache of a local disk but would stall other requests on slow storage.
        async for chunk in ctx.request.stream():
            writer.write(chunk)
        try:
            writer.finish(expected_sha256=oid, expected_size=size)
        except BlobMismatchError as exc:
            raise errors.bad_request(f"Upload of LFS object {oid} rejected: {exc}") from exc
    return Response(status_code=200)


def lfs_verify(ctx: RequestContext) -> Response:
    """Confirm that an uploaded object is stored (`POST .../info/lfs/objects/verify`)."""
    ctx.writable_repo()
    try:
        payload = json.loads(ctx.body)
        oid, size = payload["oid"], payload["size"]
    except (ValueError, KeyError, TypeError):
        raise errors.bad_request(
            "Invalid verify request: expected JSON with 'oid' and 'size'"
        ) from None
    if not isinstance(oid, str) or not is_sha256(oid):
        raise errors.bad_request(f"Invalid oid {oid!r}: expected a sha256 digest")
    stored_size = ctx.state.storage.blobs.size(oid)
    if stored_size is None:
        raise errors.HubError(404, f"LFS object {oid} has not been uploaded")
    if stored_size != size:
        raise errors.bad_request(f"LFS object {oid} has {stored_size} bytes, not {size}")
    return JSONResponse({"oid": oid, "size": stored_size}, media_type=LFS_MEDIA_TYPE)
