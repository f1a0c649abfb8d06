"""A small Hugging Face Hub compatible server, so the real `huggingface_hub` client can be
tested end to end without network access.

Clients must run with `HF_HUB_DISABLE_XET=1`: when `hf_xet` is installed, huggingface_hub 2.x
uploads every file through the Xet protocol, which this server does not implement.
"""

from localhub.app import LocalHubApp, create_app
from localhub.server import BackgroundHub, serve
from localhub.tokens import Role, TokenRecord, TokenTable, add_token

__all__ = [
    "BackgroundHub",
    "LocalHubApp",
    "Role",
    "TokenRecord",
    "TokenTable",
    "add_token",
    "create_app",
    "serve",
]
