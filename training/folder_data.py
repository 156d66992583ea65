"""Any image-classification folder as tensors: the data of the course project (`image-folder`).

Layouts of DIR (`--data-dir`):

    DIR/<class>/...                         one folder of images per class
    DIR/train/<class>/...                   the same under train/, optionally with
    DIR/val/<class>/... DIR/test/<class>/...  beside it (val/ may also be valid/ or validation/)

A split with no folder of its own is a seeded sample of each class of the training images
(`test_fraction`, then `val_fraction` of what is left). Inside a class folder every file,
in subfolders too, is an image candidate, except hidden ones (.DS_Store, .ipynb_checkpoints/):
it is decoded by `shared.images.open_image` (PNG, JPEG, WebP, GIF, BMP, TIFF or PPM, any
mode, EXIF orientation applied), then `shared.preprocessing.square_image` makes it an RGB
S x S picture (transparency on white, the central square, Lanczos resize). A file that
cannot be decoded is skipped and named with its reason. Folders that cannot train a
classifier are errors before any training: no class or one class, an empty class folder,
a class with no readable image.

When DIR is the course's own data folder (it holds MNIST/, cifar10/, ..., as `python -m training
all` passes it), the lesson trains on three classes of its CIFAR-10 images, COURSE_DEMO, and says so.

Each folder is decoded once on all cores and cached like CIFAR-10 (under $ZTG_CACHE_DIR),
one file per folder and image size, decoded again when the classes or any file's name, size or
time change; the cache keeps the list of skipped files, so a cached run reports them too.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from training.data import (
    DataNotFound,
    TensorData,
    cache_file,
    cached_decode,
    fingerprint,
    stratified_split,
)

COURSE_DEMO = ("airplane", "cat", "dog")  # the classes `all` trains on in the course's data folder
COURSE_FOLDERS = ("MNIST", "cifar10", "cifar-10-batches-py", "animefacedataset", "insurance")
VAL_FOLDERS = ("val", "valid", "validation")
LAYOUT = ("Expected an image-classification folder: one subfolder of images per class, either "
          "directly in it or under train/ (with val/ and test/ beside it if you have them). "
          "Point --data-dir at it.")


class BadDataset(ValueError):
    """The folder cannot train a classifier; the message says why and what to change."""


@dataclass
class FolderData:
    train: TensorData
    val: TensorData
    test: TensorData
    class_names: list[str]
    skipped: list[str] = field(default_factory=list)  # "path: reason" of each file not used
    sources: dict[str, str] = field(default_factory=dict)  # where each split came from


def folder_splits(run) -> FolderData:
    """The folder of --data-dir (or tiny synthetic pictures with --synthetic_data) split and on the device."""
    cfg = run.config
    if cfg.synthetic_data:
        from training.cifar10_data import synthetic_cifar

        train, val = stratified_split(synthetic_cifar(384, seed=1, num_classes=3, size=cfg.image_size),
                                      cfg.val_fraction, cfg.seed)
        test = synthetic_cifar(96, seed=2, num_classes=3, size=cfg.image_size)
        data = FolderData(train, val, test, [f"pattern_{i}" for i in range(3)],
                          sources={"train": "generated", "val": "generated", "test": "generated"})
    else:
        folder, classes, course = Path(run.data_dir), cfg.classes, is_course_folder(Path(run.data_dir))
        if course:
            classes = classes or list(COURSE_DEMO)
            run.print(f"[image-folder] {run.data_dir} is the course's data folder: training on the CIFAR-10 "
                      f"classes {', '.join(classes)} as an example; point --data-dir at your own folder")
        with run.accelerator.local_main_process_first():  # one process per machine decodes
            if not course:
                data = load_folder(folder, classes, cfg.image_size, cfg.val_fraction, cfg.test_fraction, cfg.seed)
            elif (folder / "cifar10" / "train").is_dir():  # the fast.ai layout: decoded as any folder
                data = load_folder(folder / "cifar10", classes, cfg.image_size, cfg.val_fraction,
                                   cfg.test_fraction, cfg.seed)
            else:  # torchvision's batches (or the course archive, downloaded now)
                from training.cifar10_data import load_cifar10

                data = course_example(*load_cifar10(folder), classes, cfg.image_size, cfg.val_fraction, cfg.seed)
    for line in data.skipped:
        run.print(f"[image-folder] skipped {line}")
    data.train, data.val, data.test = (run.to_device(d) for d in (data.train, data.val, data.test))
    return data


def is_course_folder(folder: Path) -> bool:
    """Whether `folder` is the course's data folder (as `all` passes it), not an image folder of one's own."""
    return not (folder / "train").is_dir() and any((folder / name).is_dir() for name in COURSE_FOLDERS)


def data_problem(data_dir: Path) -> str | None:
    """None when `data_dir` is a folder of one's own (its classes are checked as it is read) or the
    course's data folder with CIFAR-10 in either layout, or downloadable now; else what to do."""
    from training.cifar10_data import data_problem as cifar10_problem

    folder = Path(data_dir)
    if folder.is_dir() and not is_course_folder(folder) and any(folder.iterdir()):
        return None
    problem = cifar10_problem(folder)  # `all` on a fresh machine: downloaded by the CIFAR-10 lessons first
    return None if problem is None else \
        f"image-folder takes its example (airplane, cat, dog) from CIFAR-10 when --data-dir is the course's data folder. {problem}"


