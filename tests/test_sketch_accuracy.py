"""Accuracy on sketch-like input: MNIST test digits rendered the way a canvas delivers them (a large
RGBA canvas, thick strokes, off-centre, varied size; ink in alpha on a transparent background, or
black on opaque white as a browser sends it) are read by the trained CNN through the very
preprocessing the Space uses. Target: >= 97%."""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest
import torch
from PIL import Image, ImageFilter

from harness.spaces import trained_cnn
from shared.preprocessing import normalize_mnist, sketch_to_mnist
from shared.weights import load_model

pytestmark = pytest.mark.realdata

SAMPLES = int(os.environ.get("ZTG_SKETCH_SAMPLES", 5_000))  # a seeded half of the test set; 10000 for all
TARGET = 97.0


def render(digit: np.ndarray, rng: np.random.Generator, transparent: bool) -> Image.Image:
    """A 28x28 MNIST digit as a person's drawing on a canvas of 400-800 pixels a side."""
    width, height = (int(v) for v in rng.integers(400, 801, size=2))
    # Stroke weight: the digit as it is, or thickened by up to about one MNIST pixel, like a brush.
    big = Image.fromarray(digit).resize((112, 112), Image.Resampling.BILINEAR)
    thicken = int(rng.integers(0, 3))
    if thicken:
        big = big.filter(ImageFilter.MaxFilter(2 * thicken + 1))
    # Drawn 25-85% of the canvas tall (MNIST's 20-pixel box is 5/7 of the 28-pixel field).
    side = int(rng.uniform(0.25, 0.85) * min(width, height) * 28 / 20)
    ink = np.asarray(big.resize((side, side), Image.Resampling.BILINEAR), dtype=np.float32) / 255
    if rng.random() < 0.5:  # a solid brush: full ink inside the stroke, soft only at its edge
        ink = np.clip((ink - 0.25) / 0.35, 0, 1)
    canvas = np.zeros((height, width), np.float32)
    top = int(rng.integers(-side // 8, height - side + side // 8 + 1))  # off-centre, may touch an edge
    left = int(rng.integers(-side // 8, width - side + side // 8 + 1))
    y0, x0, y1, x1 = max(top, 0), max(left, 0), min(top + side, height), min(left + side, width)
    canvas[y0:y1, x0:x1] = ink[y0 - top:y1 - top, x0 - left:x1 - left]
    alpha = np.rint(canvas * 255).astype(np.uint8)
    if transparent:  # ink colour only in RGB, the drawing in alpha
        rgba = np.zeros((height, width, 4), np.uint8)
        rgba[..., 3] = alpha
    else:  # what a browser sends: opaque white canvas, black strokes
        rgba = np.full((height, width, 4), 255, np.uint8)
        rgba[..., :3] = (255 - alpha)[..., None]
    return Image.fromarray(rgba)


@pytest.fixture(scope="module")
def model(datasets):
    try:
        folder = trained_cnn(datasets)
    except LookupError as error:
        pytest.skip(str(error))
    return load_model("mnist-cnn", environ={"ZTG_WEIGHTS_MNIST_CNN": str(folder)}).model


@pytest.fixture(scope="module")
def test_set(datasets):
    raw = datasets / "MNIST" / "raw"
    images = np.fromfile(raw / "t10k-images-idx3-ubyte", np.uint8, offset=16).reshape(-1, 28, 28)
    labels = np.fromfile(raw / "t10k-labels-idx1-ubyte", np.uint8, offset=8).astype(np.int64)
    return images, labels


def test_sketch_like_mnist_is_read_at_97_percent(model, test_set):
    images, labels = test_set
    order = np.random.default_rng(0).permutation(len(images))[:SAMPLES]
    rng = np.random.default_rng(1)
    inputs, kinds = [], []
    for index in order:
        transparent = bool(rng.random() < 0.5)
        result = sketch_to_mnist(render(images[index], rng, transparent))
        assert result is not None
        inputs.append(result.tensor)
        kinds.append(transparent)
    with torch.inference_mode():
        plain = model(normalize_mnist(torch.from_numpy(images[order]))).argmax(1).numpy()
        sketched = torch.cat([model(batch).argmax(1) for batch in torch.cat(inputs).split(1000)]).numpy()
    truth, kinds = labels[order], np.array(kinds)
    accuracy = {
        "plain MNIST": 100 * (plain == truth).mean(),
        "sketch-like, all": 100 * (sketched == truth).mean(),
        "sketch-like, transparent canvas": 100 * (sketched == truth)[kinds].mean(),
        "sketch-like, opaque white canvas": 100 * (sketched == truth)[~kinds].mean(),
    }
    print("\n" + "\n".join(f"{name:36s} {value:6.2f}%  ({len(order)} test digits)" for name, value in accuracy.items()),
          file=sys.stderr)
    assert accuracy["sketch-like, transparent canvas"] >= TARGET, accuracy
    assert accuracy["sketch-like, opaque white canvas"] >= TARGET, accuracy
