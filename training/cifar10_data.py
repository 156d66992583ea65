"""CIFAR-10 as tensors: decoded once and cached (augmentation: `training.augment`).

Two layouts are found under `--data-dir`:

    cifar10/{train,test}/<class>/*.png|jpg   the fast.ai archive the course downloads (ImageFolder)
    cifar-10-batches-py/                     torchvision's `CIFAR10` (MD5-checked by torchvision)

The course's archive holds PNGs (lossless); a folder of JPEGs (this project's dataset cache is
one) is a lossy copy, on which accuracies come out lower than on the original pixels. A run
records which copy it read (`dataset_copy`, `dataset_original` in its task, for the model card).

When neither is there, the course's archive is downloaded into `--data-dir`. A decoded
folder is cached as uint8 safetensors under `$ZTG_CACHE_DIR` (default
`~/.cache/zero-to-gans`), one file per folder, decoded again when the folder's files change
(names, sizes, times), so the data folder itself may be read-only and later runs skip the
decoding (about 30 s for the 60,000 JPEGs on a 2-core machine).
"""

from __future__ import annotations

import os
import shutil
import tarfile
import tempfile
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch
import torch.nn.functional as F

from shared.models.cifar10 import CLASSES
from shared.preprocessing import normalize_cifar
from training.data import (
    DataNotFound,
    TensorData,
    cache_file,
    cached_decode,
    fingerprint,
    random_split,
    unreachable,
)

COURSE_ARCHIVE = "https://s3.amazonaws.com/fast-ai-imageclas/cifar10.tgz"
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg"}


# ---- loading --------------------------------------------------------------------------


def load_cifar10(data_dir: Path, download: bool = True) -> tuple[TensorData, TensorData]:
    """CIFAR-10 train (50,000) and test (10,000) as uint8 (N, 3, 32, 32) and int64 labels."""
    root = Path(data_dir)
    problem = None
    if download and not (root / "cifar10" / "train").is_dir() and _layout(root) is None:
        try:
            download_course_archive(root)
        except Exception as error:  # offline, read-only, or a broken download
            problem = f"{error.__class__.__name__}: {error}"
    layout = _layout(root)
    if layout == "folder":
        return load_image_folder(root / "cifar10" / "train"), load_image_folder(root / "cifar10" / "test")
    if layout == "batches":
        return _load_torchvision(root, train=True), _load_torchvision(root, train=False)
    raise DataNotFound(_missing(root, problem))


def _layout(root: Path) -> str | None:
    """Which layout `load_cifar10` reads under `root`: "folder" (fast.ai), "batches" (torchvision) or None."""
    if (root / "cifar10" / "train").is_dir() and (root / "cifar10" / "test").is_dir():
        return "folder"
    return "batches" if (root / "cifar-10-batches-py").is_dir() else None


def cifar10_copy(data_dir: Path) -> tuple[str, bool] | None:
    """The copy of CIFAR-10 `load_cifar10` reads under `data_dir`, for the model card: what it is,
    and whether its pixels are the original ones (a JPEG anywhere makes it a lossy copy). None
    when neither layout is there."""
    root = Path(data_dir)
    layout = _layout(root)
    if layout == "batches":
        return "torchvision's original batches (cifar-10-batches-py)", True
    if layout is None:
        return None
    # Stops at the first JPEG: one directory entry for a JPEG copy, a full listing only for PNGs.
    if any(path.suffix.lower() in {".jpg", ".jpeg"}
           for split in ("train", "test") for path in (root / "cifar10" / split).glob("*/*")):
        return ("a JPEG copy (cifar10/{train,test}/<class>/*.jpg): lossy, so accuracies come out lower "
                "than on the original pixels (the project's airbench runs land about 3 points below the "
                "paper's)"), False
    return "the course's PNG archive (cifar10/{train,test}/<class>/*.png; PNG is lossless)", True


def data_problem(data_dir: Path) -> str | None:
    """None when CIFAR-10 is under `data_dir` or the course archive can be downloaded now; else what to do."""
    root = Path(data_dir)
    if _layout(root) is not None:
        return None
    problem = unreachable(COURSE_ARCHIVE)
    return None if problem is None else _missing(root, problem)


def _missing(root: Path, problem: str | None) -> str:
    folder, batches = root / "cifar10", root / "cifar-10-batches-py"
    return (f"CIFAR-10 not found in {root.resolve()}"
            + (f" and the course archive could not be downloaded ({problem})" if problem else "") + ".\n"
            f"Expected either {folder}/train/<class>/*.png|jpg and {folder}/test/<class>/... "
            f"(the fast.ai layout, classes {', '.join(CLASSES)}) or torchvision's {batches}/.\n"
            "Point --data-dir (or $ZTG_DATA_DIR) at a folder that has one of them, "
            f"or run once with network access to download {COURSE_ARCHIVE} there.")


