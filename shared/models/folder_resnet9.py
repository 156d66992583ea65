"""The course project's classifier: lesson 5's ResNet9 for any image-classification folder.

A self-describing model: its config.json holds the class names (in the order of the logits),
the image size it was trained at and the per-channel statistics it expects inputs normalised
with, so a Space can serve any such checkpoint without knowing the dataset:

    model = MODELS["image-folder"].from_pretrained(folder)
    pixels = square_image(open_image(upload), model.image_size)            # shared.preprocessing
    batch = torch.from_numpy(np.asarray(pixels)).permute(2, 0, 1)[None]    # uint8 (1, 3, S, S)
    probabilities = model(normalize_images(batch, model.mean, model.std)).softmax(1)
"""

from __future__ import annotations

import math

from .cifar10 import resnet9_classifier, resnet9_features
from .registry import HubModel, register_model


def stem_pool(image_size: int) -> int:
    """The max-pool after the first block that brings `image_size` to about 32 pixels (1 for <= 45)."""
    return 2 ** max(0, round(math.log2(image_size / 32)))


@register_model("image-folder")
class ImageFolderResNet9(HubModel):
    """ResNet9 sized to the image: (B, 3, S, S) normalised -> logits (B, len(class_names)).

    For S above 32 the first block is max-pooled by `stem_pool(S)` (64 -> 32, 128 -> 32), so
    the residual body runs at about 32x32 as in lesson 5 and the cost per image stays close
    to CIFAR-10's, while the first convolution still sees every pixel.
    """

    input_shape = (3, 64, 64)

    def __init__(self, class_names: list[str] = ("class_0", "class_1"), image_size: int = 64,
                 width: int = 64, dropout: float = 0.2,
                 mean: list[float] = (0.5, 0.5, 0.5), std: list[float] = (0.25, 0.25, 0.25)):
        super().__init__()
        if len(class_names) < 2:
            raise ValueError(f"a classifier needs at least 2 classes, got {list(class_names)}")
        self.class_names, self.image_size = list(class_names), image_size
        self.mean, self.std = list(mean), list(std)
        self.input_shape = (3, image_size, image_size)
        self.features = resnet9_features(width, stem_pool(image_size))   # (B, 8w, ~4, ~4)
        self.classifier = resnet9_classifier(width, dropout, len(class_names))

    def forward(self, images):
        return self.classifier(self.features(images))
