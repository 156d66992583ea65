"""Beyond lesson 5: the CIFAR-10 speedrun methods of airbench, sized for a CPU.

    python -m training cifar10-airbench --profile cpu --data-dir ../shared/datasets
    python -m training cifar10-airbench --profile cpu --lookahead=false     # one method off
    accelerate launch -m training cifar10-airbench --profile course         # the paper's settings, a GPU

K. Jordan, "94% on CIFAR-10 in 3.29 seconds on a single GPU" (2024) reaches 94% with a
sixth of the compute of lesson 5's recipe, through method rather than hardware. Each method
is a config field, so an ablation is one command line:

- `whiten`: the first layer is a fixed 2x2 patch-whitening convolution computed from the
  training images (eigenvectors of the patch covariance); only its bias trains, for the first
  `whiten_bias_epochs` epochs;
- `identity_init`: every 3x3 convolution starts as the identity on its input channels;
- `frozen_norm_scale`: batchnorm scales stay at 1 and the biases learn `bias_lr_scale` times
  faster (with the weight decay divided alike);
- Nesterov SGD with a triangular learning rate, and `lookahead`: every 5 steps the weights
  are pulled back towards a slow moving average of themselves, more and more towards the end;
- `label_smoothing`; `flip="alternating"`: each image is mirrored in every other epoch
  instead of at random; `translate`: random shifts of up to that many pixels (reflected);
- `tta`: test-time augmentation, 0 none, 1 the mirror image, 2 also 1-pixel shifts.

The learning rate and weight decay are in the paper's units (per 1024 images of a summed
loss); the lesson converts them for a mean loss, so `batch_size` can change with them.
All 50,000 images train (`val_size=0`, as in the paper); the per-epoch metrics are then on
the test set without test-time augmentation, and the final ones with it.

Expect, on the JPEG copy of CIFAR-10 and a 2-core Intel Xeon with AMX (nothing else running;
`bench/bench_cifar_speedrun.py` reruns all of it):
- cpu profile (widths 48-192-192, 10 epochs of 512): 90.07% after 1,042 s of training in fp32
  (477 img/s), 89.93% after 408 s with `--mixed-precision bf16` (1,216 img/s);
- the paper's widths, `--profile cpu --widths=64,256,256 --mixed-precision bf16` (the 15-minute
  setting): 90.85% over seeds 0, 1, 2 (91.00, 90.87, 90.69; std 0.16) after
  592 s of training on average (582-598 s);
- the long setting, `--profile cpu --widths=128,384,384 --epochs=15 --mixed-precision bf16`
  (airbench95's widths and epochs): 91.76% after 1,823 s (409 img/s); `--epochs=28`: 92.21%
  after 4,352 s (320 img/s, a slower day; 91.19% before TTA against 91.28% at 15 epochs).
On a CPU without bf16 units keep fp32 (the paper's widths then take about 25 minutes).
The paper's settings (`--profile course`) on one GPU: not measured yet (no GPU lent).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Annotated, Literal

import torch
import torch.nn.functional as F
from torch import nn

from shared.models import build_model
from shared.models.airbench import whitening_weights
from shared.models.cifar10 import CLASSES
from training.augment import crop_flip
from training.averaging import update_average
from training.cifar10_data import cifar_splits, conv_input, data_problem
from training.config import Count, Decay, Fraction, NonNegative, Positive, Range, Seed, Size
from training.data import TensorData
from training.evaluate import evaluate_classifier, report_test_set, test_metrics
from training.plots import learning_rate_figure
from training.report import Reference


@dataclass
class Config:
    widths: list[Count] = field(default_factory=lambda: [64, 256, 256])  # channels of the three blocks
    epochs: Count = 10
    batch_size: Count = 1024
    lr: Positive = 11.5  # per 1024 images of a summed loss (the paper's units), at the peak of the triangle
    momentum: Decay = 0.85  # Nesterov
    weight_decay: NonNegative = 0.0153  # the paper's units, like lr
    label_smoothing: Fraction = 0.2
    whiten: bool = True
    whiten_bias_epochs: Size = 3
    identity_init: bool = True
    frozen_norm_scale: bool = True
    bias_lr_scale: Positive = 64.0  # with frozen_norm_scale: how much faster batchnorm biases learn
    lookahead: bool = True
    flip: Literal["alternating", "random", "none"] = "alternating"
    translate: Size = 2  # pixels
    tta: Annotated[int, Range(0, 2)] = 2  # 0: none, 1: mirror, 2: mirror and 1-pixel shifts
    val_size: Size = 0  # as in the paper, every training image trains and the test set is watched
    synthetic_data: bool = False  # tiny generated data instead of the dataset (the smoke profile's)
    seed: Seed = 0


PROFILES = {
    "smoke": dict(widths=[8, 16, 16], epochs=2, batch_size=64, synthetic_data=True),
    "cpu": dict(widths=[48, 192, 192], epochs=10, batch_size=512),
    "course": dict(),  # the paper's airbench94, meant for a GPU
}

TASK = dict(type="image-classification", dataset="uoft-cs/cifar10", dataset_name="CIFAR-10",
            metrics={"test_accuracy": "Test accuracy"},
            summary="The airbench CIFAR-10 speedrun methods (patch whitening, identity init, lookahead, "
                    "alternating flip, multi-crop test-time augmentation), beyond lesson 5 of Zero to GANs.")
DATA = data_problem

REFERENCE = Reference("test_accuracy", 90.07, spread=0.5, seconds=1042, measured_on="2-core Intel Xeon (AMX), fp32",
                      spread_is="about 3 standard deviations between seeds (0.16 at the 15-minute setting)")

LOOKAHEAD_EVERY = 5  # steps
LOOKAHEAD_DECAY = 0.95**5  # the slow weights' share at the end of the run, before the final copy


class MultiCrop(nn.Module):
    """Test-time augmentation: the mean logits over the mirror image (level 1) and, at level 2,
    over copies shifted one pixel up-left and down-right (reflected), weighted half and half."""

    def __init__(self, model: nn.Module, level: int):
        super().__init__()
        self.model, self.level = model, level

    def mirrored(self, images):
        return (self.model(images) + self.model(images.flip(3))) / 2

    def forward(self, images):
        if self.level == 0:
            return self.model(images)
        if self.level == 1:
            return self.mirrored(images)
        b, device = len(images), images.device
        no_flip = torch.zeros(b, dtype=torch.bool, device=device)
        shifted = [crop_flip(images, torch.full((b, 2), s, device=device), no_flip) for s in (-1, 1)]
        return (self.mirrored(images) + (self.mirrored(shifted[0]) + self.mirrored(shifted[1])) / 2) / 2


def triangle(step: int, total: int) -> float:
    """The learning rate's factor: 0.2 -> 1 over the first 23% of the steps, then down to 0.07."""
    peak = 0.23 * total
    if step < peak:
        return 0.2 + 0.8 * step / peak
    return 1 - 0.93 * (step - peak) / max(total - peak, 1)


