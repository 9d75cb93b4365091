"""Which weights a run read, as one string (``model.revision``; docs/models.md "Which weights: model.revision").

- a hub model: the commit its snapshot resolved to, the name of the snapshot folder huggingface_hub filled
  (``.../models--owner--name/snapshots/<sha>``), whatever ``revision`` asked for (a branch, a tag, a commit);
- a local folder or a built-in checkpoint: ``sha256:`` of the files analysis reads — each file's path inside the
  folder and, up to ``CONTENT_LIMIT`` bytes, its content (configs, tokenizers, small weights), above it its size and
  modification time (weights of several GB are stat-ed, never read: a run pays milliseconds, not a pass over the disk).
Callables and analytic models have none.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path
from typing import Callable

CONTENT_LIMIT = 1 << 20  # files up to 1 MiB are hashed by content, larger ones by size and mtime
FINGERPRINT_PREFIX = "sha256:"
_COMMIT = re.compile(r"[0-9a-f]{40}")


def snapshot_commit(root: Path) -> str | None:
    """The commit sha of a hub cache snapshot folder (``snapshots/<sha>``); None for any other folder."""
    root = Path(root)
    if root.parent.name == "snapshots" and _COMMIT.fullmatch(root.name):
        return root.name
    return None


def folder_revision(root: Path, wanted: Callable[[str], bool] | None = None) -> str:
    """The commit of a hub snapshot, else the fingerprint of the files of ``root`` that ``wanted`` (their path
    relative to ``root``, with ``/``) accepts, all files when None."""
    return snapshot_commit(root) or fingerprint(root, wanted)


def fingerprint(path: Path, wanted: Callable[[str], bool] | None = None) -> str:
    """``sha256:<hex>`` of a file, or of a folder's files (symlinks followed, in sorted order of their relative
    paths): see the module docstring."""
    path = Path(path)
    digest = hashlib.sha256()
    for relative, file in _files(path):
        if wanted is not None and not wanted(relative):
            continue
        info = file.stat()
        digest.update(relative.encode("utf-8") + b"\0")
        if info.st_size <= CONTENT_LIMIT:
            digest.update(file.read_bytes())
        else:
            digest.update(f"size={info.st_size} mtime_ns={info.st_mtime_ns}".encode())
        digest.update(b"\0")
    return FINGERPRINT_PREFIX + digest.hexdigest()


def _files(path: Path) -> list[tuple[str, Path]]:
    if not path.is_dir():
        return [(path.name, path)]
    found, seen = [], set()
    for parent, folders, names in os.walk(path, followlinks=True):  # a linked folder once (no cycle)
        real = os.path.realpath(parent)
        if real in seen:
            folders.clear()
            continue
        seen.add(real)
        for name in names:
            file = Path(parent) / name
            if file.is_file():
                found.append((file.relative_to(path).as_posix(), file))
    return sorted(found)