def course_example(train: TensorData, test: TensorData, classes: list[str], image_size: int,
                   val_fraction: float, seed: int) -> FolderData:
    """`classes` of CIFAR-10 tensors (uint8 (N, 3, 32, 32)), relabelled 0..k-1 and resized to
    `image_size` (bicubic), with a seeded `val_fraction` of each class held out: the course example
    when the data folder holds torchvision's batches instead of the image folders."""
    from training.cifar10_data import CLASSES

    unknown = sorted(set(classes) - set(CLASSES))
    if unknown:
        raise BadDataset(f"--classes names {', '.join(unknown)}, not CIFAR-10 classes: {', '.join(CLASSES)}")
    classes = sorted(classes)
    relabel = torch.full((len(CLASSES),), -1)  # CIFAR-10 label -> index in `classes`, -1: not kept
    relabel[[CLASSES.index(name) for name in classes]] = torch.arange(len(classes))

    def pick(split: TensorData) -> TensorData:
        labels = relabel[split.labels]
        images = split.inputs[labels >= 0]
        if image_size != images.shape[-1]:
            images = torch.nn.functional.interpolate(images.float(), size=(image_size, image_size), mode="bicubic",
                                                     align_corners=False).round().clamp(0, 255).to(torch.uint8)
        return TensorData(images, labels[labels >= 0])

    kept_train, kept_test = pick(train), pick(test)
    kept_train, val = stratified_split(kept_train, val_fraction, seed + 1)
    sources = {"train": "cifar-10-batches-py (train)", "test": "cifar-10-batches-py (test)",
               "val": f"{val_fraction:.0%} of each class of the training batches, seeded"}
    return FolderData(kept_train, val, kept_test, classes, sources=sources)


def load_folder(root: Path, classes: list[str], image_size: int, val_fraction: float,
                test_fraction: float, seed: int) -> FolderData:
    """Train, validation and test sets of `root` (see the module docstring for the layouts)."""
    root = Path(root).resolve()  # files are named from root's parent on: "flowers/train/rose/1.jpg"
    if not root.is_dir():
        raise DataNotFound(f"{root} is not a folder. {LAYOUT}")
    train_dir = root / "train" if (root / "train").is_dir() else root
    found = class_folders(train_dir)
    if classes:
        unknown = sorted(set(classes) - set(found))
        if unknown:
            raise BadDataset(f"--classes names {', '.join(unknown)}, not folders of {train_dir}; "
                             f"its class folders are: {', '.join(found) or 'none'}")
        found = sorted(set(classes))
    if len(found) < 2:
        what = f"one class folder ({found[0]})" if found else "no class folder"
        raise BadDataset(f"{train_dir} has {what}; a classifier needs at least two. {LAYOUT}")
    folders = {"train": train_dir}
    if train_dir != root:
        for name, candidates in (("val", VAL_FOLDERS), ("test", ("test",))):
            present = [root / c for c in candidates if (root / c).is_dir()]
            if present:
                folders[name] = present[0]
    files = {}
    for name, folder in folders.items():  # every listing is checked before anything is decoded
        extra = sorted(set(class_folders(folder)) - set(class_folders(train_dir)))
        if extra:
            raise BadDataset(f"{folder} has class folders that {train_dir} has not: {', '.join(extra)}")
        files[name] = list_files(folder, found)

    data, skipped = {}, []
    for name, folder in folders.items():
        data[name], bad = decode_folder(folder, files[name], found, image_size, root)
        skipped += bad
    counts = torch.bincount(data["train"].labels, minlength=len(found)).tolist()
    for name, count in zip(found, counts, strict=True):
        if count == 0:
            why = [line for line in skipped if line.startswith(f"{(train_dir / name).relative_to(root.parent)}/")]
            raise BadDataset(f"no file of {train_dir / name} could be read as an image ({'; '.join(why[:3])}"
                             f"{'; ...' if len(why) > 3 else ''}); remove the folder or add images")
    sources = {name: f"{folder.relative_to(root.parent)}/" for name, folder in folders.items()}
    if "test" not in data:
        data["train"], data["test"] = stratified_split(data["train"], test_fraction, seed)
        sources["test"] = f"{test_fraction:.0%} of each class of {sources['train']}, seeded"
    if "val" not in data:
        rest = 1 - test_fraction if sources["test"].endswith("seeded") else 1  # of what test left
        data["train"], data["val"] = stratified_split(data["train"], val_fraction / rest, seed + 1)
        sources["val"] = f"{val_fraction:.0%} of each class of {sources['train']}, seeded"
    for name in ("val", "test"):
        if not len(data[name]):
            raise BadDataset(f"{root} has too few images to hold out a {name} set ({sources[name]}); "
                             f"add images, a {name}/ folder beside train/, or raise --{name}_fraction")
    return FolderData(data["train"], data["val"], data["test"], found, skipped, sources)


