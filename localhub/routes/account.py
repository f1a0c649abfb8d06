"""Account endpoints: whoami and model-card metadata validation."""

from __future__ import annotations

import hashlib
import json

import yaml
from starlette.responses import JSONResponse, Response

from localhub import errors
from localhub.context import RequestContext
from localhub.metadata import parse_front_matter

__all__ = ["validate_yaml", "whoami"]


def _stable_id(kind: str, name: str) -> str:
    # The Hub returns 24-hex object ids; derive one from the name so it survives restarts.
    return hashlib.sha1(f"{kind}:{name}".encode(), usedforsecurity=False).hexdigest()[:24]


def whoami(ctx: RequestContext) -> Response:
    """Return the caller's account as `GET /api/whoami-v2` does.

    `huggingface_hub.whoami` reads `name`, `type` and `orgs[].name`. `hf auth login` reads
    `auth.accessToken.role` and `displayName`.
    """
    caller = ctx.caller
    if caller is None:
        raise errors.HubError(401, "Invalid username or password.")
    body = {
        "type": "user",
        "id": _stable_id("user", caller.user),
        "name": caller.user,
        "fullname": caller.user,
        "email": None,
        "emailVerified": False,
        "isPro": False,
        "canPay": False,
        "orgs": [
            {
                "type": "org",
                "id": _stable_id("org", org),
                "name": org,
                "fullname": org,
                "roleInOrg": caller.role.value,
            }
            for org in caller.orgs
        ],
        "auth": {
            "type": "access_token",
            "accessToken": {"displayName": caller.name, "role": caller.role.value},
        },
    }
    return JSONResponse(body)


def validate_yaml(ctx: RequestContext) -> Response:
    """Check the metadata block of a model card, as `POST /api/validate-yaml` does.

    The client calls it before committing a README.md and reads the JSON body before the
    status, so every response, even an error, carries `errors` and `warnings` lists.
    """
    try:
        payload = json.loads(ctx.body)
        content = payload["content"]
        if not isinstance(content, str):
            raise TypeError("'content' must be a string")
    except (ValueError, KeyError, TypeError) as exc:
        message = f"Invalid request body: expected JSON with a 'content' string ({exc})"
        return JSONResponse(
            {"error": message, "errors": [{"message": message}], "warnings": []},
            status_code=400,
        )
    try:
        parse_front_matter(content)
    except (yaml.YAMLError, ValueError) as exc:
        message = f"Invalid YAML in the model card metadata: {exc}"
        return JSONResponse(
            {"error": message, "errors": [{"message": message}], "warnings": []},
            status_code=400,
        )
    return JSONResponse({"errors": [], "warnings": []})