def epoch_images(train: TensorData, epoch: int, cfg: Config, chunk: int = 10_000) -> TensorData:
    """This epoch's augmented copy of the training images, the same on every process and on --resume.

    Alternating flip (the paper's derandomised flip): a fixed random half is mirrored in the odd
    epochs and the other half in the even ones, so every image is seen both ways every two epochs.
    """
    n = len(train)
    base = torch.Generator().manual_seed(cfg.seed)
    this_epoch = torch.Generator().manual_seed(cfg.seed * 100_003 + epoch)
    if cfg.flip == "alternating":
        flips = (torch.rand(n, generator=base) < 0.5) ^ (epoch % 2 == 0)
    elif cfg.flip == "random":
        flips = torch.rand(n, generator=this_epoch) < 0.5
    else:
        flips = torch.zeros(n, dtype=torch.bool)
    shifts = torch.randint(-cfg.translate, cfg.translate + 1, (n, 2), generator=this_epoch)
    device = train.inputs.device
    flips, shifts = flips.to(device), shifts.to(device)
    images = torch.cat([crop_flip(train.inputs[i:i + chunk], shifts[i:i + chunk], flips[i:i + chunk])
                        for i in range(0, n, chunk)])
    return TensorData(images, train.labels)


@torch.no_grad()
def initialise(model, train: TensorData, cfg: Config) -> None:
    """The paper's initialisation and which parameters train (frozen ones get no gradient)."""
    if cfg.whiten:
        model.whiten.weight.copy_(whitening_weights(conv_input(train.inputs[:5000]), model.whiten.kernel_size[0]))
        model.whiten.weight.requires_grad_(False)
    for module in model.modules():
        if cfg.identity_init and isinstance(module, nn.Conv2d) and module.kernel_size == (3, 3):
            nn.init.dirac_(module.weight[:min(module.in_channels, module.out_channels)])  # output channel i starts as input channel i
        if cfg.frozen_norm_scale and isinstance(module, nn.BatchNorm2d):
            module.weight.requires_grad_(False)


