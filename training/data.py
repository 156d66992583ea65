"""Datasets as tensors: decoded once, kept on the device, batched by indexing.

The course feeds a `DataLoader` that decodes and converts every image every epoch; here
each dataset becomes one uint8 tensor once, and a batch is `images[index]`.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F


class DataNotFound(FileNotFoundError):
    """The dataset is neither on disk nor downloadable; the message says what to do."""


@dataclass
class TensorData:
    inputs: torch.Tensor  # e.g. uint8 images (N, H, W) or (N, C, H, W)
    labels: torch.Tensor  # (N,) int64, or (N, ...) targets

    def __len__(self) -> int:
        return len(self.inputs)

    def to(self, device) -> TensorData:
        return TensorData(self.inputs.to(device), self.labels.to(device))

    def subset(self, index: torch.Tensor) -> TensorData:
        return TensorData(self.inputs[index], self.labels[index])


# ---- decoded datasets, cached --------------------------------------------------------------


def cache_dir() -> Path:
    """Where decoded datasets are kept: $ZTG_CACHE_DIR, else $XDG_CACHE_HOME or ~/.cache, /zero-to-gans."""
    if os.environ.get("ZTG_CACHE_DIR"):
        return Path(os.environ["ZTG_CACHE_DIR"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "zero-to-gans"


def read_cache(path: Path) -> TensorData:
    """A dataset written by `write_cache` (safetensors: no pickle is ever loaded)."""
    import safetensors.torch

    tensors = safetensors.torch.load_file(str(path))
    images = tensors["images"]
    return TensorData(images, tensors.get("labels", torch.zeros(len(images), dtype=torch.long)))


def write_cache(path: Path, data: TensorData) -> None:
    """Save decoded images and labels atomically; a read-only cache only costs a note."""
    import safetensors.torch

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        safetensors.torch.save_file({"images": data.inputs, "labels": data.labels}, str(tmp))
        tmp.replace(path)  # atomic: a reader sees the whole file or none
    except OSError as error:  # a read-only home is no reason to stop training
        print(f"note: could not cache the decoded dataset in {path.parent} ({error})")


def random_split(data: TensorData, holdout: int, seed: int) -> tuple[TensorData, TensorData]:
    """Seeded split into (len - holdout, holdout), the same on every run and every process."""
    order = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed))
    return data.subset(order[holdout:]), data.subset(order[:holdout])


MNIST_FILES = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte",
               "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]


def load_mnist(data_dir: Path) -> tuple[TensorData, TensorData]:
    """MNIST train (60,000) and test (10,000) as uint8 (N, 28, 28) tensors and int64 labels."""
    from torchvision.datasets import MNIST

    raw = Path(data_dir) / "MNIST" / "raw"
    have = all((raw / f).exists() or (raw / f"{f}.gz").exists() for f in MNIST_FILES)
    try:
        train = MNIST(data_dir, train=True, download=not have)
        test = MNIST(data_dir, train=False, download=not have)
    except Exception as error:  # offline, read-only, or a partial download
        raise DataNotFound(
            f"MNIST not found in {raw} and could not be downloaded ({str(error).splitlines()[0]}).\n"
            f"Expected the four IDX files {', '.join(MNIST_FILES)} (or their .gz) in {raw}/.\n"
            "Point --data-dir (or $ZTG_DATA_DIR) at a folder that has MNIST/raw/, "
            "or run once with network access to download it there."
        ) from error
    return TensorData(train.data, train.targets), TensorData(test.data, test.targets)


def mnist_splits(run) -> tuple[TensorData, TensorData, TensorData]:
    """(train, validation, test) on the device: real MNIST, or tiny synthetic digits for the smoke profile."""
    if run.profile == "smoke":
        train, test = synthetic_digits(768, seed=1), synthetic_digits(257, seed=2)  # odd: uneven shards
    else:
        train, test = load_mnist(run.data_dir)
    train, val = random_split(train, run.config.val_size, seed=run.config.seed)
    return run.to_device(train), run.to_device(val), run.to_device(test)


def synthetic_digits(n: int, seed: int, size: int = 28, num_classes: int = 10) -> TensorData:
    """Tiny learnable stand-in for MNIST used by the smoke profile: one noisy blob pattern per class."""
    g = torch.Generator().manual_seed(1234)  # the class patterns are the same for train and test
    patterns = F.interpolate(torch.rand(num_classes, 1, 7, 7, generator=g), size=size, mode="bilinear")
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(num_classes, (n,), generator=g)
    images = patterns[labels, 0] + 0.3 * torch.randn(n, size, size, generator=g)
    return TensorData((images.clamp(0, 1) * 255).round().to(torch.uint8), labels)


def random_affine(images: torch.Tensor, max_shift: float, max_degrees: float, max_scale: float) -> torch.Tensor:
    """Shift, rotate and scale every image of a float batch (B, C, H, W) by its own random amount.

    Shifts are in pixels, scale is a relative change (0.1 = up to +-10%); done on the device.
    """
    b, _, h, w = images.shape
    rand = torch.rand(b, 4, device=images.device) * 2 - 1
    angle = rand[:, 0] * math.radians(max_degrees)
    scale = 1 + rand[:, 1] * max_scale
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack([
        torch.stack([cos, -sin, rand[:, 2] * 2 * max_shift / w], dim=1),
        torch.stack([sin, cos, rand[:, 3] * 2 * max_shift / h], dim=1),
    ], dim=1)  # (B, 2, 3)
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    # Pad with the background value (the minimum of each image) rather than zeros.
    background = images.amin(dim=(1, 2, 3), keepdim=True)
    return F.grid_sample(images - background, grid, align_corners=False) + background
