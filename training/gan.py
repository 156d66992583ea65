"""What the two GAN lessons share: their training step, their noise and their samples.

- `update_discriminator(...)` and `update_generator(...)`: the two halves of a GAN step,
  "(1) update D, (2) update G" as pytorch/examples' dcgan, which both lessons call in their
  loop: one definition, so the lessons cannot drift apart.
- `step_latents(run, ...)`: the noise of one training step, a function of (seed, epoch,
  step, process) only, so same-seed runs and resumed runs draw the same noise and every
  process of a multi-process run draws its own.
- `generate(...)`: images from a generator in eval mode, as uint8, for grids and metrics.
- `Augmented(discriminator, policy, run)`: the discriminator behind differentiable
  augmentation (DiffAugment), what anime-dcgan's cpu profile trains with.

The dataset is in `training.anime_faces_data` and `training.mnist_data`, the quality metrics in
`training.gan_metrics`, the timelapse GIF in `training.plots`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from shared.models.gan import to_pixels


def update_discriminator(run, discriminator, optimizer, real: torch.Tensor, generator,
                         latent: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(1) of a GAN step: one optimizer step of the discriminator, real images -> 1, generated
    images (from `latent`, without training the generator) -> 0. Returns (its loss, the mean
    score D(x) of the real images, the mean score D(G(z)) of the generated ones).

    One backward per forward (the gradients add up): under DDP each forward first copies rank 0's
    BatchNorm buffers into every process in place, so real and fake forwards before one backward
    fail on CUDA (anime_dcgan.py's docstring tells the story).
    """
    optimizer.zero_grad()
    real_logits = discriminator(real)
    loss_real = F.binary_cross_entropy_with_logits(real_logits, torch.ones_like(real_logits))
    run.accelerator.backward(loss_real)
    with torch.no_grad():  # the generator is not trained in this half of the step
        fake = generator(latent)
    fake_logits = discriminator(fake)
    loss_fake = F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits))
    run.accelerator.backward(loss_fake)
    optimizer.step()
    return loss_real + loss_fake, torch.sigmoid(real_logits).mean(), torch.sigmoid(fake_logits).mean()


def update_generator(run, generator, discriminator, optimizer, latent: torch.Tensor) -> torch.Tensor:
    """(2) of a GAN step: one optimizer step of the generator: new fakes, judged by the discriminator
    just updated, should score 1. Only the generator's parameters move (D's gradients are cleared
    by its own step's zero_grad). The generator's loss."""
    optimizer.zero_grad()
    logits = discriminator(generator(latent))
    loss = F.binary_cross_entropy_with_logits(logits, torch.ones_like(logits))
    run.accelerator.backward(loss)
    optimizer.step()
    return loss


def fixed_latents(count: int, latent_dim: int, seed: int, device) -> torch.Tensor:
    """(count, latent_dim) standard normal vectors drawn on the CPU from `seed`: the same on any hardware."""
    return torch.randn(count, latent_dim, generator=torch.Generator().manual_seed(seed)).to(device)


def step_latents(run, count: int, batch_size: int, latent_dim: int) -> torch.Tensor:
    """(count, batch_size, latent_dim) noise for this step of this process.

    A function of (seed, epoch, step, process) only: two runs with one seed draw the same
    noise, a resumed run draws what the uninterrupted one did, and the processes of a
    multi-process run draw different noise (one global seed would give them all the same).
    """
    return torch.randn(count, batch_size, latent_dim, generator=step_generator(run), device=run.device)


def step_generator(run, salt: int = 0) -> torch.Generator:
    """A random generator on run.device seeded from (seed, epoch, step, process, salt): see step_latents."""
    key = ((run.seed * 1_000_003 + run.epoch) * 1_000_003 + run.step) * 1_009 + run.accelerator.process_index
    return torch.Generator(device=run.device).manual_seed((key + salt * 7_919) % (2**63))


AUGMENTATIONS = ("color", "translation", "cutout")