def optimizer_for(model, cfg: Config) -> torch.optim.SGD:
    """Nesterov SGD in three groups: the whitening bias, batchnorm biases (faster), the rest.

    The paper's lr is per 1024 images of a summed loss; for a mean loss over a batch of B it
    is lr * B / 1024 / (1 + 1 / (1 - momentum)). Weight decay is given as the step's shrink
    factor (wd / lr), so the shrink does not change when a group's lr is scaled.
    """
    kilostep = 1024 * (1 + 1 / (1 - cfg.momentum))
    lr, decay = cfg.lr * cfg.batch_size / kilostep, cfg.weight_decay * cfg.batch_size / kilostep
    bias_lr = lr * (cfg.bias_lr_scale if cfg.frozen_norm_scale else 1)
    whiten_bias = model.whiten.bias
    norm_biases = [m.bias for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    others = [p for p in model.parameters() if p.requires_grad and p is not whiten_bias
              and not any(p is b for b in norm_biases)]
    groups = [dict(params=[whiten_bias], lr=lr, weight_decay=decay / lr),
              dict(params=norm_biases, lr=bias_lr, weight_decay=decay / bias_lr),
              dict(params=others, lr=lr, weight_decay=decay / lr)]
    return torch.optim.SGD(groups, lr=lr, momentum=cfg.momentum, nesterov=True)


def train(run):
    cfg = run.config
    train_set, val_set, test_set = cifar_splits(run)

    model = build_model("cifar10-airbench", widths=cfg.widths)
    initialise(model, train_set, cfg)
    model = model.to(memory_format=torch.channels_last)
    slow = copy.deepcopy(model) if cfg.lookahead else None  # the lookahead's slow weights
    optimizer = optimizer_for(model, cfg)
    per_epoch = run.steps_per_epoch(train_set, cfg.batch_size)
    steps = cfg.epochs * per_epoch
    bias_steps = cfg.whiten_bias_epochs * per_epoch if cfg.whiten else steps  # the whitening bias, then frozen
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, [  # one factor per group of optimizer_for
        lambda step: triangle(step, steps) if step < bias_steps else 0.0,
        lambda step: triangle(step, steps), lambda step: triangle(step, steps)])
    run.add_file("learning_rate.png", learning_rate_figure(
        [triangle(s, steps) for s in range(steps)], "cifar10-airbench: learning rate (share of the peak)"))
    slow = run.keep(slow=slow)  # never trained by a gradient: not prepared
    model, optimizer, scheduler = run.prepare(model=model, optimizer=optimizer, scheduler=scheduler, publish="model")
    unwrap = run.accelerator.unwrap_model
    checked = "val" if cfg.val_size else "test"

    def pull_back(decay: float) -> None:  # lookahead: slow <- its average with the weights; weights <- slow
        update_average(unwrap(slow), unwrap(model), decay)
        unwrap(model).load_state_dict(unwrap(slow).state_dict())

    for epoch in run.epochs():
        model.train()
        for images, labels in run.batches(epoch_images(train_set, epoch, cfg), cfg.batch_size):
            loss = F.cross_entropy(model(conv_input(images)), labels, label_smoothing=cfg.label_smoothing)
            run.accelerator.backward(loss)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            scheduler.step()
            if slow is not None and run.global_step % LOOKAHEAD_EVERY == 0:
                pull_back(LOOKAHEAD_DECAY * (run.global_step / steps) ** 3)
            run.log_step(loss=loss)
        if slow is not None and epoch == cfg.epochs:
            pull_back(1.0)  # the run ends on the slow weights
        val = evaluate_classifier(run, model, val_set, conv_input)
        run.end_epoch(**{f"{checked}_loss": val["loss"], f"{checked}_accuracy": val["accuracy"]},
                      lr=scheduler.get_last_lr()[-1])
        run.save_checkpoint()
    test = report_test_set(run, MultiCrop(model, cfg.tta), test_set, conv_input, CLASSES)
    return run.finish(**test_metrics(test, model), test_time_augmentation=cfg.tta)
