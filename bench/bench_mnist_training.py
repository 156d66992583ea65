"""Training throughput: our MNIST path vs the course notebook's pipeline, measured in one run.

    python bench/bench_mnist_training.py --data-dir ../shared/datasets [--lesson-epochs 3]

Course pipeline, as the notebook runs it: torchvision `MNIST(transform=ToTensor())`,
`random_split` into 50,000 training and 10,000 validation images, `DataLoader(batch_size=128,
shuffle=True)`, plain SGD: every image is converted from PIL to a tensor in every epoch.
Bare: the same model and SGD on our path, MNIST decoded once into a uint8 tensor, a batch one
indexing operation plus the normalisation (`training.run.Run.batches`, what the lessons use).
Both are timed over one epoch after 20 warm-up batches; `bare/course` is the data path's gain.
Lesson: the real lesson (`python -m training mnist-logistic|mnist-mlp --profile cpu`, the
MLP with --augment=false, as the course trains it), its own samples_per_second from
metrics.json: its optimizer (AdamW for the MLP) and everything the spine does around the
step (NaN and stop checks, logging, the scheduler), evaluation and checkpoints excluded.
`lesson/course` is the issue's ratio; `bare/lesson` is what the spine and the lesson's
optimizer cost: 1.0 would be free.

    python bench/bench_mnist_training.py --data-dir ../shared/datasets --parts

prints instead where the time of mnist-mlp's step goes: microseconds per call of each part
of the lesson's step (cpu profile, --augment=false: its AdamW, scheduler and spine), each
called over and over on one batch, then the whole step as the lesson's loop body runs it
(without `run.batches` around it).
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
from torch.utils.data import DataLoader, random_split
from torchvision import transforms
from torchvision.datasets import MNIST

from shared.models import build_model
from shared.preprocessing import normalize_mnist
from training.lessons import mnist_logistic, mnist_mlp
from training.mnist_data import load_mnist
from training.run import Run

BATCH = 128
WARMUP = 20  # batches before the clock starts


def timed_epoch(model, optimizer, batches) -> float:
    """Images per second over one epoch's `batches` after the first WARMUP of them."""
    seen, start = 0, None
    for done, (images, labels) in enumerate(batches, start=1):
        loss = F.cross_entropy(model(images), labels)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        if done == WARMUP:
            start = time.perf_counter()
        elif done > WARMUP:
            seen += len(images)
    return seen / (time.perf_counter() - start)


def course_batches(data_dir: Path):
    # The notebook: PIL image -> ToTensor per sample, in the DataLoader, every epoch.
    dataset = MNIST(data_dir, train=True, transform=transforms.ToTensor())
    train, _ = random_split(dataset, [50_000, 10_000], generator=torch.Generator().manual_seed(42))
    return DataLoader(train, batch_size=BATCH, shuffle=True)


def our_batches(data_dir: Path):
    train, _ = load_mnist(data_dir)
    with tempfile.TemporaryDirectory() as out:
        run = Run("bench", mnist_logistic.TASK, mnist_logistic.Config(epochs=1), "cpu", data_dir,
                  Path(out), Accelerator(cpu=True))
        next(run.epochs())  # the epoch's counters, as the lessons' loop opens them
        for images, labels in run.batches(train, BATCH):
            yield normalize_mnist(images), labels


LESSON_ARGS = {"mnist-logistic": [], "mnist-mlp": ["--augment=false"]}


def lesson_speed(name: str, data_dir: Path, epochs: int) -> float:
    """samples_per_second that the lesson itself reports, run through the command line in this process."""
    from training.cli import main as training_main

    with tempfile.TemporaryDirectory() as out:
        training_main([name, "--profile", "cpu", f"--epochs={epochs}", "--data-dir", str(data_dir),
                       "--out-dir", out, *LESSON_ARGS[name]])
        return json.loads((Path(out) / name / "metrics.json").read_text())["samples_per_second"]


