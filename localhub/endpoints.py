"""The table of Hub endpoints this server implements, in matching order."""

from __future__ import annotations

from localhub.routes import account, browse, commit, download, lfs, refs, repos
from localhub.routing import Route, route

__all__ = ["ROUTES"]

_API = "/api/{collection}/{repo_id}"

ROUTES: list[Route] = [
    route("GET", "/api/whoami-v2", account.whoami),
    route("POST", "/api/validate-yaml", account.validate_yaml),
    route("POST", "/api/repos/create", repos.create_repo),
    route("DELETE", "/api/repos/delete", repos.delete_repo),
    route("PUT", f"{_API}/settings", repos.update_settings),
    route("POST", f"{_API}/preupload/{{rev_tail}}", commit.preupload),
    route("POST", f"{_API}/commit/{{rev_tail}}", commit.commit),
    route("GET", f"{_API}/tree/{{rev}}", browse.list_tree),
    route("GET", f"{_API}/tree/{{rev}}/{{path}}", browse.list_tree),
    route("POST", f"{_API}/paths-info/{{rev_tail}}", browse.paths_info),
    route("GET", f"{_API}/refs", browse.list_refs),
    route("GET", f"{_API}/commits/{{rev_tail}}", browse.list_commits),
    route("POST", f"{_API}/branch/{{rev_tail}}", refs.create_branch),
    route("DELETE", f"{_API}/branch/{{rev_tail}}", refs.delete_branch),
    route("POST", f"{_API}/tag/{{rev_tail}}", refs.create_tag),
    route("DELETE", f"{_API}/tag/{{rev_tail}}", refs.delete_tag),
    route("GET", f"{_API}/revision/{{rev_tail}}", repos.repo_info),
    route("GET", _API, repos.repo_info),
    route("POST", "/{type_prefix}{repo_id}.git/info/lfs/objects/batch", lfs.lfs_batch),
    route("POST", "/{type_prefix}{repo_id}.git/info/lfs/objects/verify", lfs.lfs_verify),
    route("PUT", "/lfs/objects/{name}", lfs.lfs_upload, streams_body=True),
    route("GET HEAD", "/{type_prefix}{repo_id}/resolve/{rev}/{path}", download.resolve_file),
]