def class_folders(folder: Path) -> list[str]:
    return sorted(d.name for d in folder.iterdir() if d.is_dir() and not d.name.startswith("."))


def list_files(folder: Path, class_names: list[str]) -> list[tuple[Path, int]]:
    """Every non-hidden file under each class folder that exists here, with its label."""
    files = []
    for label, name in enumerate(class_names):
        if not (folder / name).is_dir():
            continue  # a validation or test folder may lack a class
        found = sorted(path for path in (folder / name).rglob("*") if path.is_file()
                       and not any(part.startswith(".") for part in path.relative_to(folder).parts))
        if not found:
            raise BadDataset(f"the class folder {folder / name} is empty; add images or remove it")
        files += [(path, label) for path in found]
    return files


def decode_folder(folder: Path, files: list[tuple[Path, int]], class_names: list[str],
                  image_size: int, root: Path) -> tuple[TensorData, list[str]]:
    """uint8 (N, 3, S, S) and labels of the files that decode, and "path: reason" for the others."""
    def decode_files():
        print(f"[image-folder] decoding the {len(files)} files of {folder} at {image_size}x{image_size} "
              "once (cached for later runs)")
        with ThreadPoolExecutor(os.cpu_count()) as pool:  # PIL releases the GIL while it decodes
            results = list(pool.map(lambda item: decode(item[0], image_size), files, chunksize=64))
        kept = [(pixels, label) for (pixels, _), (_, label) in zip(results, files, strict=True) if pixels is not None]
        skipped = [f"{path.relative_to(root.parent)}: {reason}"
                   for (_, reason), (path, _) in zip(results, files, strict=True) if reason is not None]
        pixels = np.stack([p for p, _ in kept]) if kept else np.zeros((0, image_size, image_size, 3), np.uint8)
        return TensorData(torch.from_numpy(pixels).permute(0, 3, 1, 2).contiguous(),  # (N, S, S, 3) -> (N, 3, S, S)
                          torch.tensor([label for _, label in kept], dtype=torch.long)), skipped

    cached = cache_file("image-folder", f"{folder.name}-{image_size}px", f"{folder.resolve()}|{image_size}")
    return cached_decode(cached, fingerprint([path for path, _ in files], folder, *class_names), decode_files)


def decode(path: Path, image_size: int):
    """(uint8 (S, S, 3) array, None) for a usable image file, else (None, why not)."""
    from shared.images import ImageError, open_image
    from shared.preprocessing import square_image

    try:
        return np.asarray(square_image(open_image(path, size_hint=image_size), image_size)), None
    except ImageError as error:  # its message is meant for people: keep the first clause
        return None, str(error).split(";")[0].split(". ")[0].rstrip(".")
    except Exception as error:  # noqa: BLE001  (whatever else a damaged file makes PIL raise)
        return None, f"{type(error).__name__}: {error}"


def channel_stats(images: torch.Tensor, chunk: int = 1024) -> tuple[list[float], list[float]]:
    """Per-channel mean and standard deviation of uint8 (N, 3, H, W) as values in [0, 1], 4 decimals."""
    total = torch.zeros(3, dtype=torch.float64)
    squares = torch.zeros(3, dtype=torch.float64)
    for start in range(0, len(images), chunk):  # in chunks: a float copy of the whole set can be GBs
        part = images[start:start + chunk].double() / 255
        total += part.sum(dim=(0, 2, 3))
        squares += (part ** 2).sum(dim=(0, 2, 3))
    count = images.numel() / 3
    mean = total / count
    std = (squares / count - mean ** 2).clamp_min(1e-8).sqrt()
    return [round(v, 4) for v in mean.tolist()], [round(max(v, 1e-3), 4) for v in std.tolist()]
