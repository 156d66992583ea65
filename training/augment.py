"""Augmentation of whole batches on the device: no per-image transform, no DataLoader worker.

Besides the random transforms of the lessons, the speedrun's (cifar10-airbench): `EpochDraw`,
each training image's flip, shift and cutout for one epoch, applied batch by batch; and
`MultiCrop`, test-time augmentation.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn


def random_affine(images: torch.Tensor, max_shift: float, max_degrees: float, max_scale: float) -> torch.Tensor:
    """Shift, rotate and scale every image of a float batch (B, C, H, W) by its own random amount.

    Shifts are in pixels, scale is a relative change (0.1 = up to +-10%); done on the device.
    """
    b, _, h, w = images.shape
    rand = torch.rand(b, 4, device=images.device) * 2 - 1
    angle = rand[:, 0] * math.radians(max_degrees)
    scale = 1 + rand[:, 1] * max_scale
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack([
        torch.stack([cos, -sin, rand[:, 2] * 2 * max_shift / w], dim=1),
        torch.stack([sin, cos, rand[:, 3] * 2 * max_shift / h], dim=1),
    ], dim=1)  # (B, 2, 3)
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    # Pad with the background value (the minimum of each image) rather than zeros.
    background = images.amin(dim=(1, 2, 3), keepdim=True)
    return F.grid_sample(images - background, grid, align_corners=False) + background


def _reflect(index: torch.Tensor, size: int) -> torch.Tensor:
    """Map positions in [-size+1, 2*size-2] into [0, size) the way reflect padding does (no edge repeat)."""
    index = index.abs()
    return torch.where(index > size - 1, 2 * (size - 1) - index, index)


def crop_flip(images: torch.Tensor, shifts: torch.Tensor, flips: torch.Tensor, size: int = 0) -> torch.Tensor:
    """Shifted, reflect-padded and optionally mirrored copies of a batch (B, C, H, W), any dtype.

    shifts (B, 2) holds each image's (dy, dx); the result equals reflect-padding by
    max|shift|, cropping H x W at offset padding + shift, then flipping where flips (B,) is
    True. One gather, with no padded copy of the batch. size > 0 crops a size x size window
    instead, its top-left corner at (dy, dx).
    """
    b, c, h, w = images.shape
    out_h, out_w = (size, size) if size else (h, w)
    device = images.device
    rows = _reflect(torch.arange(out_h, device=device) + shifts[:, :1], h)        # (B, out_h)
    cols = torch.arange(out_w, device=device).expand(b, out_w)
    cols = torch.where(flips[:, None], out_w - 1 - cols, cols)
    cols = _reflect(cols + shifts[:, 1:], w)                                       # (B, out_w)
    return images[torch.arange(b, device=device)[:, None, None, None],
                  torch.arange(c, device=device)[None, :, None, None],
                  rows[:, None, :, None], cols[:, None, None, :]]                 # (B, C, out_h, out_w)


def random_crop_flip(images: torch.Tensor, padding: int = 4) -> torch.Tensor:
    """The course's RandomCrop(32, padding=4, padding_mode='reflect') + RandomHorizontalFlip, batched."""
    b = len(images)
    shifts = torch.randint(-padding, padding + 1, (b, 2), device=images.device)
    flips = torch.rand(b, device=images.device) < 0.5
    return crop_flip(images, shifts, flips)


def cutout(images: torch.Tensor, corners: torch.Tensor, size: int) -> torch.Tensor:
    """A batch (B, C, H, W) with a size x size square set to 0 in each image, its top-left corner
    at corners (B, 2) = (y, x). On normalised images 0 is the dataset's mean colour."""
    h, w = images.shape[-2:]
    rows = torch.arange(h, device=images.device) - corners[:, :1]      # (B, H): row - corner
    cols = torch.arange(w, device=images.device) - corners[:, 1:]      # (B, W)
    inside = ((rows >= 0) & (rows < size))[:, None, :, None] & ((cols >= 0) & (cols < size))[:, None, None, :]
    return images.masked_fill(inside, 0)


@dataclass
class EpochDraw:
    """Every training image's augmentation for one epoch, drawn up front from the seed and the epoch
    (so the same on every process and on --resume) and applied batch by batch by `apply`: no
    augmented copy of the whole training set is made.

    flip "alternating" is the speedrun's derandomised flip: a fixed random half of the images is
    mirrored in the odd epochs and the other half in the even ones, so every image is seen both
    ways every two epochs. shifts are up to `translate` pixels each way (reflected); cutout blanks
    a `cutout`-sided square at a random place (0: none). crop > 0 trains on crop x crop windows
    instead of whole images: each window's corner anywhere from `translate` pixels beyond one
    edge to as far beyond the other.
    """

    flips: torch.Tensor  # (N,) bool
    shifts: torch.Tensor  # (N, 2) (dy, dx); with crop, the windows' top-left corners
    corners: torch.Tensor | None  # (N, 2) the cutout squares' top-left corners
    cutout: int
    crop: int = 0

    @classmethod
    def draw(cls, n: int, epoch: int, seed: int, flip: Literal["alternating", "random", "none"], translate: int,
             cutout: int = 0, size: int = 32, crop: int = 0, device: torch.device | str = "cpu") -> EpochDraw:
        base = torch.Generator().manual_seed(seed)
        this_epoch = torch.Generator().manual_seed(seed * 100_003 + epoch)
        if flip == "alternating":
            flips = (torch.rand(n, generator=base) < 0.5) ^ (epoch % 2 == 0)
        elif flip == "random":
            flips = torch.rand(n, generator=this_epoch) < 0.5
        else:
            flips = torch.zeros(n, dtype=torch.bool)
        side = crop or size  # the window the network sees
        shifts = torch.randint(-translate, size - side + translate + 1, (n, 2), generator=this_epoch)
        corners = torch.randint(0, side - cutout + 1, (n, 2), generator=this_epoch).to(device) if cutout else None
        return cls(flips.to(device), shifts.to(device), corners, cutout, crop)

    def apply(self, images: torch.Tensor, index: torch.Tensor,
              preprocess: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        """The augmented, preprocessed batch of images[index]; the cutout comes after `preprocess`
        (0 there is the mean colour for a normalising one)."""
        batch = preprocess(crop_flip(images.index_select(0, index), self.shifts[index], self.flips[index], self.crop))
        return batch if self.corners is None else cutout(batch, self.corners[index], self.cutout)


class MultiCrop(nn.Module):
    """Test-time augmentation: the mean logits over the mirror image (level 1) and, at level 2,
    over copies shifted one pixel up-left and down-right (reflected), weighted half and half.
    With `plain_too`, the logits of the images as they are come back too, as
    {"multi_crop": ..., "plain": ...}: one pass over a test set gives both accuracies."""

    def __init__(self, model: nn.Module, level: int, plain_too: bool = False):
        super().__init__()
        self.model, self.level, self.plain_too = model, level, plain_too

    def mirrored(self, images, logits):
        """The mean of `logits`, the model's for `images`, and the model's for their mirror images."""
        return (logits + self.model(images.flip(3))) / 2

    def forward(self, images):
        plain = self.model(images)
        combined = plain if self.level == 0 else self.mirrored(images, plain)
        if self.level == 2:
            b, device = len(images), images.device
            no_flip = torch.zeros(b, dtype=torch.bool, device=device)
            shifted = [crop_flip(images, torch.full((b, 2), s, device=device), no_flip) for s in (-1, 1)]
            combined = (combined + sum(self.mirrored(s, self.model(s)) for s in shifted) / 2) / 2
        return {"multi_crop": combined, "plain": plain} if self.plain_too else combined
