"""The optimizers and learning-rate schedules of `cifar10-airbench`, apart from its loop.

airbench trains three kinds of parameters at different rates: the whitening layer's bias (only
for the first epochs), the batchnorm biases (64 times faster while their scales stay frozen)
and everything else; with `optimizer=muon` (airbench94_muon) the 3x3 filters go to Muon
(training/muon.py) and the rest stays on Nesterov SGD. All of them follow one schedule shape,
`lr_factor`. The lesson (training/lessons/cifar10_airbench.py) builds them with `optimizer_for`
and `scheduled`; its Config carries every number used here.
"""

from __future__ import annotations

import torch
from torch import nn

from training.muon import Muon


def lr_factor(step: int, total: int, cfg) -> float:
    """The learning rate's share of its peak: 0.2 -> 1 over the first `warmup` of the steps, then to `lr_end`."""
    peak = cfg.warmup * total
    if step < peak:
        return 0.2 + 0.8 * step / peak
    return 1 - (1 - cfg.lr_end) * (step - peak) / max(total - peak, 1)


def optimizer_for(model, cfg, trained: int | None = None) -> tuple[torch.optim.SGD, Muon | None]:
    """Nesterov SGD in three groups: the whitening bias, batchnorm biases (faster), the rest; with
    optimizer=muon the 3x3 filters go to a Muon optimizer instead (returned second, else None).

    The paper's lr is per 1024 images of a summed loss; for a mean loss over the `trained`
    images of a step (the batch, or its hardest share) it is lr * trained / 1024 / (1 + 1 / (1 - momentum)).
    Weight decay is given as the step's shrink factor (wd / lr), so the shrink does not change
    when a group's lr is scaled.
    """
    kilostep = 1024 * (1 + 1 / (1 - cfg.momentum))
    lr, decay = cfg.lr * (trained or cfg.batch_size) / kilostep, cfg.weight_decay * cfg.batch_size / kilostep
    bias_lr = lr * (cfg.bias_lr_scale if cfg.frozen_norm_scale else 1)
    whiten_lr = bias_lr if cfg.optimizer == "muon" else lr  # airbench94_muon trains it as fast as the norm biases
    whiten_bias = model.whiten.bias
    norm_biases = [m.bias for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    filters = [m.weight for m in model.modules() if isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3)]
    taken = {id(p) for p in [whiten_bias, *norm_biases, *(filters if cfg.optimizer == "muon" else [])]}
    others = [p for p in model.parameters() if p.requires_grad and id(p) not in taken]
    groups = [dict(params=[whiten_bias], lr=whiten_lr, weight_decay=decay / whiten_lr),
              dict(params=norm_biases, lr=bias_lr, weight_decay=decay / bias_lr),
              dict(params=others, lr=lr, weight_decay=decay / lr)]
    sgd = torch.optim.SGD(groups, lr=lr, momentum=cfg.momentum, nesterov=True)
    return sgd, Muon(filters, lr=cfg.muon_lr, momentum=cfg.muon_momentum) if cfg.optimizer == "muon" else None


def scheduled(optimizer, steps: int, bias_steps: int, cfg):
    """Every group on `lr_factor`, but SGD's group 0 (the whitening bias) frozen after `bias_steps`."""
    if optimizer is None:
        return None
    factors = [lambda step: lr_factor(step, steps, cfg)] * len(optimizer.param_groups)
    if isinstance(optimizer, torch.optim.SGD):
        factors[0] = lambda step: lr_factor(step, steps, cfg) if step < bias_steps else 0.0
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factors)
