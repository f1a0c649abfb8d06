"""JSON shapes of files and folders in tree listings, paths-info and repository info."""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import Any

from localhub.storage.gitobjects import lfs_pointer, tree_oid
from localhub.storage.records import FileEntry

__all__ = ["FolderIndex", "file_json", "sibling_json"]


def file_json(path: str, entry: FileEntry) -> dict[str, Any]:
    """Describe a file as the tree and paths-info endpoints do (`RepoFile` in the client)."""
    item: dict[str, Any] = {"type": "file", "oid": entry.git_oid, "size": entry.size, "path": path}
    if entry.lfs:
        item["lfs"] = {
            "oid": entry.sha256,
            "size": entry.size,
            "pointerSize": len(lfs_pointer(entry.sha256, entry.size)),
        }
    return item


def sibling_json(path: str, entry: FileEntry, *, with_blobs: bool) -> dict[str, Any]:
    """Describe a file in the `siblings` list of repository info (sizes only with `blobs`)."""
    item: dict[str, Any] = {"rfilename": path}
    if with_blobs:
        item["size"] = entry.size
        item["blobId"] = entry.git_oid
        if entry.lfs:
            item["lfs"] = {
                "sha256": entry.sha256,
                "size": entry.size,
                "pointerSize": len(lfs_pointer(entry.sha256, entry.size)),
            }
    return item


class FolderIndex:
    """The folders implied by a commit's flat file map, with their children and ids."""

    def __init__(self, files: dict[str, FileEntry]) -> None:
        self.files = files
        # folder path ("" for the root) -> names of direct children, files and folders
        self.children: dict[str, set[str]] = {"": set()}
        for path in files:
            parts = PurePosixPath(path).parts
            for depth in range(len(parts)):
                parent = "/".join(parts[:depth])
                self.children.setdefault(parent, set()).add(parts[depth])
        self._oids: dict[str, str] = {}

    def is_folder(self, path: str) -> bool:
        """Return whether `path` is a folder ("" is the root)."""
        return path in self.children

    def folder_oid(self, folder: str) -> str:
        """Return the id of a folder, derived from the ids of everything inside it."""
        if folder not in self._oids:
            children = []
            for name in self.children[folder]:
                child = f"{folder}/{name}" if folder else name
                oid = self.files[child].git_oid if child in self.files else self.folder_oid(child)
                children.append((name, oid))
            self._oids[folder] = tree_oid(children)
        return self._oids[folder]

    def entry_json(self, path: str) -> dict[str, Any]:
        """Describe the file or folder at `path`."""
        if path in self.files:
            return file_json(path, self.files[path])
        return {"type": "directory", "oid": self.folder_oid(path), "size": 0, "path": path}

    def list_folder(self, folder: str, *, recursive: bool) -> list[dict[str, Any]]:
        """List a folder's entries (with `recursive`, also everything below), sorted by path."""
        entries: list[dict[str, Any]] = []
        for name in sorted(self.children[folder]):
            child = f"{folder}/{name}" if folder else name
            entries.append(self.entry_json(child))
            if recursive and self.is_folder(child):
                entries.extend(self.list_folder(child, recursive=True))
        entries.sort(key=lambda item: item["path"])
        return entries
