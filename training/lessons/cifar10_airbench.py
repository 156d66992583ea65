"""Beyond lesson 5: the CIFAR-10 speedrun methods of airbench, sized for a CPU.

    python -m training cifar10-airbench --profile cpu --data-dir ../shared/datasets   # Muon, 9 epochs of 1000
    python -m training cifar10-airbench --profile cpu --batch_size=2000 --muon_lr=0.24 --crop=0 \
        --eval_every=1 --mixed-precision bf16      # the cpu profile before, measured in bf16 on a CPU with AMX
    python -m training cifar10-airbench --profile course --widths=48,192,192 --epochs=10 --batch_size=512 \
        --micro_batch=256                        # airbench94's SGD recipe at the cpu widths (the profile before Muon)
    python -m training cifar10-airbench --profile course --lookahead=false   # one method off
    accelerate launch -m training cifar10-airbench --profile course         # the paper's settings, a GPU

K. Jordan, "94% on CIFAR-10 in 3.29 seconds on a single GPU" (2024) reaches 94% with a
sixth of the compute of lesson 5's recipe, through method rather than hardware. Each method
is a config field, so an ablation is one command line:

- `whiten`: a fixed first layer that whitens 2x2 patches (from the training images' patch
  covariance); only its bias trains, for `whiten_bias_epochs`; `identity_init`: every 3x3
  convolution starts as the identity; `frozen_norm_scale`: batchnorm scales stay at 1 and their
  biases learn `bias_lr_scale` times faster (`--frozen_norm_scale=false` drops both);
- Nesterov SGD, its learning rate rising from 0.2 to 1 over the first `warmup` of the steps and
  falling to `lr_end`; `lookahead`: every 5 steps the weights are pulled towards a slow average
  of themselves; `optimizer=muon` (airbench94_muon): the 3x3 filters learn by Muon instead
  (training/muon.py), everything else by the SGD (the parameter groups and schedules:
  training/airbench_optim.py);
- `label_smoothing`; `flip=alternating`: each image mirrored in every other epoch, not at
  random; `translate`: shifts of up to that many pixels; `cutout`: a square of that side blanked;
  `tta`: test-time augmentation (1 the mirror image, 2 also 1-pixel shifts);
- `crop` for the first `crop_epochs` epochs (not the paper's; progressive resizing): they train on
  random crop x crop windows, which cost fewer FLOPs (a 24x24 window about half of a 32x32 image),
  and the last epochs on whole images, as the test sees them;
- airbench96: `block_depth=3` (a third convolution and a residual in each block), and
  `proxy_keep` < 1: each batch trains on its hardest share as a small network judges it
  (airbench96_faster's selection, training/proxy.py). Its recipe: `--profile course
  --block_depth=3 --widths=128,384,512 --translate=4 --cutout=12 --warmup=0.1 --lr_end=0 --lr=9
  --weight_decay=0.012 --proxy_keep=0.5 --batch_size=1024 --epochs=45`.

`RECIPES` holds airbench94_muon's settings and airbench96's ingredients, which the cpu profile,
the benchmarks and the README's commands build on.

`micro_batch`: the forward and backward passes take that many images at a time, their gradients
summed into the batch's, so the optimizer steps as before; batchnorm normalises each part by its
own statistics. On a CPU small parts train faster per image (the cpu profile's 256; the README's
speedrun section has the measurements); on a GPU the whole batch at once (0) is fastest.

lr and weight_decay are in the paper's units (per 1024 images of a summed loss), converted here
for a mean loss, so `batch_size` can change alone. All 50,000 images train (`val_size=0`, as in
the paper): the per-epoch metrics are on the test set without test-time augmentation, the final
ones with it; `eval_every` spaces the per-epoch ones out (each about 5 s against an epoch's 110-125
s on a 2-core Zen 4 AMD EPYC in fp32; 0: after the last epoch only). The last epoch's are read off
the multi-crop pass, whose first view is the images as they are, so the test set is not passed
twice. metrics.json's `wall_seconds` is the whole lesson, `train_seconds` its batches.

Expect, on the JPEG copy of CIFAR-10 (the README's speedrun section has every setting;
`bench/bench_cifar_speedrun.py` reruns them): the cpu profile (airbench94_muon's recipe at widths
48-192-192, 9 epochs of 1000, the first 6 on 28x28 windows, in parts of 256) 90.11% (mean of
seeds 0-2) in 832-851 s of wall_seconds, 14.0-14.3 minutes of command, on a 2-core Zen 4 AMD EPYC
(AVX-512, fp32, alone). The profile before it (`--batch_size=2000 --muon_lr=0.24 --crop=0
--eval_every=1`: 9 epochs of 2000 on whole images) reached 90.02% in 891-894 s in fp32 and 90.26%
in 327-335 s with `--mixed-precision bf16` on a 2-core Intel Xeon with AMX, and 90.10% in
1,078-1,113 s on the Zen 4 EPYC; the README's AVX2 reference EPYC is not measured yet.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field, replace
from typing import Annotated, Literal

import torch
import torch.nn.functional as F
from torch import nn

from shared.models import build_model
from shared.models.airbench import whitening_weights
from shared.models.cifar10 import CLASSES
from training.airbench_optim import lr_factor, optimizer_for, scheduled
from training.augment import EpochDraw, MultiCrop
from training.averaging import update_average
from training.cifar10_data import cifar_splits, conv_input, data_problem
from training.config import Count, Decay, Fraction, NonNegative, Positive, Range, Seed, Size
from training.data import TensorData
from training.evaluate import evaluate_classifier, report_test_set, test_metrics
from training.plots import learning_rate_figure
from training.proxy import HardestShare
from training.report import Reference


@dataclass
class Config:
    widths: list[Count] = field(default_factory=lambda: [64, 256, 256])  # channels of the three blocks
    block_depth: Literal[2, 3] = 2  # 3: airbench96's third convolution, with a residual, in each block
    epochs: Count = 10
    batch_size: Count = 1024
    micro_batch: Size = 0  # images per forward/backward pass, their gradients summed to the batch's (0: all)
    optimizer: Literal["sgd", "muon"] = "sgd"  # muon: Muon for the 3x3 convolutions' filters, SGD for the rest
    lr: Positive = 11.5  # per 1024 images of a summed loss (the paper's units), at the peak of the schedule
    momentum: Decay = 0.85  # Nesterov
    weight_decay: NonNegative = 0.0153  # the paper's units, like lr
    warmup: Fraction = 0.23  # share of the steps over which the lr rises from 0.2 of its peak (0: none)
    lr_end: Fraction = 0.07  # the lr's share of its peak at the last step (0: decay to zero)
    muon_lr: Positive = 0.24  # with optimizer=muon (airbench94_muon's, at batch 2000)
    muon_momentum: Decay = 0.6  # Nesterov
    label_smoothing: Fraction = 0.2
    whiten: bool = True
    whiten_bias_epochs: Size = 3
    identity_init: bool = True
    frozen_norm_scale: bool = True
    bias_lr_scale: Positive = 64.0  # with frozen_norm_scale: how much faster batchnorm biases learn
    lookahead: bool = True
    flip: Literal["alternating", "random", "none"] = "alternating"
    translate: Size = 2  # pixels (airbench96: 4)
    cutout: Size = 0  # side of the square blanked in each training image (airbench96: 12)
    crop: Annotated[int, Range(0, 32)] = 0  # > 0: the first crop_epochs epochs train on crop x crop windows
    crop_epochs: Size = 0
    proxy_keep: Annotated[float, Range(0, 1, above=True)] = 1.0  # < 1: the hardest share of each batch trains
    proxy_widths: list[Count] = field(default_factory=lambda: [32, 64, 64])  # the proxy judging it
    tta: Annotated[int, Range(0, 2)] = 2  # 0: none, 1: mirror, 2: mirror and 1-pixel shifts
    eval_every: Size = 1  # evaluate the test set after every that many epochs and after the last (0: the last only)
    val_size: Size = 0  # as in the paper, every training image trains and the test set is watched
    synthetic_data: bool = False  # tiny generated data instead of the dataset (the smoke profile's)
    seed: Seed = 0


# The airbench repository's later recipes, as settings over the course profile (the paper's airbench94);
# the README's speedrun section, bench/bench_cifar_speedrun.py and bench/gpu_acceptance.py run them.
RECIPES = {
    # airbench94_muon: Muon on the filters, batch 2000, 8 epochs, a linear decay to 0, no lookahead
    # (lr 6.5 in the paper's units is its SGD learning rates for the biases and the head)
    "airbench94_muon": dict(optimizer="muon", batch_size=2000, epochs=8, lr=6.5, warmup=0.0, lr_end=0.0,
                            lookahead=False),
    # airbench96_faster's ingredients: residual third convolutions, translate 4, cutout 12, a 10% warm-up
    # decaying to 0, lr 9, weight decay 0.012, training on the hardest half of each batch of 1024; its own
    # run adds widths=[128, 384, 512] and epochs=45
    "airbench96": dict(block_depth=3, translate=4, cutout=12, warmup=0.1, lr_end=0.0, lr=9.0, weight_decay=0.012,
                       proxy_keep=0.5, batch_size=1024),
}

PROFILES = {
    "smoke": dict(widths=[8, 16, 16], epochs=2, batch_size=64, micro_batch=48, synthetic_data=True, proxy_widths=[4, 8, 8]),
    # airbench94_muon's recipe at the narrow widths, sized for 2 cores in fp32: 9 epochs of 1000 (Muon's rate
    # over the square root of 2), the first 6 on 28x28 windows, in parts of 256, the test set evaluated at the end
    "cpu": RECIPES["airbench94_muon"] | dict(widths=[48, 192, 192], epochs=9, batch_size=1000, muon_lr=0.17,
                                             crop=28, crop_epochs=6, micro_batch=256, eval_every=0),
    "course": dict(),  # the paper's airbench94, meant for a GPU
}

TASK = dict(type="image-classification", dataset="uoft-cs/cifar10", dataset_name="CIFAR-10",
            metrics={"test_accuracy": "Test accuracy"},
            summary="The airbench CIFAR-10 speedrun methods (patch whitening, identity init, lookahead, "
                    "alternating flip, multi-crop test-time augmentation), beyond lesson 5 of Zero to GANs.")
DATA = data_problem

REFERENCE = Reference("test_accuracy", 90.11, spread=0.7, seconds=841,
                      measured_on="2-core AMD EPYC (Zen 4, AVX-512, no AMX), fp32",
                      spread_is="about 3 standard deviations between seeds (0.23 for this profile in fp32)")

SMALLEST_CROP = 9  # the network's three poolings need 8x8 after the 2x2 whitening
LOOKAHEAD_EVERY = 5  # steps
LOOKAHEAD_DECAY = 0.95**5  # the slow weights' share at the end of the run, before the final copy


@torch.no_grad()
def network(widths: list[int], block_depth: int, train: TensorData, cfg: Config) -> nn.Module:
    """The network with the paper's initialisation; frozen parameters get no gradient."""
    model = build_model("cifar10-airbench", widths=widths, block_depth=block_depth)
    if cfg.whiten:
        model.whiten.weight.copy_(whitening_weights(conv_input(train.inputs[:5000]), model.whiten.kernel_size[0]))
        model.whiten.weight.requires_grad_(False)
    for module in model.modules():
        if cfg.identity_init and isinstance(module, nn.Conv2d) and module.kernel_size == (3, 3):
            nn.init.dirac_(module.weight[:min(module.in_channels, module.out_channels)])  # output channel i starts as input channel i
        if cfg.frozen_norm_scale and isinstance(module, nn.BatchNorm2d):
            module.weight.requires_grad_(False)
    return model.to(memory_format=torch.channels_last)


