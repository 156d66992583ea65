"""What the two GAN lessons share: their noise and their samples.

- `step_latents(run, ...)`: the noise of one training step, a function of (seed, epoch,
  step, process) only, so same-seed runs and resumed runs draw the same noise and every
  process of a multi-process run draws its own.
- `generate(...)`: images from a generator in eval mode, as uint8, for grids and metrics.

The dataset is in `training.anime_faces` and `training.mnist`, the quality metrics in
`training.gan_metrics`, the timelapse GIF in `training.plots`.
"""

from __future__ import annotations

import torch

from shared.models.gan import to_pixels


def fixed_latents(count: int, latent_dim: int, seed: int, device) -> torch.Tensor:
    """(count, latent_dim) standard normal vectors drawn on the CPU from `seed`: the same on any hardware."""
    return torch.randn(count, latent_dim, generator=torch.Generator().manual_seed(seed)).to(device)


def step_latents(run, count: int, batch_size: int, latent_dim: int) -> torch.Tensor:
    """(count, batch_size, latent_dim) noise for this step of this process.

    A function of (seed, epoch, step, process) only: two runs with one seed draw the same
    noise, a resumed run draws what the uninterrupted one did, and the processes of a
    multi-process run draw different noise (one global seed would give them all the same).
    """
    key = ((run.seed * 1_000_003 + run.epoch) * 1_000_003 + run.step) * 1_009 + run.accelerator.process_index
    g = torch.Generator(device=run.device).manual_seed(key % (2**63))
    return torch.randn(count, batch_size, latent_dim, generator=g, device=run.device)


@torch.no_grad()
def generate(run, generator, latents: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """uint8 images (B, C, H, W) from `latents`, with the generator in eval mode as the Space runs it.

    Uses the unwrapped module, so no process waits on the others (no DDP buffer broadcast).
    """
    module = run.accelerator.unwrap_model(generator)
    was_training = module.training
    module.eval()
    images = torch.cat([to_pixels(module(latents[i:i + batch_size])) for i in range(0, len(latents), batch_size)])
    module.train(was_training)
    return images
