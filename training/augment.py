"""Augmentation of whole batches on the device: no per-image transform, no DataLoader worker."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


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


def crop_flip(images: torch.Tensor, shifts: torch.Tensor, flips: torch.Tensor) -> torch.Tensor:
    """Shifted, reflect-padded and optionally mirrored copies of a batch (B, C, H, W), any dtype.

    shifts (B, 2) holds each image's (dy, dx); the result equals reflect-padding by
    max|shift|, cropping H x W at offset padding + shift, then flipping where flips (B,) is
    True. One gather, with no padded copy of the batch.
    """
    b, c, h, w = images.shape
    device = images.device
    rows = _reflect(torch.arange(h, device=device) + shifts[:, :1], h)    # (B, H)
    cols = torch.arange(w, device=device).expand(b, w)
    cols = torch.where(flips[:, None], w - 1 - cols, cols)
    cols = _reflect(cols + shifts[:, 1:], w)                               # (B, W)
    return images[torch.arange(b, device=device)[:, None, None, None],
                  torch.arange(c, device=device)[None, :, None, None],
                  rows[:, None, :, None], cols[:, None, None, :]]         # (B, C, H, W)


def random_crop_flip(images: torch.Tensor, padding: int = 4) -> torch.Tensor:
    """The course's RandomCrop(32, padding=4, padding_mode='reflect') + RandomHorizontalFlip, batched."""
    b = len(images)
    shifts = torch.randint(-padding, padding + 1, (b, 2), device=images.device)
    flips = torch.rand(b, device=images.device) < 0.5
    return crop_flip(images, shifts, flips)