def train(run):
    cfg = run.config
    if 0 < cfg.crop < SMALLEST_CROP:
        raise ValueError(f"--crop is 0 (whole images) or from {SMALLEST_CROP} to 32; got {cfg.crop}")
    train_set, val_set, test_set = cifar_splits(run)

    model = network(cfg.widths, cfg.block_depth, train_set, cfg)
    slow = copy.deepcopy(model) if cfg.lookahead else None  # the lookahead's slow weights
    per_epoch = run.steps_per_epoch(train_set, cfg.batch_size)
    steps = cfg.epochs * per_epoch
    bias_steps = cfg.whiten_bias_epochs * per_epoch if cfg.whiten else steps  # the whitening bias, then frozen
    optimizer, muon = optimizer_for(model, cfg, trained=round(cfg.batch_size * cfg.proxy_keep))
    run.add_file("learning_rate.png", learning_rate_figure(
        [lr_factor(s, steps, cfg) for s in range(steps)], "cifar10-airbench: learning rate (share of the peak)"))
    slow = run.keep(slow=slow)  # never trained by a gradient: not prepared
    model, optimizer, scheduler, muon, muon_scheduler = run.prepare(
        model=model, optimizer=optimizer, scheduler=scheduled(optimizer, steps, bias_steps, cfg),
        muon=muon, muon_scheduler=scheduled(muon, steps, bias_steps, cfg), publish="model")
    stepped = [(o, s) for o, s in ((optimizer, scheduler), (muon, muon_scheduler)) if o is not None]
    hardest = None
    if cfg.proxy_keep < 1:  # airbench96_faster: a small network, on plain SGD, picks what the big one learns from
        proxy_cfg = replace(cfg, optimizer="sgd")
        proxy = network(cfg.proxy_widths, 2, train_set, proxy_cfg)
        proxy_optimizer, _ = optimizer_for(proxy, proxy_cfg, trained=round(cfg.batch_size * cfg.proxy_keep))
        hardest = HardestShare(run, *run.prepare(proxy=proxy, proxy_optimizer=proxy_optimizer,
                                                 proxy_scheduler=scheduled(proxy_optimizer, steps, bias_steps, cfg)),
                               keep=cfg.proxy_keep, label_smoothing=cfg.label_smoothing)
    unwrap = run.accelerator.unwrap_model
    checked = "val" if cfg.val_size else "test"
    # Batches of image numbers: each batch is augmented from the original images as it is used.
    numbered = TensorData(torch.arange(len(train_set), device=run.device), train_set.labels)
    test = None  # the multi-crop evaluation, made with the last epoch's when that is on the test set too

    def pull_back(decay: float) -> None:  # lookahead: slow <- its average with the weights; weights <- slow
        update_average(unwrap(slow), unwrap(model), decay)
        unwrap(model).load_state_dict(unwrap(slow).state_dict())

    for epoch in run.epochs():
        model.train()
        crop = cfg.crop if epoch <= cfg.crop_epochs else 0
        draw = EpochDraw.draw(len(train_set), epoch, cfg.seed, cfg.flip, cfg.translate, cfg.cutout, crop=crop,
                              device=run.device)
        for index, labels in run.batches(numbered, cfg.batch_size):
            images = draw.apply(train_set.inputs, index, conv_input)
            if hardest is not None:
                images, labels = hardest(images, labels)
            loss = 0.0
            for part, part_labels, share in run.micro_batches(model, images, labels, cfg.micro_batch):
                part_loss = F.cross_entropy(model(part), part_labels, label_smoothing=cfg.label_smoothing) * share
                run.accelerator.backward(part_loss)
                loss += part_loss.detach()
            for opt, schedule in stepped:
                opt.step()
                opt.zero_grad(set_to_none=True)
                schedule.step()
            if slow is not None and run.global_step % LOOKAHEAD_EVERY == 0:
                pull_back(LOOKAHEAD_DECAY * (run.global_step / steps) ** 3)
            run.log_step(loss=loss)
        if slow is not None and epoch == cfg.epochs:
            pull_back(1.0)  # the run ends on the slow weights
        val = None
        if epoch == cfg.epochs and checked == "test":  # one pass over the test set gives both
            test = report_test_set(run, MultiCrop(model, cfg.tta, plain_too=True), test_set, conv_input, CLASSES)
            val = test.pop("plain")
        elif epoch == cfg.epochs or (cfg.eval_every and epoch % cfg.eval_every == 0):
            val = evaluate_classifier(run, model, val_set, conv_input)
        watched = {} if val is None else {f"{checked}_loss": val["loss"], f"{checked}_accuracy": val["accuracy"]}
        run.end_epoch(**watched, lr=scheduler.get_last_lr()[-1])
        run.save_checkpoint()
    if test is None:  # a validation split, or a resumed run that had ended
        test = report_test_set(run, MultiCrop(model, cfg.tta), test_set, conv_input, CLASSES)
    return run.finish(**test_metrics(test, model), test_time_augmentation=cfg.tta)
