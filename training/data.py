"""Datasets as tensors: decoded once, kept on the device, batched by indexing.

The course feeds a `DataLoader` that decodes and converts every image every epoch; here
each dataset becomes one uint8 tensor once, and a batch is one indexing operation. This module
holds what every dataset shares (the tensor pair, the decoded-data cache, the seeded
split); each dataset has its own module: `mnist_data`, `cifar10_data`, `anime_faces_data`,
`insurance_data`, `folder_data`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch


class DataNotFound(FileNotFoundError):
    """The dataset is neither on disk nor downloadable; the message says what to do."""


def unreachable(url: str, timeout: float = 10) -> str | None:
    """Why `url` cannot be downloaded now (a HEAD request), or None if it can."""
    import urllib.request

    try:
        with urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=timeout):
            return None
    except Exception as error:  # offline, DNS, HTTP 4xx/5xx, a proxy refusing
        return f"{error.__class__.__name__}: {str(error).splitlines()[0] if str(error) else ''}"


@dataclass
class TensorData:
    inputs: torch.Tensor  # e.g. uint8 images (N, H, W) or (N, C, H, W)
    labels: torch.Tensor  # (N,) int64, or (N, ...) targets

    def __len__(self) -> int:
        return len(self.inputs)

    def to(self, device) -> TensorData:
        return TensorData(self.inputs.to(device), self.labels.to(device))

    def subset(self, index: torch.Tensor) -> TensorData:
        """The pairs at `index`, a 1-D tensor of positions. `index_select`, not `inputs[index]`: for a
        batch of 128 MNIST digits it took 5-7 us where advanced indexing took 45-63 (2-core Zen 4
        AMD EPYC), most of a batch's data path (the README's MNIST bench)."""
        return TensorData(self.inputs.index_select(0, index), self.labels.index_select(0, index))


# ---- decoded datasets, cached --------------------------------------------------------------


def cache_dir() -> Path:
    """Where decoded datasets are kept: $ZTG_CACHE_DIR, else $XDG_CACHE_HOME or ~/.cache, /zero-to-gans."""
    if os.environ.get("ZTG_CACHE_DIR"):
        return Path(os.environ["ZTG_CACHE_DIR"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "zero-to-gans"


def cache_file(kind: str, name: str, source: str) -> Path:
    """The one cache file of a decoded dataset: <cache>/<kind>/<name>-<digest of source>.safetensors.

    source: where the data comes from and how it is decoded (a resolved folder and the image size,
    a Hub file), never what the files hold: when the files change, they are decoded again into
    the same file, so a data folder that is replaced, re-extracted or touched every day still
    costs one copy in the cache.
    """
    return cache_dir() / kind / f"{name}-{hashlib.sha256(source.encode()).hexdigest()[:16]}.safetensors"


def fingerprint(files, root: Path, *extra) -> str:
    """What the files hold, told without reading them: their paths under `root`, sizes and
    modification times, and any `extra` value the decoding depends on (class names)."""
    digest = hashlib.sha256(json.dumps([str(value) for value in extra]).encode())
    for path in files:
        stat = path.stat()
        digest.update(f"{path.relative_to(root)}:{stat.st_size}:{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def cached_decode(path: Path, stamp: str, decode: Callable[[], tuple[TensorData, Any]]) -> tuple[TensorData, Any]:
    """`decode()`'s (data, notes) for the files of fingerprint `stamp`: read from the cache file
    `path` (see `cache_file`) when it holds them, else decoded now and stored there for the next run.

    notes: any JSON value about the decoding (e.g. the files it skipped), or None.
    """
    if (hit := _read_cache(path, stamp)) is not None:
        return hit
    data, notes = decode()
    _write_cache(path, data, stamp, notes)
    return data, notes


def _read_cache(path: Path, stamp: str):
    """(data, notes) that `_write_cache` stored in `path` for files with fingerprint `stamp`, or
    None when there is no such file, it was written for other files, or it cannot be read (it is
    then decoded again). safetensors: no pickle is ever loaded."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as file:  # one open: the stamp and tensors of one file
            metadata = file.metadata() or {}
            if metadata.get("fingerprint") != stamp:
                return None
            data = TensorData(file.get_tensor("images"), file.get_tensor("labels"))
    except (OSError, SafetensorError):
        return None
    notes = metadata.get("notes")
    return data, None if notes is None else json.loads(notes)


def _write_cache(path: Path, data: TensorData, stamp: str, notes) -> None:
    """Save decoded images, labels and notes for the files of fingerprint `stamp`, atomically, in
    place of what `path` held; a read-only cache only costs a note."""
    import safetensors.torch

    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        metadata = {"fingerprint": stamp} | ({} if notes is None else {"notes": json.dumps(notes)})
        safetensors.torch.save_file({"images": data.inputs, "labels": data.labels}, str(tmp), metadata=metadata)
        tmp.replace(path)  # atomic: a reader sees the whole file or none
    except OSError as error:  # a read-only home or a full disk is no reason to stop training
        print(f"note: could not cache the decoded dataset in {path.parent} ({error})")
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)  # a full disk leaves no partial file behind


def random_split(data: TensorData, holdout: int, seed: int) -> tuple[TensorData, TensorData]:
    """Seeded split into (len - holdout, holdout), the same on every run and every process."""
    order = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed))
    return data.subset(order[holdout:]), data.subset(order[:holdout])


def stratified_split(data: TensorData, fraction: float, seed: int) -> tuple[TensorData, TensorData]:
    """Seeded split holding out `fraction` of every class (rounded half up), so small classes keep
    their share on both sides; both parts stay in the original order."""
    g = torch.Generator().manual_seed(seed)
    held = torch.zeros(len(data), dtype=torch.bool)
    for label in data.labels.unique().tolist():
        members = (data.labels == label).nonzero().flatten()
        members = members[torch.randperm(len(members), generator=g)]
        held[members[: int(len(members) * fraction + 0.5)]] = True
    return data.subset((~held).nonzero().flatten()), data.subset(held.nonzero().flatten())