def augment_policy(text: str) -> list[str]:
    """The augmentations named in a comma-separated `--augment` value; a clear error for any other name."""
    policy = [name for name in text.split(",") if name]
    unknown = set(policy) - set(AUGMENTATIONS)
    if unknown:
        raise ValueError(f"--augment: unknown augmentation {sorted(unknown)}: choose from {', '.join(AUGMENTATIONS)}")
    return policy


def diff_augment(images: torch.Tensor, policy: list[str], g: torch.Generator) -> torch.Tensor:
    """Random changes to images in [-1, 1] (B, C, H, W) that gradients flow through (Zhao et al. 2020).

    color: brightness +-0.5, saturation x0-2, contrast x0.5-1.5, per image; translation: a shift
    of up to 1/8 of the side, the uncovered border zero; cutout: a zeroed square of half the side.
    """
    b, _, h, w = images.shape
    rand = lambda *shape: torch.rand(*shape, generator=g, device=images.device)  # noqa: E731
    if "color" in policy:
        images = images + (rand(b, 1, 1, 1) - 0.5)
        mean = images.mean(dim=1, keepdim=True)
        images = (images - mean) * (2 * rand(b, 1, 1, 1)) + mean
        mean = images.mean(dim=(1, 2, 3), keepdim=True)
        images = (images - mean) * (rand(b, 1, 1, 1) + 0.5) + mean
    if "translation" in policy:
        pad = h // 8
        shift = (rand(2, b) * (2 * pad + 1)).long()  # 0 .. 2 * pad: the crop's corner in the padded image
        rows = (torch.arange(h, device=images.device) + shift[0, :, None])[:, :, None]  # (B, H, 1)
        cols = (torch.arange(w, device=images.device) + shift[1, :, None])[:, None, :]  # (B, 1, W)
        padded = torch.nn.functional.pad(images, (pad, pad, pad, pad))
        images = padded[torch.arange(b, device=images.device)[:, None, None], :, rows, cols].permute(0, 3, 1, 2)
    if "cutout" in policy:
        top = (rand(b) * h).long() - h // 4  # the square's centre anywhere in the image
        left = (rand(b) * w).long() - w // 4
        ys = torch.arange(h, device=images.device)
        xs = torch.arange(w, device=images.device)
        inside_y = (ys >= top[:, None]) & (ys < top[:, None] + h // 2)  # (B, H)
        inside_x = (xs >= left[:, None]) & (xs < left[:, None] + w // 2)  # (B, W)
        images = images * ~(inside_y[:, None, :, None] & inside_x[:, None, None, :])
    return images


class Augmented:
    """Called like the discriminator: the images go through `diff_augment` first, real and generated alike.

    With every image the discriminator sees changed at random, it cannot memorise a small
    dataset and win the game (the DCGAN collapse), and since the changes are differentiable
    the generator learns the faces, not the changes. Each call of a step draws its own changes
    from (seed, epoch, step, process, call): same-seed and resumed runs augment alike.
    """

    def __init__(self, discriminator, policy: str, run):
        self.discriminator, self.run = discriminator, run
        self.policy = augment_policy(policy)
        self.at, self.calls = None, 0

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        at = (self.run.epoch, self.run.step)
        self.calls = self.calls + 1 if at == self.at else 1
        self.at = at
        return self.discriminator(diff_augment(images, self.policy, step_generator(self.run, self.calls)))


@torch.no_grad()
def generate(run, generator, latents: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """uint8 images (B, C, H, W) from `latents`, with the generator in eval mode as the Space runs it.

    Uses the unwrapped module, so no process waits on the others (no DDP buffer broadcast).
    """
    module = run.accelerator.unwrap_model(generator)
    was_training = module.training
    module.eval()
    with torch.no_grad(), run.accelerator.autocast():  # the run's precision, for kept modules too (Run.keep)
        images = torch.cat([to_pixels(module(latents[i:i + batch_size])) for i in range(0, len(latents), batch_size)])
    module.train(was_training)
    return images