def step_parts(data_dir: Path, calls: int = 3000) -> None:
    """Microseconds per call of each part of the mnist-mlp lesson's step, then of the whole step."""
    from training.cli import make_run

    train, _ = load_mnist(data_dir)
    with tempfile.TemporaryDirectory() as out:
        _, run = make_run("mnist-mlp", ["--augment=false"], profile="cpu", data_dir=data_dir, out_dir=Path(out))
        torch.manual_seed(0)
        model = build_model("mnist-mlp", hidden_sizes=run.config.hidden_sizes)
        optimizer, scheduler = mnist_mlp.make_optimizer(run.config, model.parameters(),
                                                        run.steps_per_epoch(train, run.config.batch_size))
        model, optimizer, scheduler = run.prepare(model=model, optimizer=optimizer, scheduler=scheduler)
        index = torch.randperm(len(train))[:BATCH]
        images, labels = train.inputs[index], train.labels[index]
        inputs = normalize_mnist(images)
        loss = F.cross_entropy(model(inputs), labels)

        def whole():
            loss = F.cross_entropy(model(normalize_mnist(train.inputs[index])), train.labels[index])
            run.accelerator.backward(loss)
            optimizer.step()
            optimizer.zero_grad()
            scheduler.step()
            run.log_step(loss=loss)

        parts = {
            "a batch: index the images and the labels": lambda: (train.inputs[index], train.labels[index]),
            "normalize_mnist": lambda: normalize_mnist(images),
            "forward and loss": lambda: F.cross_entropy(model(inputs), labels),
            "forward, loss, accelerator.backward": lambda: run.accelerator.backward(
                F.cross_entropy(model(inputs), labels)),
            "optimizer.step (fused AdamW, Accelerate's wrapper)": optimizer.step,
            "optimizer.zero_grad": optimizer.zero_grad,
            "scheduler.step (cosine)": scheduler.step,
            "run.log_step": lambda: run.log_step(loss=loss),
            "the whole step (the lesson's loop body)": whole,
        }
        print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {BATCH}; "
              f"microseconds per call over {calls} calls after {calls // 10}")
        for name, part in parts.items():
            for _ in range(calls // 10):
                part()
            start = time.perf_counter()
            for _ in range(calls):
                part()
            print(f"{name:<54}{(time.perf_counter() - start) / calls * 1e6:8.1f}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, default=Path("data"))
    parser.add_argument("--models", default="mnist-logistic,mnist-mlp,mnist-cnn")
    parser.add_argument("--lesson-epochs", type=int, default=3, help="epochs of the lesson runs")
    parser.add_argument("--parts", action="store_true", help="where the time of mnist-mlp's step goes, instead")
    args = parser.parse_args()
    if args.parts:
        step_parts(args.data_dir)
        return

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {BATCH}, one epoch after {WARMUP} batches")
    print(f"{'model':<16}{'course img/s':>14}{'bare img/s':>14}{'ratio':>8}{'lesson img/s':>14}"
          f"{'lesson/course':>15}{'bare/lesson':>13}")
    for name in args.models.split(","):
        speeds = []
        for batches in (course_batches(args.data_dir), our_batches(args.data_dir)):
            torch.manual_seed(0)
            model = build_model(name)
            optimizer = torch.optim.SGD(model.parameters(), lr=0.5)  # the course's fit(5, 0.5, ...)
            speeds.append(timed_epoch(model, optimizer, batches))
        row = f"{name:<16}{speeds[0]:>14.0f}{speeds[1]:>14.0f}{speeds[1] / speeds[0]:>7.1f}x"
        if name in LESSON_ARGS:
            lesson = lesson_speed(name, args.data_dir, args.lesson_epochs)
            row += f"{lesson:>14.0f}{lesson / speeds[0]:>14.1f}x{speeds[1] / lesson:>12.2f}x"
        print(row, flush=True)


if __name__ == "__main__":
    main()
