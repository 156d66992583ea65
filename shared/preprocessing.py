"""Image preprocessing shared by training and the Spaces.

Training normalises batches with these functions and the Spaces call the same ones,
so a served model sees its inputs exactly as it saw them in training.

`sketch_to_mnist` turns a drawing or a photo of a handwritten digit into MNIST's own format,
the way the MNIST digits themselves were made: keep the ink, crop to it, scale the longest
side to 20 pixels keeping the aspect ratio, place it in a 28x28 field so that its centre of
mass is at the centre, then normalise exactly like training (`normalize_mnist`).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
from PIL import Image, ImageFilter

from shared.images import flatten, open_image

# MNIST training-set pixel statistics (of values in [0, 1]).
MNIST_MEAN, MNIST_STD = 0.1307, 0.3081

# Geometry of MNIST digits: the ink's bounding box has a longest side of 20 pixels, and its
# centre of mass sits at pixel (14, 14) of the 28x28 image (measured on the test set: 13.99, 14.01).
MNIST_SIZE, MNIST_BOX, MNIST_CENTRE = 28, 20, 14.0
# Larger inputs are first reduced to at most this longest side: the digit ends up 20 pixels
# tall, so ten times that is plenty, and it keeps a canvas or a photo fast to process.
WORK_SIDE = 256


# (pixel / 255 - mean) / std, as shift + scale * pixel. The shift is a 0-dim CPU tensor, which
# PyTorch combines with tensors on any device.
_MNIST_SCALE = 1 / (255 * MNIST_STD)
_MNIST_SHIFT = torch.tensor(-MNIST_MEAN / MNIST_STD, dtype=torch.float32)


def normalize_mnist(images: torch.Tensor) -> torch.Tensor:
    """uint8 digits (B, 28, 28) or (B, 1, 28, 28), white ink on black -> float (B, 1, 28, 28).

    One operation reads the uint8 pixels and writes the floats (not four: a float copy, /255,
    -mean, /std): an MNIST lesson's step is a few dozen operations of microseconds each, and
    this one went from 66 to 22 us of mnist-mlp's 1.1 ms step on a 2-core Xeon
    (`bench/bench_mnist_training.py --parts`, the README's MNIST bench).
    """
    if images.dim() == 3:
        images = images.unsqueeze(1)
    return torch.add(_MNIST_SHIFT, images, alpha=_MNIST_SCALE)


class MnistInput(NamedTuple):
    tensor: torch.Tensor  # (1, 1, 28, 28) float, normalised exactly as in training
    pixels: np.ndarray    # (28, 28) uint8, white ink on black: the image the model sees


def sketch_to_mnist(image: Image.Image | np.ndarray) -> MnistInput | None:
    """A drawing or photo of one digit -> the model's input, or None when there is no ink.

    image: a PIL image (any mode) or an array (H, W), (H, W, 2|3|4). Ink is read from the alpha
    channel when the image has real transparency (strokes on a transparent canvas, whatever
    their colour); otherwise from the contrast with the background, which may be light
    (a white canvas, paper) or dark (MNIST itself, chalk on a board).
    """
    ink = ink_map(image)
    if ink is None:
        return None
    pixels = mnist_pixels(ink)
    return MnistInput(normalize_mnist(torch.from_numpy(pixels)[None]), pixels)


def ink_map(image: Image.Image | np.ndarray) -> np.ndarray | None:
    """Ink intensity (H, W) float32 in [0, 1], or None when the image holds no visible ink."""
    if isinstance(image, np.ndarray) or image.mode not in ("L", "LA", "RGB", "RGBA", "1", "P"):
        image = open_image(image)  # any array dtype or 16-bit/float mode -> 8 bits, scaled
    if max(image.size) > WORK_SIDE:
        # Whole-pixel box averaging: fast, and thin strokes keep their mass (they get fainter, not lost).
        image = image.reduce(-(-max(image.size) // WORK_SIDE))
    if image.mode not in ("L", "LA", "RGB", "RGBA"):
        image = image.convert("RGBA" if "A" in image.getbands() else "RGB")

    ink = None
    if image.mode in ("LA", "RGBA"):
        alpha = np.asarray(image.getchannel("A"))
        if alpha.min() < 128:  # real transparency: the strokes are whatever is opaque
            ink = alpha.astype(np.float32) / 255
        image = image.convert("L") if ink is None else image
    if ink is None:
        ink = _contrast_ink(image.convert("L"))
    # Nothing to read: a blank or cleared canvas, or a page without a visible mark.
    if ink.max() < 0.15 or np.count_nonzero(ink > 0.5) < max(2, ink.size // 10_000):
        return None
    return ink


def _contrast_ink(gray: Image.Image) -> np.ndarray:
    """Ink from darkness on a light background (or lightness on a dark one), robust to uneven light."""
    values = np.asarray(gray, dtype=np.float32)
    # The background, estimated at low resolution: a max (light paper) or min (dark board) filter
    # wide enough to erase strokes (9 of about 32 pixels: even a thick, large digit), so that
    # shadows and gradients across a photo cancel out.
    factor = max(1, max(gray.size) // 32)
    small = gray.reduce(factor) if factor > 1 else gray
    light = np.median(np.asarray(small)) >= 128
    window = 9 if min(small.size) >= 9 else 3
    background = small.filter(ImageFilter.MaxFilter(window) if light else ImageFilter.MinFilter(window))
    background = np.asarray(background.resize(gray.size, Image.Resampling.BILINEAR), dtype=np.float32)
    if light:
        ink = (background - values) / np.maximum(background, 64)
    else:
        ink = (values - background) / np.maximum(255 - background, 64)
    # Paper grain, JPEG noise and faint shadows are not ink; above that, ink is kept as it is,
    # so a clean canvas gives the same ink map as its strokes would in an alpha channel.
    ink = np.clip(ink, 0, 1)
    ink[ink < 0.15] = 0
    return ink


def mnist_pixels(ink: np.ndarray) -> np.ndarray:
    """Ink map (H, W) in [0, 1] -> (28, 28) uint8 in MNIST's geometry."""
    top, bottom, left, right = _ink_box(ink)
    crop = ink[top:bottom, left:right]
    height, width = crop.shape
    scale = MNIST_BOX / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    digit = np.asarray(Image.fromarray(crop).resize(size, Image.Resampling.LANCZOS))
    digit = np.clip(digit, 0, None)
    digit = np.clip(digit / max(float(digit.max()), 1e-6), 0, 1)  # strongest ink becomes white

    # Centre of mass of the digit -> the field's centre, by whole pixels as MNIST did.
    rows, cols = np.arange(digit.shape[0]), np.arange(digit.shape[1])
    mass = digit.sum()
    com_y, com_x = (digit.sum(1) @ rows) / mass, (digit.sum(0) @ cols) / mass
    y = int(np.clip(round(MNIST_CENTRE - com_y), 0, MNIST_SIZE - digit.shape[0]))
    x = int(np.clip(round(MNIST_CENTRE - com_x), 0, MNIST_SIZE - digit.shape[1]))
    field = np.zeros((MNIST_SIZE, MNIST_SIZE), dtype=np.float32)
    field[y:y + digit.shape[0], x:x + digit.shape[1]] = digit
    return np.rint(field * 255).astype(np.uint8)


def _ink_box(ink: np.ndarray) -> tuple[int, int, int, int]:
    """Bounding box (top, bottom, left, right) of the ink, ignoring isolated specks on large images."""
    mask = ink > 0.2  # the faint fringe of a stroke does not widen the box
    if min(ink.shape) >= 100:
        # A 3x3 erosion removes specks of 1-2 pixels (noise, dust) while strokes survive; the box
        # of what is left, grown back by the pixel the erosion took, is the digit's.
        eroded = _erode(mask)
        if eroded.any():
            rows, cols = np.flatnonzero(eroded.any(1)), np.flatnonzero(eroded.any(0))
            return (max(rows[0] - 1, 0), min(rows[-1] + 2, ink.shape[0]),
                    max(cols[0] - 1, 0), min(cols[-1] + 2, ink.shape[1]))
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    return rows[0], rows[-1] + 1, cols[0], cols[-1] + 1


def _erode(mask: np.ndarray) -> np.ndarray:
    """3x3 binary erosion (pixels outside the image count as ink-free), as two separable passes."""
    vertical = mask.copy()
    vertical[1:] &= mask[:-1]
    vertical[:-1] &= mask[1:]
    vertical[0] = vertical[-1] = False
    both = vertical.copy()
    both[:, 1:] &= vertical[:, :-1]
    both[:, :-1] &= vertical[:, 1:]
    both[:, 0] = both[:, -1] = False
    return both


# CIFAR-10 per-channel statistics the course normalises with (of values in [0, 1]).
CIFAR_MEAN, CIFAR_STD = (0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)


def normalize_cifar(images: torch.Tensor) -> torch.Tensor:
    """uint8 RGB (B, 3, H, W) -> float (B, 3, H, W) with the course's per-channel statistics."""
    return normalize_images(images, CIFAR_MEAN, CIFAR_STD)


def normalize_images(images: torch.Tensor, mean, std) -> torch.Tensor:
    """uint8 RGB (B, 3, H, W) -> float (B, 3, H, W): (pixel / 255 - mean) / std per channel."""
    mean = torch.tensor(mean, device=images.device).view(1, 3, 1, 1)
    std = torch.tensor(std, device=images.device).view(1, 3, 1, 1)
    return (images.float() / 255 - mean) / std


def square_image(image: Image.Image, size: int) -> Image.Image:
    """A decoded image (any mode `open_image` returns) -> RGB size x size: what `image-folder` models see.

    Transparency is flattened onto white and grey becomes RGB; the central square is cut out
    (the longer side loses its edges, nothing is stretched) and resized with Lanczos, which
    antialiases when shrinking (after whole-factor box reductions, for speed).
    """
    width, height = image.size
    side = min(width, height)
    box = ((width - side) // 2, (height - side) // 2, (width + side) // 2, (height + side) // 2)
    return flatten(image).resize((size, size), Image.LANCZOS, box=box, reducing_gap=2.0)
