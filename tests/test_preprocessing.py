"""`sketch_to_mnist`: any drawing or photo of a digit -> MNIST's own geometry and normalisation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw, ImageFilter

from harness.drawings import drawing
from shared.preprocessing import MNIST_MEAN, MNIST_STD, ink_map, normalize_mnist, sketch_to_mnist


def geometry(pixels: np.ndarray) -> tuple[int, int, float, float]:
    """(ink box height, width, centre-of-mass row, column) of a 28x28 digit."""
    rows, cols = np.flatnonzero(pixels.any(1)), np.flatnonzero(pixels.any(0))
    mass = pixels.astype(np.float64)
    com_y = (mass.sum(1) @ np.arange(28)) / mass.sum()
    com_x = (mass.sum(0) @ np.arange(28)) / mass.sum()
    return rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1, com_y, com_x


def distance(a: np.ndarray, b: np.ndarray) -> float:
    """Mean absolute difference (0..255) of two digits, allowing a one-pixel shift: centring by
    whole pixels may round a centre of mass at x.5 either way."""
    a, b = a.astype(int), b.astype(int)
    return min(np.abs(np.roll(a, (dy, dx), axis=(0, 1)) - b).mean() for dy in (-1, 0, 1) for dx in (-1, 0, 1))


def test_normalize_mnist_is_the_training_normalisation():
    digits = torch.tensor([[[0, 255]]], dtype=torch.uint8)
    out = normalize_mnist(digits)
    assert out.shape == (1, 1, 1, 2)
    assert torch.allclose(out, torch.tensor([[[[-MNIST_MEAN / MNIST_STD, (1 - MNIST_MEAN) / MNIST_STD]]]]))
    every = torch.arange(256, dtype=torch.uint8).reshape(1, 16, 16)  # every pixel value, as the formula says
    out = normalize_mnist(every)
    assert out.dtype == torch.float32 and out.shape == (1, 1, 16, 16)
    assert torch.allclose(out, (every.double() / 255 - MNIST_MEAN).div(MNIST_STD).float().unsqueeze(1), atol=1e-6)


@pytest.mark.parametrize("digit", ["1", "7", "0", "4"])
@pytest.mark.parametrize("transparent", [False, True])
def test_mnist_geometry(digit, transparent):
    result = sketch_to_mnist(drawing(digit, transparent=transparent))
    assert result.pixels.shape == (28, 28) and result.pixels.dtype == np.uint8
    assert result.tensor.shape == (1, 1, 28, 28) and result.tensor.dtype == torch.float32
    assert torch.equal(result.tensor, normalize_mnist(torch.from_numpy(result.pixels)[None]))
    height, width, com_y, com_x = geometry(result.pixels)
    assert max(height, width) in (20, 21)  # the longest side is 20 pixels (+1 for resampling fringe)
    assert abs(com_y - 14) <= 0.75 and abs(com_x - 14) <= 0.75
    assert result.pixels.max() == 255  # the strongest ink is white, like MNIST


def test_tall_digit_keeps_its_aspect_ratio():
    height, width, _, _ = geometry(sketch_to_mnist(drawing("1", box=(0.3, 0.05, 0.4, 0.9))).pixels)
    assert height >= 20 and width <= 12


def test_browser_canvas_and_transparent_canvas_give_the_same_input():
    """Black strokes on opaque white (the browser) == the same strokes in alpha (an API client)."""
    opaque = sketch_to_mnist(drawing("4")).pixels
    transparent = sketch_to_mnist(drawing("4", transparent=True)).pixels
    coloured = sketch_to_mnist(drawing("4", transparent=True, ink=(200, 30, 30))).pixels
    assert distance(opaque, transparent) < 6
    assert np.array_equal(transparent, coloured)  # in a transparent canvas only alpha is ink


def test_position_and_size_do_not_matter():
    base = sketch_to_mnist(drawing("7", box=(0.2, 0.15, 0.6, 0.7))).pixels
    moved = sketch_to_mnist(drawing("7", box=(0.02, 0.5, 0.3, 0.35), width=14)).pixels
    large = sketch_to_mnist(drawing("7", size=(1600, 1200), box=(0.55, 0.1, 0.4, 0.7), width=64)).pixels
    for other in (moved, large):
        assert distance(base, other) < 8


def test_light_ink_on_dark_background():
    """MNIST's own polarity (and chalk on a board): white ink on black is read as ink too."""
    dark = drawing("0", ink=(255, 255, 255), paper=(0, 0, 0))
    light = drawing("0")
    assert distance(sketch_to_mnist(dark).pixels, sketch_to_mnist(light).pixels) < 3


