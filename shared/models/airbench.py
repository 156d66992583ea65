"""The CIFAR-10 speedrun network of airbench (K. Jordan, "94% on CIFAR-10 in 3.29 seconds on a
single GPU", 2024), built from the paper's description. Inputs (B, 3, 32, 32) normalised with
`shared.preprocessing.normalize_cifar`, logits (B, 10).

A 2x2 patch-whitening convolution (its weights computed from the training images, see
`whitening_weights`), then three blocks of conv-pool-norm-GELU-conv-norm-GELU, a global max pool
and a bias-free linear layer whose logits are scaled down (1/9 in the paper). `block_depth=3` is
airbench96's block: a third convolution, and a residual around the second and third. The training
recipe (frozen whitening, identity init, which parameters train, the optimizer) is in
training/lessons/cifar10_airbench.py.
"""

from __future__ import annotations

import torch
from torch import nn

from .registry import HubModel, register_model


class Scale(nn.Module):
    """Multiply by a constant: the paper's smaller logits, which act like a lower softmax temperature."""

    def __init__(self, factor: float):
        super().__init__()
        self.factor = factor

    def forward(self, x):
        return x * self.factor


def norm(channels: int, momentum: float) -> nn.BatchNorm2d:
    # eps 1e-12 as in the paper; whether the scale trains is the lesson's choice (it is frozen at 1 there).
    return nn.BatchNorm2d(channels, eps=1e-12, momentum=momentum)


def conv_group(c_in: int, c_out: int, momentum: float) -> nn.Sequential:
    """(B, c_in, S, S) -> (B, c_out, S // 2, S // 2): pooling right after the first convolution."""
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.MaxPool2d(2), norm(c_out, momentum), nn.GELU(),
        nn.Conv2d(c_out, c_out, 3, padding=1, bias=False), norm(c_out, momentum), nn.GELU(),
    )


class ResidualGroup(nn.Module):
    """airbench96's block, (B, c_in, S, S) -> (B, c_out, S // 2, S // 2): conv-pool-norm-GELU, then
    x + conv-norm-GELU-conv-norm(x) and a GELU."""

    def __init__(self, c_in: int, c_out: int, momentum: float):
        super().__init__()
        self.entry = nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.MaxPool2d(2),
                                   norm(c_out, momentum), nn.GELU())
        self.branch = nn.Sequential(nn.Conv2d(c_out, c_out, 3, padding=1, bias=False), norm(c_out, momentum),
                                    nn.GELU(), nn.Conv2d(c_out, c_out, 3, padding=1, bias=False),
                                    norm(c_out, momentum))
        self.activation = nn.GELU()

    def forward(self, x):
        x = self.entry(x)
        return self.activation(x + self.branch(x))


@register_model("cifar10-airbench")
class Cifar10Airbench(HubModel):
    """airbench94's network. widths=(64, 256, 256) is the paper's; the cpu profile narrows them.
    block_depth 3: airbench96's residual blocks (with widths (128, 384, 512) its network).

    batchnorm_momentum is PyTorch's (weight of the new batch statistics): 0.4 is the paper's 0.6.
    """

    input_shape = (3, 32, 32)

    def __init__(self, widths: list[int] = (64, 256, 256), whiten_patch: int = 2,
                 batchnorm_momentum: float = 0.4, logit_scale: float = 1 / 9, num_classes: int = 10,
                 block_depth: int = 2):
        super().__init__()
        if block_depth not in (2, 3):
            raise ValueError(f"block_depth is 2 (airbench94) or 3 (airbench96), not {block_depth}")
        group = conv_group if block_depth == 2 else ResidualGroup
        whitened = 2 * 3 * whiten_patch**2  # each eigenvector of the patch covariance, and its negative
        w1, w2, w3 = widths
        self.features = nn.Sequential(
            nn.Conv2d(3, whitened, whiten_patch), nn.GELU(),  # (B, 24, 31, 31) for 2x2 patches
            group(whitened, w1, batchnorm_momentum),          # (B, w1, 15, 15)
            group(w1, w2, batchnorm_momentum),                # (B, w2, 7, 7)
            group(w2, w3, batchnorm_momentum),                # (B, w3, 3, 3)
        )
        self.classifier = nn.Sequential(
            nn.AdaptiveMaxPool2d(1), nn.Flatten(),            # (B, w3)
            nn.Linear(w3, num_classes, bias=False), Scale(logit_scale),
        )

    @property
    def whiten(self) -> nn.Conv2d:
        return self.features[0]

    def forward(self, images):
        return self.classifier(self.features(images))


@torch.no_grad()
def whitening_weights(images: torch.Tensor, patch: int, eps: float = 5e-4) -> torch.Tensor:
    """Filters that whiten the patch x patch patches of normalised `images` (N, 3, H, W).

    The covariance of the flattened patches has eigenvectors v_i and eigenvalues l_i; the filter
    v_i / sqrt(l_i + eps) gives each direction unit variance. Both signs are kept, so the GELU
    after it passes either side: (2 * 3 * patch**2, 3, patch, patch).
    """
    patches = images.float().unfold(2, patch, 1).unfold(3, patch, 1)   # (N, 3, H', W', p, p)
    patches = patches.permute(0, 2, 3, 1, 4, 5).reshape(-1, 3 * patch * patch)
    patches = patches - patches.mean(dim=0)
    covariance = patches.T @ patches / len(patches)
    values, vectors = torch.linalg.eigh(covariance)                     # ascending eigenvalues
    filters = (vectors / torch.sqrt(values + eps)).T.flip(0)            # largest variance first
    filters = filters.reshape(-1, 3, patch, patch)
    return torch.cat([filters, -filters])
