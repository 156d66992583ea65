"""MNIST: 60,000 training and 10,000 test digits, 28x28 grey, as uint8 tensors.

Read from <data-dir>/MNIST/raw/ (the four IDX files, as torchvision lays them out), or
downloaded there by torchvision when online; tiny synthetic digits stand in for tests.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from training.data import DataNotFound, TensorData, random_split, unreachable

MNIST_FILES = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte",
               "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]


def load_mnist(data_dir: Path) -> tuple[TensorData, TensorData]:
    """MNIST train (60,000) and test (10,000) as uint8 (N, 28, 28) tensors and int64 labels."""
    from torchvision.datasets import MNIST

    raw = Path(data_dir) / "MNIST" / "raw"
    have = on_disk(raw)
    try:
        train = MNIST(data_dir, train=True, download=not have)
        test = MNIST(data_dir, train=False, download=not have)
    except Exception as error:  # offline, read-only, or a partial download
        # A corrupt file may fail with an empty message (an IndexError): name its type then.
        raise DataNotFound(_missing(raw, (str(error).splitlines() or [type(error).__name__])[0])) from error
    return TensorData(train.data, train.targets), TensorData(test.data, test.targets)


def data_problem(data_dir: Path) -> str | None:
    """None when MNIST is under `data_dir` or torchvision can download it now; else what to do."""
    from torchvision.datasets import MNIST

    raw = Path(data_dir) / "MNIST" / "raw"
    if on_disk(raw):
        return None
    reasons = [unreachable(mirror + MNIST.resources[0][0]) for mirror in MNIST.mirrors]
    return None if None in reasons else _missing(raw, reasons[0])


def on_disk(raw: Path) -> bool:
    """Whether the four MNIST files are in `raw` (as they are or gzipped)."""
    return all((raw / f).exists() or (raw / f"{f}.gz").exists() for f in MNIST_FILES)


def _missing(raw: Path, reason: str) -> str:
    return (f"MNIST not found in {raw} and could not be downloaded ({reason}).\n"
            f"Expected the four IDX files {', '.join(MNIST_FILES)} (or their .gz) in {raw}/.\n"
            "Point --data-dir (or $ZTG_DATA_DIR) at a folder that has MNIST/raw/, "
            "or run once with network access to download it there.")


def mnist_splits(run) -> tuple[TensorData, TensorData, TensorData]:
    """(train, validation, test) on the device: real MNIST, or tiny synthetic digits (--synthetic_data)."""
    if run.config.synthetic_data:
        train, test = synthetic_digits(768, seed=1), synthetic_digits(257, seed=2)  # odd: uneven shards
    else:
        with run.accelerator.local_main_process_first():  # one process per machine downloads
            train, test = load_mnist(run.data_dir)
    train, val = random_split(train, run.config.val_size, seed=run.config.seed)
    return run.to_device(train), run.to_device(val), run.to_device(test)


def synthetic_digits(n: int, seed: int, size: int = 28, num_classes: int = 10) -> TensorData:
    """Tiny learnable stand-in for MNIST for --synthetic_data (the smoke profiles): one noisy blob pattern per class."""
    g = torch.Generator().manual_seed(1234)  # the class patterns are the same for train and test
    patterns = F.interpolate(torch.rand(num_classes, 1, 7, 7, generator=g), size=size, mode="bilinear")
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(num_classes, (n,), generator=g)
    images = patterns[labels, 0] + 0.3 * torch.randn(n, size, size, generator=g)
    return TensorData((images.clamp(0, 1) * 255).round().to(torch.uint8), labels)