def test_an_mnist_digit_comes_back_unchanged():
    """A digit already in MNIST's format is a fixed point (up to resampling)."""
    digit = sketch_to_mnist(drawing("2")).pixels
    again = sketch_to_mnist(digit).pixels
    assert distance(digit, again) < 6


def test_photo_with_uneven_light_noise_and_specks():
    """Dark ink on paper lit from one side, with sensor noise and dust: the digit is found."""
    rng = np.random.default_rng(0)
    clean = sketch_to_mnist(drawing("7", size=(800, 600), box=(0.35, 0.2, 0.3, 0.6), width=18)).pixels
    ink = np.asarray(drawing("7", size=(800, 600), box=(0.35, 0.2, 0.3, 0.6), width=18).convert("L"), dtype=float) / 255
    light = np.linspace(0.55, 1.0, 800)[None, :] * np.ones((600, 1))  # shadow on the left
    photo = 235 * light * (0.2 + 0.8 * ink) + rng.normal(0, 6, (600, 800))
    photo[rng.integers(0, 600, 12), rng.integers(0, 800, 12)] = 20  # isolated dark specks
    image = Image.fromarray(np.clip(photo, 0, 255).astype(np.uint8)).convert("RGB")
    result = sketch_to_mnist(image)
    assert result is not None
    assert distance(result.pixels, clean) < 12


def test_blurry_thin_photo_strokes_still_fill_the_range():
    image = drawing("1", size=(1200, 1200), width=6).filter(ImageFilter.GaussianBlur(3))
    result = sketch_to_mnist(image)
    assert result is not None and result.pixels.max() == 255


@pytest.mark.parametrize("blank", [
    Image.new("RGBA", (560, 560), (255, 255, 255, 255)),     # a cleared browser canvas
    Image.new("RGBA", (560, 560), (0, 0, 0, 0)),             # a cleared transparent canvas
    Image.new("L", (300, 200), 0),                           # all black
    Image.new("RGB", (300, 200), (128, 128, 128)),           # uniform grey
    Image.new("L", (1, 1), 255),                             # one pixel
])
def test_blank_images_mean_no_digit(blank):
    assert sketch_to_mnist(blank) is None


def test_paper_noise_alone_is_not_a_digit():
    rng = np.random.default_rng(1)
    paper = np.clip(rng.normal(225, 8, (480, 640)), 0, 255).astype(np.uint8)
    assert sketch_to_mnist(Image.fromarray(paper)) is None


def test_a_tiny_dot_is_still_ink():
    canvas = Image.new("RGBA", (560, 560), (255, 255, 255, 255))
    ImageDraw.Draw(canvas).ellipse((270, 270, 290, 290), fill=(0, 0, 0, 255))
    assert sketch_to_mnist(canvas) is not None


@pytest.mark.parametrize("array", [
    np.asarray(drawing("1").convert("L")),
    np.asarray(drawing("1").convert("RGB")),
    np.asarray(drawing("1", transparent=True)),
    np.asarray(drawing("1", transparent=True).convert("LA")),
    np.asarray(drawing("1").convert("L"), dtype=np.float64) / 255,                 # floats in [0, 1]
    (np.asarray(drawing("1").convert("L"), dtype=np.float64) * 257).astype(np.uint16),  # 16-bit
])
def test_arrays_of_every_layout(array):
    result = sketch_to_mnist(array)
    assert result is not None and geometry(result.pixels)[0] >= 19


def test_ink_map_reads_alpha_only_with_real_transparency():
    """An opaque RGBA canvas (alpha 255 everywhere, as from a browser) is read from darkness."""
    ink = ink_map(drawing("1"))
    assert ink is not None and ink.max() == pytest.approx(1.0)
    assert ink_map(drawing("1").convert("RGB")) is not None
