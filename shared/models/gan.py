"""GAN generators and discriminators of lesson 6.

Generators take a batch of latent vectors of shape (B, latent_dim) -- flat for both GANs,
the DCGAN generator reshapes it to (B, latent_dim, 1, 1) itself -- and return images in
[-1, 1] (Tanh). Discriminators take such images and return one logit per image, shape
(B,): the course ends them with a Sigmoid and trains with BCELoss; here the sigmoid lives
in the loss (`binary_cross_entropy_with_logits`), which is the same function, numerically
stable, and safe under mixed precision.

`sample_grid(epoch)` names the grid of samples a GAN lesson saves in its checkpoint after each
epoch; the lessons write it, and the playground, the faces Space's training timeline and the
results page of `python -m training all` read it back (`sample_grids`). It lives here, not in
training/, because a deployed Space gets a copy of `shared/` only.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from .registry import HubModel, register_model


def to_pixels(images: torch.Tensor) -> torch.Tensor:
    """Generator output in [-1, 1], (B, C, H, W) float -> uint8 (B, C, H, W) in [0, 255]."""
    return ((images.detach().float() + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)


def from_pixels(images: torch.Tensor) -> torch.Tensor:
    """uint8 images (B, H, W) or (B, C, H, W) -> float (B, C, H, W) in [-1, 1], what D sees."""
    if images.dim() == 3:
        images = images.unsqueeze(1)
    return images.float() / 127.5 - 1


def sample_grid(epoch: int) -> str:
    """The file, inside a GAN lesson's checkpoint, of its grid of samples after `epoch` (0: before
    training): `samples/epoch_012.png`."""
    return f"{SAMPLE_GRIDS}/epoch_{epoch:03d}.png"


SAMPLE_GRIDS = "samples"  # the checkpoint's folder of grids (the faces Space downloads it alone)


def sample_grids(folder) -> dict[int, Path]:
    """{epoch: file} of the sample grids in a checkpoint folder (or a snapshot of its Hub repo),
    in epoch order: the files `sample_grid` names, and nothing else of that folder."""
    grids = {}
    for path in sorted((Path(folder) / SAMPLE_GRIDS).glob("*.png")):
        digits = "".join(c for c in path.stem if c in "0123456789")
        if digits and sample_grid(int(digits)) == f"{SAMPLE_GRIDS}/{path.name}":
            grids[int(digits)] = path
    return dict(sorted(grids.items()))


# ---- lesson 6a: fully connected GAN on MNIST ------------------------------------------------


@register_model("mnist-gan")
class MnistGenerator(HubModel):
    """The course's generator: latent -> 256 -> 256 -> 784 with ReLU, then Tanh."""

    def __init__(self, latent_dim: int = 64, hidden_size: int = 256, image_size: int = 28):
        super().__init__()
        self.latent_dim, self.image_size = latent_dim, image_size
        self.input_shape = (latent_dim,)
        self.net = nn.Sequential(
            nn.Linear(latent_dim, hidden_size), nn.ReLU(),
            nn.Linear(hidden_size, hidden_size), nn.ReLU(),
            nn.Linear(hidden_size, image_size * image_size), nn.Tanh(),
        )

    def forward(self, latent):
        # (B, latent_dim) -> (B, 784) -> (B, 1, 28, 28)
        return self.net(latent).view(-1, 1, self.image_size, self.image_size)


@register_model("mnist-gan-discriminator")
class MnistDiscriminator(HubModel):
    """The course's discriminator: 784 -> 256 -> 256 -> 1 with LeakyReLU(0.2); logits out."""

    def __init__(self, hidden_size: int = 256, image_size: int = 28):
        super().__init__()
        self.input_shape = (1, image_size, image_size)
        self.net = nn.Sequential(
            nn.Flatten(),
            nn.Linear(image_size * image_size, hidden_size), nn.LeakyReLU(0.2),
            nn.Linear(hidden_size, hidden_size), nn.LeakyReLU(0.2),
            nn.Linear(hidden_size, 1),
        )

    def forward(self, images):
        return self.net(images).squeeze(1)  # (B, 1, 28, 28) -> (B, 784) -> (B,)


# ---- lesson 6b: DCGAN on 64x64 anime faces ---------------------------------------------------


def _up(c_in: int, c_out: int) -> list[nn.Module]:
    # Doubles height and width: kernel 4, stride 2, padding 1.
    return [nn.ConvTranspose2d(c_in, c_out, 4, 2, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]


def _down(c_in: int, c_out: int) -> list[nn.Module]:
    # Halves height and width: kernel 4, stride 2, padding 1.
    return [nn.Conv2d(c_in, c_out, 4, 2, 1, bias=False), nn.BatchNorm2d(c_out), nn.LeakyReLU(0.2, inplace=True)]


def _dcgan_init(module: nn.Module) -> None:
    # The DCGAN paper's initialisation: N(0, 0.02) for convolutions, N(1, 0.02) for BN scales.
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.normal_(m.weight, 0.0, 0.02)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)


@register_model("anime-dcgan")
class DCGANGenerator(HubModel):
    """The course's DCGAN generator: transposed convs 512-256-128-64-3 (at width 64), then Tanh.

    `width` scales every layer (the course's network is width=64: 8w-4w-2w-w-3 channels);
    a narrower one trains several times faster on a CPU.
    """

    def __init__(self, latent_dim: int = 128, width: int = 64, channels: int = 3):
        super().__init__()
        self.latent_dim = latent_dim
        self.input_shape = (latent_dim,)
        w = width
        self.net = nn.Sequential(
            nn.ConvTranspose2d(latent_dim, 8 * w, 4, 1, 0, bias=False),  # (B, 8w, 4, 4)
            nn.BatchNorm2d(8 * w), nn.ReLU(inplace=True),
            *_up(8 * w, 4 * w),                                          # (B, 4w, 8, 8)
            *_up(4 * w, 2 * w),                                          # (B, 2w, 16, 16)
            *_up(2 * w, w),                                              # (B, w, 32, 32)
            nn.ConvTranspose2d(w, channels, 4, 2, 1, bias=False),        # (B, 3, 64, 64)
            nn.Tanh(),
        )
        _dcgan_init(self)

    def forward(self, latent):
        return self.net(latent.view(len(latent), self.latent_dim, 1, 1))  # (B, latent_dim) -> (B, 3, 64, 64)


@register_model("anime-dcgan-discriminator")
class DCGANDiscriminator(HubModel):
    """The generator mirrored: strided convs 3-64-128-256-512 (at width 64), LeakyReLU(0.2); logits out."""

    def __init__(self, width: int = 64, channels: int = 3):
        super().__init__()
        self.input_shape = (channels, 64, 64)
        w = width
        self.net = nn.Sequential(
            *_down(channels, w),                       # (B, w, 32, 32)
            *_down(w, 2 * w),                          # (B, 2w, 16, 16)
            *_down(2 * w, 4 * w),                      # (B, 4w, 8, 8)
            *_down(4 * w, 8 * w),                      # (B, 8w, 4, 4)
            nn.Conv2d(8 * w, 1, 4, 1, 0, bias=False),  # (B, 1, 1, 1)
        )
        _dcgan_init(self)

    def forward(self, images):
        return self.net(images).flatten()  # (B, 3, 64, 64) -> (B,)

