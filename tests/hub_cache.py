"""A Hugging Face cache filled by hand, in its real on-disk layout, for tests with HF_HUB_OFFLINE=1."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path


def fill_hub_cache(cache: Path, repo_id: str, snapshots: dict[str, Path], refs: dict[str, str],
                   repo_type: str = "model") -> None:
    """Blobs by content hash, snapshots/<commit>/ of relative links (subfolders too), refs/<name>."""
    repo = cache / f"{repo_type}s--{repo_id.replace('/', '--')}"
    for commit, folder in snapshots.items():
        for file in Path(folder).rglob("*"):
            if not file.is_file():
                continue
            blob = repo / "blobs" / hashlib.sha256(file.read_bytes()).hexdigest()
            blob.parent.mkdir(parents=True, exist_ok=True)
            blob.write_bytes(file.read_bytes())
            link = repo / "snapshots" / commit / file.relative_to(folder)
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(os.path.relpath(blob, link.parent))
    for name, commit in refs.items():
        (repo / "refs" / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / "refs" / name).write_text(commit)
