"""The anime faces of lesson 6 as uint8 (N, 3, 64, 64) tensors, from the first source that has them:

1. <data-dir>/animefacedataset/images/*.jpg, the layout of Kaggle's `splcher/animefacedataset`
   (63,565 faces of various sizes, the course's dataset);
2. the Hub dataset `huggan/anime-faces` (CC0; its card says 21,551 faces of 64x64, and its
   data.zip, 462 MB of PNGs, holds twice as many files: identical files are read once),
   downloaded by huggingface_hub into the Hugging Face cache: no account needed, and offline
   once cached;
3. the Kaggle dataset through kagglehub, if installed (`pip install kagglehub`; Kaggle may ask
   for an account).

Decoded once (resize of the shorter side and centre crop, as the course's transforms) and
cached as safetensors under ~/.cache/zero-to-gans (never a pickle; one file per source, decoded
again when its files change); the model card names the source used. Cartoon faces stand in for tests.
"""

from __future__ import annotations

import hashlib
import io
import os
import sys
import zipfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import torch

from training.data import DataNotFound, TensorData, cache_file, cached_decode, fingerprint

ANIME_FOLDER = "animefacedataset"  # <data-dir>/animefacedataset/images/*.jpg, the Kaggle layout
KAGGLE_DATASET = "splcher/animefacedataset"
HUB_DATASET, HUB_FILE = "huggan/anime-faces", "data.zip"
HUB_REVISION = "67ebcf8c69b45feb3883d695f04227078a6c9da9"  # the commit that added data.zip (March 2022)
HUB_NAME = f"Anime faces ({HUB_DATASET}, CC0)"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


@dataclass(frozen=True)
class FaceSource:
    """Where the faces were found: a folder of JPEGs, or the Hub's zip; and what the card says."""

    files: tuple[Path, ...] = ()
    archive: Path | None = None
    dataset: str = "animefacedataset"  # a Hub dataset id only when on the Hub (see training/card.py)
    dataset_name: str = f"Anime Face Dataset (Kaggle {KAGGLE_DATASET} layout)"


def anime_faces(run) -> TensorData:
    """The training faces on the device: the real dataset, or synthetic faces with --synthetic_data."""
    if run.config.synthetic_data:
        return run.to_device(synthetic_faces(256, seed=run.seed))
    with run.accelerator.local_main_process_first():  # one process per machine downloads, decodes and caches
        source = find_anime_faces(run.data_dir)
        faces = read_faces(source)
    run.task = {**run.task, "dataset": source.dataset, "dataset_name": source.dataset_name}  # for the card
    return run.to_device(faces)


def load_anime_faces(data_dir: Path, size: int = 64) -> TensorData:
    """Every face of the first source that has them as uint8 (N, 3, size, size); labels 0."""
    return read_faces(find_anime_faces(data_dir), size)


def find_anime_faces(data_dir: Path) -> FaceSource:
    """The first source of the module docstring that has the faces, downloading if needed."""
    expected = Path(data_dir) / ANIME_FOLDER / "images"
    files = _jpegs(expected)
    if files:
        return FaceSource(files=files)
    reasons = []
    try:
        from huggingface_hub import hf_hub_download

        archive = hf_hub_download(HUB_DATASET, HUB_FILE, repo_type="dataset", revision=HUB_REVISION)
        return FaceSource(archive=Path(archive), dataset=HUB_DATASET, dataset_name=HUB_NAME)
    except Exception as error:  # offline and not cached, the Hub down
        reasons.append(f"the Hub dataset {HUB_DATASET}: {_first_line(error)}")
    try:
        import kagglehub

        files = _jpegs(Path(kagglehub.dataset_download(KAGGLE_DATASET)) / "images")
        if files:
            return FaceSource(files=files)
        reasons.append(f"Kaggle {KAGGLE_DATASET}: no images/*.jpg in its download")
    except Exception as error:  # not installed, offline, no Kaggle access
        reasons.append(f"Kaggle {KAGGLE_DATASET} through kagglehub: {_first_line(error)}")
    raise DataNotFound(_missing(expected, reasons))


