"""Training throughput: our MNIST path vs the course notebook's pipeline, measured in one run.

    python bench/bench_mnist_training.py --data-dir ../shared/datasets [--steps 300] [--lesson-epochs 3]

Course pipeline: torchvision `MNIST(transform=ToTensor())` + `DataLoader(batch_size=128,
shuffle=True)`: every image is converted from PIL to a tensor in every epoch.
Ours: MNIST decoded once into a uint8 tensor; a batch is one indexing operation plus the
normalisation (`training.run.Run.batches`, exactly what the lessons use).
Both train the same model with the same optimizer and batch size; the ratio is printed.
Lesson: the real lesson (`python -m training mnist-logistic|mnist-mlp --profile cpu`, the
MLP with --augment=false, as the course trains it), its own samples_per_second from
metrics.json: the step plus everything the spine does around it (NaN and stop checks,
logging, the scheduler), evaluation and checkpoints excluded. `bare/lesson` is what the
spine costs: 1.0 would be free.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from accelerate import Accelerator
from torch.utils.data import DataLoader
from torchvision import transforms
from torchvision.datasets import MNIST

from shared.models import build_model
from shared.preprocessing import MNIST_MEAN, MNIST_STD, normalize_mnist
from training.lessons import mnist_logistic
from training.mnist_data import load_mnist
from training.run import Run

BATCH = 128


def timed_steps(model, optimizer, batches, steps: int, warmup: int = 20) -> float:
    """Images per second over `steps` training steps after `warmup` steps."""
    start = None
    for done, (images, labels) in enumerate(batches, start=1):
        loss = F.cross_entropy(model(images), labels)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        if done == warmup:
            start = time.perf_counter()
        if done == warmup + steps:
            return steps * BATCH / (time.perf_counter() - start)
    raise ValueError("dataset too small for the requested steps")


def course_batches(data_dir: Path):
    # The course: PIL image -> ToTensor per sample, in the DataLoader, every epoch.
    dataset = MNIST(data_dir, train=True, transform=transforms.Compose([
        transforms.ToTensor(), transforms.Normalize((MNIST_MEAN,), (MNIST_STD,))]))
    while True:
        yield from DataLoader(dataset, batch_size=BATCH, shuffle=True)


def our_batches(data_dir: Path):
    train, _ = load_mnist(data_dir)
    with tempfile.TemporaryDirectory() as out:
        run = Run("bench", mnist_logistic.TASK, mnist_logistic.Config(epochs=10**6), "cpu", data_dir,
                  Path(out), Accelerator(cpu=True))
        for _ in run.epochs():
            for images, labels in run.batches(train, BATCH):
                yield normalize_mnist(images), labels
            run.progress.epoch += 1  # end_epoch's count, without its evaluation or a checkpoint
            run.progress.step = 0


LESSON_ARGS = {"mnist-logistic": [], "mnist-mlp": ["--augment=false"]}


def lesson_speed(name: str, data_dir: Path, epochs: int) -> float:
    """samples_per_second that the lesson itself reports, run through the command line in this process."""
    from training.cli import main as training_main

    with tempfile.TemporaryDirectory() as out:
        training_main([name, "--profile", "cpu", f"--epochs={epochs}", "--data-dir", str(data_dir),
                       "--out-dir", out, *LESSON_ARGS[name]])
        return json.loads((Path(out) / name / "metrics.json").read_text())["samples_per_second"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, default=Path("data"))
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--models", default="mnist-logistic,mnist-mlp,mnist-cnn")
    parser.add_argument("--lesson-epochs", type=int, default=3, help="epochs of the lesson runs")
    args = parser.parse_args()

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {BATCH}, {args.steps} timed steps")
    print(f"{'model':<16}{'course img/s':>14}{'ours img/s':>14}{'ratio':>8}{'lesson img/s':>14}"
          f"{'lesson/course':>15}{'bare/lesson':>13}")
    for name in args.models.split(","):
        speeds = []
        for batches in (course_batches(args.data_dir), our_batches(args.data_dir)):
            torch.manual_seed(0)
            model = build_model(name)
            optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
            speeds.append(timed_steps(model, optimizer, batches, args.steps))
        row = f"{name:<16}{speeds[0]:>14.0f}{speeds[1]:>14.0f}{speeds[1] / speeds[0]:>7.1f}x"
        if name in LESSON_ARGS:
            lesson = lesson_speed(name, args.data_dir, args.lesson_epochs)
            row += f"{lesson:>14.0f}{lesson / speeds[0]:>14.1f}x{speeds[1] / lesson:>12.2f}x"
        print(row, flush=True)


if __name__ == "__main__":
    main()
