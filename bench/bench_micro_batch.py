"""Images per second of airbench's network by the size of the parts a batch is passed in, in one run.

    python bench/bench_micro_batch.py [--precision no|bf16] [--widths 48,192,192] [--batch 2000] [--rounds 4]

Training: one optimizer batch of `--batch` images (random pixels: the speed of a convolution does
not depend on them) goes forward and backward whole, then in parts of 1000, 500, 250 and 125,
through the lesson's own path: `Run.micro_batches` (each part's mean loss times its share,
gradients summed) and `accelerator.backward` on a model that `Accelerator.prepare` wrapped. The
settings take turns, `--rounds` times, so a drift of the machine's speed hits each alike; the
median per setting is reported, with its ratio to the whole batch. Evaluation: the same network
in eval mode, without gradients, over 4,000 images in batches of each size, against 1,000 (the
old default of `training.evaluate.evaluate_classifier`). Everything runs in this process, under
the given precision (`bf16`: Accelerate's CPU autocast, as `--mixed-precision bf16`), with
channels-last memory like the lesson. Run it alone: another job on the cores changes the times.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from accelerate import Accelerator

from shared.models import build_model
from training.checkpoint import cpu_name
from training.lessons import cifar10_airbench
from training.run import Run

PARTS = (0, 1000, 500, 250, 125)  # 0: the whole batch at once
EVAL_BATCHES = (1000, 500, 250, 125)


def train_step(run, model, images, labels, part: int) -> None:
    for chunk, chunk_labels, share in run.micro_batches(model, images, labels, part):
        loss = F.cross_entropy(model(chunk), chunk_labels, label_smoothing=0.2) * share
        run.accelerator.backward(loss)
    model.zero_grad(set_to_none=True)


@torch.no_grad()
def evaluate(model, images, batch: int) -> None:
    for chunk in images.split(batch):
        model(chunk)


def timed_rounds(settings, run, rounds: int) -> dict:
    """Median seconds of run(setting) per setting, the settings taking turns; one untimed warm-up each."""
    for setting in settings:
        run(setting)
    seconds = {setting: [] for setting in settings}
    for _ in range(rounds):
        for setting in settings:
            start = time.perf_counter()
            run(setting)
            seconds[setting].append(time.perf_counter() - start)
    return {setting: statistics.median(times) for setting, times in seconds.items()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--precision", choices=("no", "bf16"), default="no")
    p.add_argument("--widths", default="48,192,192", help="the network's three widths (the cpu profile's)")
    p.add_argument("--batch", type=int, default=2000, help="images per optimizer step (the cpu profile's)")
    p.add_argument("--rounds", type=int, default=4)
    args = p.parse_args()

    torch.manual_seed(0)
    model = build_model("cifar10-airbench", widths=[int(w) for w in args.widths.split(",")])
    with tempfile.TemporaryDirectory() as out:  # the Run's folder: nothing is written to it, removed at the end
        run = Run("bench", cifar10_airbench.TASK, cifar10_airbench.Config(), "cpu", Path("data"), Path(out),
                  Accelerator(cpu=True, mixed_precision=args.precision))
        model = run.accelerator.prepare(model.to(memory_format=torch.channels_last))  # bf16: forwards under autocast
        images = torch.randn(args.batch, 3, 32, 32).contiguous(memory_format=torch.channels_last)
        labels = torch.randint(0, 10, (args.batch,))
        print(f"{cpu_name()}, precision {args.precision}, "
              f"widths {args.widths}, {args.rounds} rounds")

        model.train()
        train = timed_rounds(PARTS, lambda part: train_step(run, model, images, labels, part), args.rounds)
        print(f"\ntraining, one step of {args.batch} images:")
        print("| parts of | img/s | vs whole batch |\n|---|---|---|")
        for part, seconds in train.items():
            print(f"| {part or f'{args.batch} (whole)'} | {args.batch / seconds:,.0f} | {train[0] / seconds:.2f}x |")

        model.eval()
        test = torch.randn(4000, 3, 32, 32).contiguous(memory_format=torch.channels_last)
        evaluation = timed_rounds(EVAL_BATCHES, lambda batch: evaluate(model, test, batch), args.rounds)
        print("\nevaluation, 4,000 images:")
        print("| batch | img/s | vs 1000 |\n|---|---|---|")
        for batch, seconds in evaluation.items():
            print(f"| {batch} | {len(test) / seconds:,.0f} | {evaluation[1000] / seconds:.2f}x |")


if __name__ == "__main__":
    main()
