"""Image preprocessing shared by training and the Spaces.

Training normalises batches with these functions and the Spaces call the same ones,
so a served model sees its inputs exactly as it saw them in training.
"""

from __future__ import annotations

import torch

# MNIST training-set pixel statistics (of values in [0, 1]).
MNIST_MEAN, MNIST_STD = 0.1307, 0.3081


def normalize_mnist(images: torch.Tensor) -> torch.Tensor:
    """uint8 digits (B, 28, 28) or (B, 1, 28, 28), white ink on black -> float (B, 1, 28, 28)."""
    if images.dim() == 3:
        images = images.unsqueeze(1)
    return (images.float() / 255 - MNIST_MEAN) / MNIST_STD
