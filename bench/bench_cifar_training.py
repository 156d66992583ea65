"""ResNet9 training throughput: our CIFAR-10 path vs the course notebook's pipeline, in one run.

    python bench/bench_cifar_training.py --data-dir ../shared/datasets [--steps 30] [--profile course]

Course pipeline (lesson 5): `ImageFolder` + per-image `RandomCrop(32, padding=4,
padding_mode='reflect')`, `RandomHorizontalFlip`, `ToTensor`, `Normalize` in a
`DataLoader(shuffle=True, num_workers=3)`; the model in PyTorch's default memory format.
Ours (what `cifar10-resnet9` runs): the dataset decoded once into a uint8 tensor, batches
by indexing, crop and flip for the whole batch in one gather, the model `channels_last`.
Both train the same ResNet9 with the same batch size and the same step (Adam, gradient
clipping); the third row isolates the data path (the course's loader, our memory format).
The pipelines take turns (`--rounds`), so a load spike on a shared machine hits both.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

from training import sleeping_openmp_waits

sleeping_openmp_waits()  # before torch loads: the course loader's worker processes share the cores

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from accelerate import Accelerator  # noqa: E402
from torch.utils.data import DataLoader  # noqa: E402
from torchvision import transforms  # noqa: E402
from torchvision.datasets import ImageFolder  # noqa: E402

from shared.models import build_model  # noqa: E402
from shared.preprocessing import CIFAR_MEAN, CIFAR_STD  # noqa: E402
from training.augment import random_crop_flip  # noqa: E402
from training.cifar10_data import conv_input, load_cifar10  # noqa: E402
from training.lessons import cifar10_resnet9  # noqa: E402
from training.run import Run  # noqa: E402

PROFILES = {"cpu": cifar10_resnet9.PROFILES["cpu"], "course": {}}


def course_batches(data_dir: Path, batch_size: int, workers: int):
    tfms = transforms.Compose([
        transforms.RandomCrop(32, padding=4, padding_mode="reflect"), transforms.RandomHorizontalFlip(),
        transforms.ToTensor(), transforms.Normalize(CIFAR_MEAN, CIFAR_STD, inplace=True)])
    dataset = ImageFolder(data_dir / "cifar10" / "train", tfms)
    loader = DataLoader(dataset, batch_size, shuffle=True, num_workers=workers,
                        pin_memory=torch.cuda.is_available(), persistent_workers=workers > 0)
    while True:
        yield from loader


def our_batches(data_dir: Path, batch_size: int):
    train, _ = load_cifar10(data_dir, download=False)
    with tempfile.TemporaryDirectory() as out:
        config = cifar10_resnet9.Config(epochs=10**6)
        run = Run("bench", cifar10_resnet9.TASK, config, "cpu", data_dir, Path(out), Accelerator(cpu=True))
        train = run.to_device(train)
        for _ in run.epochs():
            for images, labels in run.batches(train, batch_size):
                yield conv_input(random_crop_flip(images, padding=4)), labels
            run.progress.epoch += 1  # end_epoch's count, without its evaluation or a checkpoint
            run.progress.step = 0


class Trainer:
    """One pipeline: a ResNet9, its optimizer and a batch source, timed in chunks of steps."""

    def __init__(self, batches, width: int, channels_last: bool):
        torch.manual_seed(0)
        self.model = build_model("cifar10-resnet9", width=width)
        if channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=1e-3, weight_decay=1e-4)
        self.batches, self.seconds, self.images = batches, 0.0, 0

    def steps(self, count: int, timed: bool = True) -> None:
        start = time.perf_counter()
        for _ in range(count):
            images, labels = next(self.batches)  # fetching the batch is part of the step
            loss = F.cross_entropy(self.model(images), labels)
            loss.backward()
            torch.nn.utils.clip_grad_value_(self.model.parameters(), 0.1)
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)
            self.images += len(labels) if timed else 0
        self.seconds += time.perf_counter() - start if timed else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, default=Path(os.environ.get("ZTG_DATA_DIR", "data")))
    parser.add_argument("--profile", choices=PROFILES, default="cpu",
                        help="the lesson profile whose width and batch size to use (default: cpu)")
    parser.add_argument("--steps", type=int, default=30, help="timed steps per pipeline, after warm-up")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3, help="the pipelines take turns this many times")
    parser.add_argument("--workers", type=int, default=3, help="DataLoader workers of the course (it uses 3)")
    args = parser.parse_args()
    config = cifar10_resnet9.Config(**PROFILES[args.profile])
    width, batch = config.width, config.batch_size

    if not (args.data_dir / "cifar10" / "train").is_dir():  # the course's pipeline needs the image folder
        sys.exit(f"error: {args.data_dir}/cifar10/train/<class>/ not found; pass --data-dir with the "
                 "fast.ai layout of CIFAR-10 (python -m training cifar10-mlp downloads it there)")
    trainers = {
        "course pipeline": Trainer(course_batches(args.data_dir, batch, args.workers), width, channels_last=False),
        "course loader, channels_last": Trainer(course_batches(args.data_dir, batch, args.workers), width, True),
        "ours": Trainer(our_batches(args.data_dir, batch), width, channels_last=True),
    }
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads (OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')}), "
          f"{os.cpu_count()} cores, ResNet9 width "
          f"{width}, batch {batch}, {args.warmup} warm-up + {args.steps} timed steps each, load {os.getloadavg()[0]:.1f}")
    for trainer in trainers.values():
        trainer.steps(args.warmup, timed=False)
    per_round = [args.steps // args.rounds + (r < args.steps % args.rounds) for r in range(args.rounds)]
    for count in per_round:
        for trainer in trainers.values():
            trainer.steps(count)
    base = trainers["course pipeline"].images / trainers["course pipeline"].seconds
    print(f"{'pipeline':<32}{'img/s':>8}{'ratio':>8}")
    for name, trainer in trainers.items():
        speed = trainer.images / trainer.seconds
        print(f"{name:<32}{speed:>8.0f}{speed / base:>7.2f}x")
    print(f"ours / course pipeline: {trainers['ours'].images / trainers['ours'].seconds / base:.2f}x "
          f"(load average after: {os.getloadavg()[0]:.1f})")


if __name__ == "__main__":
    main()
