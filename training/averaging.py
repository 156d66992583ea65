"""An exponential moving average of a model's weights: what speed records and GAN papers publish.

The average of the last few hundred steps' weights sits closer to the centre of the valley
than the weights of any single step, so a classifier generalises better (cifar10-resnet9
`--fast`) and a GAN's samples stop swinging with its game (ProGAN's and StyleGAN's
`G_ema`; anime-dcgan's cpu profile).
"""

from __future__ import annotations

import torch


def decay_at(step: int, decay: float) -> float:
    """The averaging weight at optimizer step `step` (0-based): short memory at first, so the
    random initial weights fade within the first epoch, then `decay`."""
    return min(decay, (1 + step) / (10 + step))


@torch.no_grad()
def update_average(average: torch.nn.Module, model: torch.nn.Module, decay: float) -> None:
    """average <- decay * average + (1 - decay) * model, for weights and batchnorm statistics."""
    for mean, value in zip(average.state_dict().values(), model.state_dict().values(), strict=True):
        if mean.is_floating_point():
            mean.lerp_(value, 1 - decay)
        else:  # batchnorm's batch counter
            mean.copy_(value)