def data_problem(data_dir: Path) -> str | None:
    """None when the faces are on disk, in the Hugging Face cache, or downloadable now; else what to do."""
    from huggingface_hub import get_hf_file_metadata, hf_hub_url, try_to_load_from_cache

    expected = Path(data_dir) / ANIME_FOLDER / "images"
    if _jpegs(expected) or isinstance(try_to_load_from_cache(
            HUB_DATASET, HUB_FILE, revision=HUB_REVISION, repo_type="dataset"), str):
        return None
    try:
        get_hf_file_metadata(hf_hub_url(HUB_DATASET, HUB_FILE, repo_type="dataset", revision=HUB_REVISION), timeout=10)
        return None
    except Exception as error:
        reasons = [f"the Hub dataset {HUB_DATASET}: {_first_line(error)}"]
    try:
        import kagglehub  # noqa: F401  (whether Kaggle lets this machine download shows only then)

        return None
    except ImportError as error:
        reasons.append(f"Kaggle {KAGGLE_DATASET} through kagglehub: {_first_line(error)}")
    return _missing(expected, reasons)


def _missing(expected: Path, reasons: list[str]) -> str:
    return (f"anime faces not found in {expected}/ and could not be downloaded:\n"
            + "".join(f"  - {reason}\n" for reason in reasons)
            + f"Expected the Kaggle '{KAGGLE_DATASET}' layout: {expected}/*.jpg (64x64 or larger RGB JPEGs).\n"
            "Point --data-dir (or $ZTG_DATA_DIR) at a folder that has animefacedataset/images/, run once "
            f"with network access to fetch {HUB_DATASET} from the Hub (no account needed), "
            "or `pip install kagglehub` for Kaggle's copy.")


def read_faces(source: FaceSource, size: int = 64) -> TensorData:
    """The faces of `source`, decoded once, then read from its safetensors cache until its files change."""
    if source.archive is not None:
        where, files = f"{HUB_DATASET}/{HUB_FILE}", [source.archive]
        origin = f"{HUB_DATASET}@{HUB_REVISION}/{HUB_FILE}"
    else:
        where, files = str(source.files[0].parent), source.files
        origin = str(source.files[0].parent.resolve())

    def decode():
        images = _unique_images(source.archive) if source.archive is not None else list(source.files)
        print(f"[anime faces] decoding {len(images)} faces from {where} once (cached for later runs)")
        with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:  # Pillow decodes without the GIL
            decoded = [image for image in pool.map(lambda f: _decode(f, size), images) if image is not None]
        if not decoded:
            raise DataNotFound(f"none of the {len(images)} images in {where} could be decoded")
        if len(decoded) < len(images):
            print(f"[anime faces] skipped {len(images) - len(decoded)} unreadable files in {where}", file=sys.stderr)
        return TensorData(torch.stack(decoded), torch.zeros(len(decoded), dtype=torch.long)), None  # (N, 3, size, size)

    cached = cache_file("anime-faces", f"{size}px", f"{origin}|{size}")
    return cached_decode(cached, fingerprint(files, files[0].parent), decode)[0]


def _jpegs(folder: Path) -> tuple[Path, ...]:
    return tuple(sorted(folder.glob("*.jpg"))) if folder.is_dir() else ()


def _unique_images(archive: Path) -> list[io.BytesIO]:
    """Every image file in the zip once (byte-identical copies skipped): the Hub's data.zip
    holds 43,102 files for the 21,551 faces its card announces."""
    seen, images = set(), []
    with zipfile.ZipFile(archive) as zipped:  # read in memory: nothing is extracted to disk
        for name in sorted(zipped.namelist()):
            if name.lower().endswith(IMAGE_SUFFIXES) and not name.startswith("__MACOSX/"):
                data = zipped.read(name)
                digest = hashlib.sha1(data).digest()
                if digest not in seen:
                    seen.add(digest)
                    images.append(io.BytesIO(data))
    return images


def _decode(file, size: int) -> torch.Tensor | None:
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with Image.open(file) as image:
            image = image.convert("RGB")
    except (OSError, UnidentifiedImageError):  # a truncated or broken file: skip it
        return None
    if image.size != (size, size):
        image = ImageOps.fit(image, (size, size), Image.Resampling.BILINEAR)
    return torch.frombuffer(bytearray(image.tobytes()), dtype=torch.uint8).view(size, size, 3).permute(2, 0, 1)


def _first_line(error: Exception) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else error.__class__.__name__


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