def download_course_archive(root: Path) -> None:
    """Fetch the course's cifar10.tgz (~135 MB of PNGs) and unpack it as root/cifar10."""
    root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=root, prefix=".cifar10-download-") as tmp:
        archive = Path(tmp) / "cifar10.tgz"
        print(f"downloading {COURSE_ARCHIVE} to {root} ...")
        with urllib.request.urlopen(COURSE_ARCHIVE, timeout=30) as response, archive.open("wb") as out:
            shutil.copyfileobj(response, out)
        with tarfile.open(archive) as tar:
            tar.extractall(tmp, filter="data")  # refuses absolute paths, links out, devices
        # Renamed into place only once complete, so a cut download is never mistaken for data.
        (Path(tmp) / "cifar10").rename(root / "cifar10")


def load_image_folder(folder: Path) -> TensorData:
    """One split of the fast.ai layout (<class>/<image>), decoded once and then read from the cache."""
    folder = Path(folder)
    classes = sorted(d.name for d in folder.iterdir() if d.is_dir())
    if classes != sorted(CLASSES):
        raise DataNotFound(f"{folder} should hold one folder per CIFAR-10 class ({', '.join(CLASSES)}); "
                           f"found {classes or 'none'}. Check --data-dir.")
    files = [(path, label) for label, name in enumerate(CLASSES)
             for path in sorted((folder / name).iterdir()) if path.suffix.lower() in IMAGE_SUFFIXES]
    paths = [path for path, _ in files]

    def decode():
        print(f"[cifar10] decoding the {len(files)} images of {folder.name}/ once (cached for later runs)")
        return TensorData(decode_images(paths), torch.tensor([label for _, label in files], dtype=torch.long)), None

    cached = cache_file("cifar10", folder.name, str(folder.resolve()))
    return cached_decode(cached, fingerprint(paths, folder), decode)[0]


def decode_images(paths: list[Path]) -> torch.Tensor:
    """PNG/JPEG files of 32x32 RGB pictures -> uint8 (N, 3, 32, 32), decoded on all cores."""
    import numpy as np
    from PIL import Image

    def decode(path: Path) -> np.ndarray:
        with Image.open(path) as image:
            if image.size != (32, 32):
                raise DataNotFound(f"{path} is {image.size[0]}x{image.size[1]} pixels; CIFAR-10 images are 32x32")
            return np.asarray(image.convert("RGB"))

    # PIL releases the GIL while decoding, so threads use every core.
    with ThreadPoolExecutor(os.cpu_count()) as pool:
        pixels = np.stack(list(pool.map(decode, paths, chunksize=256)))  # (N, 32, 32, 3)
    return torch.from_numpy(pixels).permute(0, 3, 1, 2).contiguous()


def _load_torchvision(root: Path, train: bool) -> TensorData:
    from torchvision.datasets import CIFAR10

    try:  # torchvision checks each batch file's MD5 before reading it
        dataset = CIFAR10(root, train=train, download=False)
    except RuntimeError as error:
        raise DataNotFound(f"{root / 'cifar-10-batches-py'} is incomplete or corrupt ({error}); "
                           "delete it, or point --data-dir at a complete copy") from error
    images = torch.from_numpy(dataset.data).permute(0, 3, 1, 2).contiguous()  # (N, 32, 32, 3) -> (N, 3, 32, 32)
    return TensorData(images, torch.tensor(dataset.targets, dtype=torch.long))


def cifar_splits(run) -> tuple[TensorData, TensorData, TensorData]:
    """(train, validation, test) on the device; tiny synthetic pictures with --synthetic_data.

    val_size=0 is the course's own split: every training image trains, and the validation set
    is the test set (the lesson must then label its per-epoch metrics as test metrics).
    """
    if run.config.synthetic_data:
        train, test = synthetic_cifar(640, seed=1), synthetic_cifar(256, seed=2)
    else:
        with run.accelerator.local_main_process_first():  # one process per machine downloads and decodes
            train, test = load_cifar10(run.data_dir)
        copy, original = cifar10_copy(run.data_dir)
        run.task = {**run.task, "dataset_copy": copy, "dataset_original": original}  # for the card
    train, val = random_split(train, run.config.val_size, seed=run.config.seed)
    train, test = run.to_device(train), run.to_device(test)
    return train, (run.to_device(val) if run.config.val_size else test), test


def synthetic_cifar(n: int, seed: int, num_classes: int = 10, size: int = 32) -> TensorData:
    """A learnable stand-in for CIFAR-10: one smooth colour pattern per class, plus noise."""
    g = torch.Generator().manual_seed(4321)  # the class patterns are the same for train and test
    patterns = F.interpolate(torch.rand(num_classes, 3, 4, 4, generator=g), size=size, mode="bilinear")
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(num_classes, (n,), generator=g)
    images = patterns[labels] + 0.25 * torch.randn(n, 3, size, size, generator=g)
    return TensorData((images.clamp(0, 1) * 255).round().to(torch.uint8), labels)


# ---- what the convolutional networks see ----------------------------------------------


def conv_input(images: torch.Tensor) -> torch.Tensor:
    """uint8 (B, 3, 32, 32) -> normalised float, stored channels_last (NHWC) for fast convolutions."""
    return normalize_cifar(images).contiguous(memory_format=torch.channels_last)
