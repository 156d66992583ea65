"""The anime faces of lesson 6: the Kaggle anime-face dataset as uint8 (N, 3, 64, 64) tensors.

Decoded once (resize of the shorter side and centre crop, as the course's transforms) and
cached as safetensors under ~/.cache/zero-to-gans (never a pickle); downloaded with
kagglehub when absent; cartoon faces stand in for tests.
"""

from __future__ import annotations

import hashlib
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch

from training.data import DataNotFound, TensorData, cache_dir, read_cache, write_cache

ANIME_FOLDER = "animefacedataset"  # <data-dir>/animefacedataset/images/*.jpg, the Kaggle layout
KAGGLE_DATASET = "splcher/animefacedataset"


def anime_faces(run) -> TensorData:
    """The training faces on the device: the real dataset, or synthetic faces with --synthetic_data."""
    if run.config.synthetic_data:
        return run.to_device(synthetic_faces(256, seed=run.seed))
    with run.accelerator.local_main_process_first():  # one process per machine decodes and caches
        return run.to_device(load_anime_faces(run.data_dir))


def load_anime_faces(data_dir: Path, size: int = 64) -> TensorData:
    """Every face of <data_dir>/animefacedataset/images/*.jpg as uint8 (N, 3, size, size); labels 0.

    Decoded once (resize of the shorter side and centre crop, as the course's transforms),
    then read from a safetensors cache keyed by the files' names, sizes and times.
    """
    folder = Path(data_dir) / ANIME_FOLDER / "images"
    files = sorted(folder.glob("*.jpg")) if folder.is_dir() else []
    if not files:
        folder = download_anime_faces(folder)
        files = sorted(folder.glob("*.jpg"))
    key = hashlib.sha1(str(folder.resolve()).encode())
    for f in files:
        stat = f.stat()
        key.update(f"{f.name}:{stat.st_size}:{stat.st_mtime_ns}\n".encode())
    cached = cache_dir() / f"animefaces-{size}px-{len(files)}-{key.hexdigest()[:16]}.safetensors"
    if cached.is_file():
        return read_cache(cached)
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:  # Pillow decodes without the GIL
        decoded = [image for image in pool.map(lambda f: _decode(f, size), files) if image is not None]
    if not decoded:
        raise DataNotFound(f"none of the {len(files)} JPEG files in {folder} could be decoded")
    if len(decoded) < len(files):
        print(f"[anime faces] skipped {len(files) - len(decoded)} unreadable files in {folder}", file=sys.stderr)
    faces = TensorData(torch.stack(decoded), torch.zeros(len(decoded), dtype=torch.long))  # (N, 3, size, size)
    write_cache(cached, faces)
    return faces


def _decode(path: Path, size: int) -> torch.Tensor | None:
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            image = image.convert("RGB")
    except (OSError, UnidentifiedImageError):  # a truncated or broken file: skip it
        return None
    if image.size != (size, size):
        image = ImageOps.fit(image, (size, size), Image.Resampling.BILINEAR)
    return torch.frombuffer(bytearray(image.tobytes()), dtype=torch.uint8).view(size, size, 3).permute(2, 0, 1)


def download_anime_faces(expected: Path) -> Path:
    """Download the Kaggle dataset with kagglehub (into its own cache); the `images` folder it holds."""
    try:
        import kagglehub

        root = Path(kagglehub.dataset_download(KAGGLE_DATASET))
        found = root / "images"
        if not any(found.glob("*.jpg")):
            raise FileNotFoundError(f"no images/*.jpg in the download at {root}")
        return found
    except Exception as error:  # not installed, offline, no Kaggle access
        reason = str(error).splitlines()[0] if str(error) else error.__class__.__name__
        raise DataNotFound(
            f"anime faces not found in {expected}/ and could not be downloaded ({reason}).\n"
            f"Expected the Kaggle '{KAGGLE_DATASET}' layout: {expected}/*.jpg (64x64 or larger RGB JPEGs).\n"
            "Point --data-dir (or $ZTG_DATA_DIR) at a folder that has animefacedataset/images/, "
            "or `pip install kagglehub` and run once with network access to download it."
        ) from error


def synthetic_faces(n: int, seed: int, size: int = 64) -> TensorData:
    """Cartoon faces for --synthetic_data (the smoke profiles): a skin-toned disc, hair on top, two coloured eyes.

    Learnable in seconds and clearly structured, so a smoke run exercises the whole lesson.
    """
    g = torch.Generator().manual_seed(seed)
    y, x = torch.meshgrid(torch.linspace(-1, 1, size), torch.linspace(-1, 1, size), indexing="ij")

    def rand(*shape, low=0.0, high=1.0):
        return low + (high - low) * torch.rand(*shape, generator=g)

    background, skin, hair, eyes = rand(n, 3, 1, 1), rand(n, 3, 1, 1, low=0.7), rand(n, 3, 1, 1), rand(n, 3, 1, 1)
    cx, cy, radius = rand(n, 1, 1, low=-0.15, high=0.15), rand(n, 1, 1, low=0.0, high=0.2), rand(n, 1, 1, low=0.5, high=0.7)
    face = ((x - cx) ** 2 + (y - cy) ** 2 < radius**2).unsqueeze(1)                   # (n, 1, H, W)
    top = (face & (y < cy - 0.45 * radius).unsqueeze(1))
    eye_y, eye_dx = cy.unsqueeze(1), 0.4 * radius.unsqueeze(1)
    eye = torch.zeros_like(face)
    for side in (-1, 1):
        eye |= ((x - cx.unsqueeze(1) - side * eye_dx) ** 2 / 0.012 + (y - eye_y) ** 2 / 0.025) < 1
    images = torch.where(face, skin, background)
    images = torch.where(top, hair, images)
    images = torch.where(eye & face, eyes, images)
    images = images + 0.03 * torch.randn(images.shape, generator=g)
    return TensorData((images.clamp(0, 1) * 255).round().to(torch.uint8), torch.zeros(n, dtype=torch.long))
