"""Digit classifiers of lessons 2 and 3, and the CNN the sketchpad serves.

All take normalised MNIST batches of shape (B, 1, 28, 28) and return logits (B, 10).
"""

from __future__ import annotations

from torch import nn

from .registry import HubModel, register_model


@register_model("mnist-logistic")
class LogisticRegression(HubModel):
    """Lesson 2: one linear layer; softmax lives in the loss (cross-entropy on logits)."""

    input_shape = (1, 28, 28)

    def __init__(self, in_features: int = 784, num_classes: int = 10):
        super().__init__()
        self.linear = nn.Linear(in_features, num_classes)

    def forward(self, images):
        return self.linear(images.flatten(1))  # (B, 1, 28, 28) -> (B, 784) -> (B, 10)


class FeedForward(HubModel):
    """Lesson 3 and assignment 3: flatten, then Linear+ReLU per hidden size, then Linear."""

    def __init__(self, in_features: int, hidden_sizes: list[int], num_classes: int = 10):
        super().__init__()
        layers, width = [nn.Flatten()], in_features
        for hidden in hidden_sizes:
            layers += [nn.Linear(width, hidden), nn.ReLU()]
            width = hidden
        layers.append(nn.Linear(width, num_classes))
        self.net = nn.Sequential(*layers)

    def forward(self, images):
        return self.net(images)


@register_model("mnist-mlp")
class MnistMLP(FeedForward):
    """The course's 784-32-10 network by default; widen with hidden_sizes=[512, 256]."""

    input_shape = (1, 28, 28)

    def __init__(self, in_features: int = 784, hidden_sizes: list[int] = (32,), num_classes: int = 10):
        super().__init__(in_features, list(hidden_sizes), num_classes)


def conv_bn(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
                         nn.BatchNorm2d(c_out), nn.ReLU(inplace=True))


@register_model("mnist-cnn")
class MnistCNN(HubModel):
    """Small VGG-style CNN: three conv blocks with batchnorm, global pooling, one linear layer."""

    input_shape = (1, 28, 28)

    def __init__(self, width: int = 32, dropout: float = 0.1, num_classes: int = 10):
        super().__init__()
        w = width
        self.features = nn.Sequential(
            conv_bn(1, w), conv_bn(w, w), nn.MaxPool2d(2),              # (B, w, 14, 14)
            conv_bn(w, 2 * w), conv_bn(2 * w, 2 * w), nn.MaxPool2d(2),  # (B, 2w, 7, 7)
            conv_bn(2 * w, 4 * w), nn.AdaptiveMaxPool2d(1),             # (B, 4w, 1, 1)
        )
        self.head = nn.Sequential(nn.Flatten(), nn.Dropout(dropout), nn.Linear(4 * w, num_classes))

    def forward(self, images):
        return self.head(self.features(images))
