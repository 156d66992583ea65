"""cifar10-airbench: each method checked against what it claims, and every method switchable."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from conftest import train

from shared.models import MODELS, build_model
from shared.models.airbench import whitening_weights
from training.cifar10_data import synthetic_cifar
from training.lessons.cifar10_airbench import (
    Config,
    MultiCrop,
    epoch_images,
    initialise,
    optimizer_for,
    triangle,
)


def test_whitening_filters_give_the_patches_unit_covariance():
    images = torch.rand(64, 3, 16, 16) @ torch.rand(16, 16)  # correlated pixels
    filters = whitening_weights(images, patch=2, eps=0.0)
    assert filters.shape == (24, 3, 2, 2)
    responses = F.conv2d(images.double(), filters[:12].double())  # (N, 12, 15, 15)
    flat = responses.permute(0, 2, 3, 1).reshape(-1, 12)
    covariance = torch.cov(flat.T, correction=0)
    torch.testing.assert_close(covariance, torch.eye(12, dtype=torch.double), atol=1e-4, rtol=0)
    torch.testing.assert_close(filters[12:], -filters[:12])  # and the negatives, for the GELU after it


def test_alternating_flip_mirrors_each_image_every_other_epoch():
    cfg = Config(translate=0)
    data = synthetic_cifar(200, seed=3)
    first, second, third = (epoch_images(data, epoch, cfg).inputs for epoch in (1, 2, 3))
    flipped = (first != data.inputs).flatten(1).any(1)
    assert 60 < flipped.sum() < 140  # about half, at random
    torch.testing.assert_close(first[flipped], data.inputs[flipped].flip(3))
    torch.testing.assert_close(second[~flipped], data.inputs[~flipped].flip(3))  # the other half
    torch.testing.assert_close(second[flipped], data.inputs[flipped])
    torch.testing.assert_close(third, first)
    # the same on a second call (a resumed run) and for another process
    torch.testing.assert_close(epoch_images(data, 2, cfg).inputs, second)


def test_translate_shifts_by_at_most_the_setting():
    data = synthetic_cifar(50, seed=4)
    shifted = epoch_images(data, 1, Config(flip="none", translate=2)).inputs
    padded = F.pad(data.inputs.float(), (2, 2, 2, 2), mode="reflect")
    for image, original in zip(shifted.float(), padded, strict=True):
        assert any(torch.equal(image, original[:, 2 + dy:34 + dy, 2 + dx:34 + dx])
                   for dy in range(-2, 3) for dx in range(-2, 3))


def test_multi_crop_averages_mirror_and_one_pixel_shifts():
    torch.manual_seed(0)
    model = build_model("cifar10-airbench", widths=[8, 8, 8]).eval()
    images = torch.randn(4, 3, 32, 32)
    padded = F.pad(images, (1, 1, 1, 1), mode="reflect")
    mirrored = [(model(x) + model(x.flip(3))) / 2 for x in (images, padded[..., :32, :32], padded[..., 2:, 2:])]
    expected = (mirrored[0] + (mirrored[1] + mirrored[2]) / 2) / 2
    with torch.no_grad():
        torch.testing.assert_close(MultiCrop(model, 2)(images), expected.detach())
        torch.testing.assert_close(MultiCrop(model, 1)(images), mirrored[0].detach())
        torch.testing.assert_close(MultiCrop(model, 0)(images), model(images))


def test_identity_init_passes_the_input_through_and_frozen_parts_get_no_gradient():
    model = build_model("cifar10-airbench", widths=[32, 32, 32])
    initialise(model, synthetic_cifar(100, seed=5), Config())
    conv = model.features[2][4]  # the second 3x3 convolution of the second block: 32 -> 32
    x = torch.randn(2, 32, 7, 7)
    torch.testing.assert_close(conv(x), x)
    assert not model.whiten.weight.requires_grad and model.whiten.bias.requires_grad
    norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert all(not m.weight.requires_grad and m.bias.requires_grad for m in norms)
    groups = optimizer_for(model, Config()).param_groups
    assert [len(g["params"]) for g in groups] == [1, len(norms), 7]  # 6 convolutions and the linear layer
    assert groups[1]["lr"] == pytest.approx(64 * groups[2]["lr"])
    # the step's weight decay (lr * weight_decay) is the same in every group
    assert len({round(g["lr"] * g["weight_decay"], 12) for g in groups}) == 1


def test_triangle_schedule_peaks_at_23_percent():
    rates = [triangle(step, 100) for step in range(101)]
    assert rates[0] == pytest.approx(0.2) and max(rates) == pytest.approx(1, abs=0.01)
    assert rates.index(max(rates)) in (23, 24) and rates[100] == pytest.approx(0.07)


@pytest.mark.parametrize("options", [
    [],
    ["--whiten=false", "--identity_init=false", "--frozen_norm_scale=false", "--lookahead=false",
     "--flip=random", "--translate=0", "--tta=0", "--label_smoothing=0"],
])
def test_smoke_run_with_every_method_on_and_off(options, tmp_path):
    metrics = train("cifar10-airbench", tmp_path, *options)
    assert metrics["complete"] and metrics["test_accuracy"] > 15  # 10 classes: chance is 10%
    folder = tmp_path / "cifar10-airbench"
    config = json.loads((folder / "training_config.json").read_text())["config"]
    assert config["lookahead"] == ("--lookahead=false" not in options)
    model = MODELS["cifar10-airbench"].from_pretrained(folder)  # strict, safetensors
    assert model.whiten.weight.shape == (24, 3, 2, 2)
    if not options:  # the published weights end on the lookahead's slow weights
        slow = MODELS["cifar10-airbench"].from_pretrained(folder / "slow")
        for a, b in zip(model.state_dict().values(), slow.state_dict().values(), strict=True):
            torch.testing.assert_close(a, b)
