"""CIFAR-10 classifiers (lessons 4 and 5, assignment 3). Inputs (B, 3, 32, 32), logits (B, 10).

Inputs are normalised with `shared.preprocessing.normalize_cifar` (the course's statistics).
"""

from __future__ import annotations

from torch import nn

from .mnist import FeedForward
from .registry import HubModel, register_model

# The ten labels, in the order of the logits (and of torchvision's CIFAR10 and the sorted folders).
CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


@register_model("cifar10-mlp")
class Cifar10MLP(FeedForward):
    """Assignment 3: flatten the 3x32x32 image to 3072 numbers, then hidden ReLU layers."""

    input_shape = (3, 32, 32)

    def __init__(self, in_features: int = 3 * 32 * 32, hidden_sizes: list[int] = (1024, 512, 128),
                 num_classes: int = 10):
        super().__init__(in_features, list(hidden_sizes), num_classes)


@register_model("cifar10-cnn")
class Cifar10CNN(HubModel):
    """Lesson 4: three blocks of two 3x3 convolutions and a 2x2 max pool, then three linear layers.

    width=32 is the course's network (32-64, 128-128, 256-256, then 1024-512-10);
    a smaller width scales every convolution and the first linear layer alike.
    """

    input_shape = (3, 32, 32)

    def __init__(self, width: int = 32, hidden_sizes: list[int] = (1024, 512), num_classes: int = 10):
        super().__init__()
        w = width

        def conv(c_in: int, c_out: int) -> list[nn.Module]:
            return [nn.Conv2d(c_in, c_out, 3, padding=1), nn.ReLU(inplace=True)]

        self.features = nn.Sequential(
            *conv(3, w), *conv(w, 2 * w), nn.MaxPool2d(2),              # (B, 2w, 16, 16)
            *conv(2 * w, 4 * w), *conv(4 * w, 4 * w), nn.MaxPool2d(2),  # (B, 4w, 8, 8)
            *conv(4 * w, 8 * w), *conv(8 * w, 8 * w), nn.MaxPool2d(2),  # (B, 8w, 4, 4)
            nn.Flatten(),                                               # (B, 8w * 16)
        )
        layers, size = [], 8 * w * 4 * 4
        for hidden in hidden_sizes:
            layers += [nn.Linear(size, hidden), nn.ReLU(inplace=True)]
            size = hidden
        self.classifier = nn.Sequential(*layers, nn.Linear(size, num_classes))

    def forward(self, images):
        return self.classifier(self.features(images))


def conv_block(c_in: int, c_out: int, pool: bool = False) -> nn.Sequential:
    """3x3 convolution, batchnorm, ReLU, and optionally a 2x2 max pool (halves H and W)."""
    layers = [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]
    if pool:
        layers.append(nn.MaxPool2d(2))
    return nn.Sequential(*layers)


class Residual(nn.Module):
    """x + f(x): the block's output keeps the input's shape."""

    def __init__(self, *layers: nn.Module):
        super().__init__()
        self.layers = nn.Sequential(*layers)

    def forward(self, x):
        return x + self.layers(x)


@register_model("cifar10-resnet9")
class Cifar10ResNet9(HubModel):
    """Lesson 5: ResNet9 with batchnorm. width=64 is the course's network (64 ... 512 channels)."""

    input_shape = (3, 32, 32)

    def __init__(self, width: int = 64, dropout: float = 0.2, num_classes: int = 10):
        super().__init__()
        self.features = resnet9_features(width)
        self.classifier = resnet9_classifier(width, dropout, num_classes)

    def forward(self, images):
        return self.classifier(self.features(images))


def resnet9_features(width: int, stem_pool: int = 1) -> nn.Sequential:
    """ResNet9's convolutions, (B, 3, S, S) -> (B, 8w, S/8/stem_pool, ...); shapes below for S=32.

    stem_pool > 1 max-pools the first block's output by that factor, so that larger images
    reach the residual body at about 32x32 (parameter names do not change: pooling has none).
    """
    w = width
    stem = conv_block(3, w)                                                # (B, w, 32, 32)
    if stem_pool > 1:
        stem.append(nn.MaxPool2d(stem_pool))
    return nn.Sequential(
        stem,
        conv_block(w, 2 * w, pool=True),                               # (B, 2w, 16, 16)
        Residual(conv_block(2 * w, 2 * w), conv_block(2 * w, 2 * w)),  # (B, 2w, 16, 16)
        conv_block(2 * w, 4 * w, pool=True),                           # (B, 4w, 8, 8)
        conv_block(4 * w, 8 * w, pool=True),                           # (B, 8w, 4, 4)
        Residual(conv_block(8 * w, 8 * w), conv_block(8 * w, 8 * w)),  # (B, 8w, 4, 4)
    )


def resnet9_classifier(width: int, dropout: float, num_classes: int) -> nn.Sequential:
    return nn.Sequential(
        nn.AdaptiveMaxPool2d(1), nn.Flatten(), nn.Dropout(dropout),  # (B, 8w)
        nn.Linear(8 * width, num_classes),                           # (B, num_classes)
    )
