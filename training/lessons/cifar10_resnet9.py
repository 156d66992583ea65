"""Lesson 5: ResNet9 on CIFAR-10 with batchnorm, augmentation and a one-cycle learning rate.

    python -m training cifar10-resnet9 --profile cpu --data-dir ../shared/datasets
    accelerate launch -m training cifar10-resnet9 --profile course          # on a GPU
    accelerate launch -m training cifar10-resnet9 --profile course --fast=true

The course's recipe: residual blocks and batchnorm, random crops with 4-pixel reflect
padding and horizontal flips, Adam with a one-cycle schedule peaking at 0.01, weight decay
1e-4, gradients clipped to [-0.1, 0.1], 8 epochs of batches of 400. The data never leaves
the device: one uint8 tensor, augmented a whole batch at a time. Convolutions run
`channels_last` (1.2x faster on a 2-core CPU: bench/bench_cifar_training.py); on a GPU
Accelerate adds bf16 autocast, and `accelerate launch --dynamo_backend inductor` adds
`torch.compile` (on the 2-core CPU it made a training step slower: 649 vs 751 img/s).

`--fast=true` adds what the speed records use: label smoothing, the average of the
predictions for each image and its mirror image (test-time augmentation), and an
exponential moving average of the weights (which is what gets published).
On purpose unlike the notebook: the cpu profile holds out 5,000 training images for
validation and adds `--fast`, EMA included (course profile: the notebook's split, below).

`learning_rate.png` draws the rate of every step (the one-cycle shape). `--profile course`
uses the course's split (`--val_size=0`): all 50,000 images train and the test set is the
validation set, so the per-epoch metrics are named `test_loss` and `test_accuracy`, and
metrics.json says `validated_on` the test set.

Expect, on the JPEG copy of CIFAR-10: cpu profile (a quarter of the channels, 16 to 128;
6 epochs of 256 with --fast) 81.6% test accuracy after 366 s of training on a 2-core AMD
EPYC (AVX2; 734 img/s, nothing else running). Course profile: the course reports 90.5% on
the original PNGs in about 4.5 minutes on a Colab GPU; not measured here yet.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from shared.models import build_model
from shared.models.cifar10 import CLASSES
from training.augment import random_crop_flip
from training.averaging import decay_at, update_average
from training.cifar10_data import cifar_splits, conv_input, data_problem
from training.config import Count, Decay, Fraction, NonNegative, Positive, Seed, Size
from training.evaluate import evaluate_classifier, report_test_set, test_metrics
from training.plots import learning_rate_figure
from training.report import Reference


@dataclass
class Config:
    width: Count = 64  # channels of the first convolution; 64 is the course's network
    epochs: Count = 8
    batch_size: Count = 400
    max_lr: Positive = 0.01  # peak of the one-cycle schedule
    weight_decay: NonNegative = 1e-4
    grad_clip: Positive = 0.1  # every gradient element is clipped to [-0.1, 0.1]
    dropout: Fraction = 0.2
    augment: bool = True  # random 32x32 crops of the reflect-padded image, random mirroring
    fast: bool = False  # label smoothing, flip test-time augmentation, weight averaging
    label_smoothing: Fraction = 0.2  # with --fast
    ema_decay: Decay = 0.99  # with --fast: weight of the running average at every step
    val_size: Size = 5_000  # 0: the course's split, all 50,000 images train and the test set validates
    synthetic_data: bool = False  # tiny generated data instead of the dataset (the smoke profile's)
    seed: Seed = 0


PROFILES = {
    "smoke": dict(width=8, epochs=2, batch_size=64, val_size=128, synthetic_data=True),
    "cpu": dict(width=16, epochs=6, batch_size=256, fast=True),  # a quarter of the channels
    "course": dict(val_size=0),
}

TASK = dict(type="image-classification", dataset="uoft-cs/cifar10", dataset_name="CIFAR-10",
            metrics={"test_accuracy": "Test accuracy"},
            summary="ResNet9 with batchnorm, data augmentation and a one-cycle learning rate on "
                    "CIFAR-10: lesson 5 of Zero to GANs.")
DATA = data_problem

REFERENCE = Reference("test_accuracy", 81.59, spread=1.0, seconds=366.2)


VALIDATED_ON = {"val": "a seeded part of the training images (val_size)",
                "test": "the test set, as the course does (val_size=0): every training image trains"}


class FlipAverage(torch.nn.Module):
    """Test-time augmentation: the mean of the logits for each image and for its mirror image."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, images):
        return (self.model(images) + self.model(images.flip(3))) / 2


def one_cycle(optimizer, max_lr: float, steps: int):
    """The learning rate warms up to max_lr over the first 30% of the steps, then anneals to ~0."""
    return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr, total_steps=steps)


def schedule(make_scheduler, steps: int) -> list[float]:
    """The rate of every step of a scheduler built afresh on a stand-in optimizer: the whole
    curve a run follows, also when --resume starts it halfway."""
    optimizer = torch.optim.Adam([torch.zeros(1, requires_grad=True)])
    scheduler, rates = make_scheduler(optimizer), []
    for _ in range(steps):
        rates.append(scheduler.get_last_lr()[0])
        optimizer.step()  # a no-op (no gradient); keeps the scheduler's order check quiet
        scheduler.step()
    return rates


def train(run):
    cfg = run.config
    train_set, val_set, test_set = cifar_splits(run)

    model = build_model("cifar10-resnet9", width=cfg.width, dropout=cfg.dropout)
    model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.max_lr, weight_decay=cfg.weight_decay)
    steps = cfg.epochs * run.steps_per_epoch(train_set, cfg.batch_size)
    scheduler = one_cycle(optimizer, cfg.max_lr, steps)
    run.add_file("learning_rate.png", learning_rate_figure(
        schedule(lambda opt: one_cycle(opt, cfg.max_lr, steps), steps), "cifar10-resnet9: one-cycle learning rate"))
    # With --fast the average is what gets published; the raw weights go to model/ for --resume.
    average = run.keep(average=copy.deepcopy(model) if cfg.fast else None)  # never trained: not prepared
    model, optimizer, scheduler = run.prepare(model=model, optimizer=optimizer, scheduler=scheduler,
                                              publish="average" if cfg.fast else "model")
    smoothing = cfg.label_smoothing if cfg.fast else 0.0
    checked = "val" if cfg.val_size else "test"  # what the per-epoch metrics are named after
    unwrap = run.accelerator.unwrap_model

    def predictor():  # what is evaluated: the averaged weights, and both mirror images, with --fast
        return FlipAverage(average) if cfg.fast else model

    for _ in run.epochs():
        model.train()
        for images, labels in run.batches(train_set, cfg.batch_size):
            if cfg.augment:
                images = random_crop_flip(images, padding=4)
            loss = F.cross_entropy(model(conv_input(images)), labels, label_smoothing=smoothing)
            run.accelerator.backward(loss)
            run.accelerator.clip_grad_value_(model.parameters(), cfg.grad_clip)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            scheduler.step()
            if average is not None:  # a shorter memory in the first steps, so early weights fade fast
                update_average(unwrap(average), unwrap(model), decay_at(run.global_step, cfg.ema_decay))
            run.log_step(loss=loss)
        val = evaluate_classifier(run, predictor(), val_set, conv_input)
        run.end_epoch(**{f"{checked}_loss": val["loss"], f"{checked}_accuracy": val["accuracy"]},
                      lr=scheduler.get_last_lr()[0])
        run.save_checkpoint()
    test = report_test_set(run, predictor(), test_set, conv_input, CLASSES)
    return run.finish(**test_metrics(test, model), validated_on=VALIDATED_ON[checked])
