"""CIFAR-10: loading the course's folder layout, batch augmentation, the three lessons."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision.transforms.functional as TF
from conftest import find_datasets
from PIL import Image

from shared.models.cifar10 import CLASSES
from shared.preprocessing import CIFAR_MEAN, normalize_cifar
from training import cifar10_data
from training.augment import crop_flip, random_crop_flip
from training.cifar10_data import load_cifar10
from training.cli import main
from training.data import DataNotFound


def write_image_folder(root: Path, per_class: int, seed: int = 0) -> dict[str, np.ndarray]:
    """root/cifar10/{train,test}/<class>/NNNN.png|jpg of random 32x32 pictures; returns the PNG pixels."""
    rng = np.random.default_rng(seed)
    pixels = {}
    for split in ("train", "test"):
        for name in CLASSES:
            folder = root / "cifar10" / split / name
            folder.mkdir(parents=True)
            for i in range(per_class):
                coarse = rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)  # smooth, so JPEG keeps it close
                image = np.asarray(Image.fromarray(coarse).resize((32, 32), Image.BILINEAR))
                suffix = "jpg" if i == per_class - 1 else "png"  # both kinds, as the course's archive and our copy
                Image.fromarray(image).save(folder / f"{i:04d}.{suffix}")
                pixels[f"{split}/{name}/{i:04d}.{suffix}"] = image
    return pixels


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("ZTG_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_image_folder_is_decoded_once_then_read_from_the_cache(tmp_path, cache, monkeypatch):
    pixels = write_image_folder(tmp_path / "data", per_class=3)
    train, test = load_cifar10(tmp_path / "data", download=False)
    assert train.inputs.shape == test.inputs.shape == (30, 3, 32, 32)
    assert train.inputs.dtype == torch.uint8 and train.labels.dtype == torch.int64
    assert train.labels.tolist() == [c for c in range(10) for _ in range(3)]  # classes in CLASSES order
    np.testing.assert_array_equal(train.inputs[3].permute(1, 2, 0).numpy(), pixels["train/automobile/0000.png"])
    jpeg = train.inputs[5].permute(1, 2, 0).numpy().astype(int)  # lossy, but the same picture
    assert np.abs(jpeg - pixels["train/automobile/0002.jpg"]).mean() < 8
    files = sorted(cache.rglob("*.safetensors"))
    assert len(files) == 2

    decoded = []  # the number of images of each decoding
    decode = cifar10_data.decode_images
    monkeypatch.setattr(cifar10_data, "decode_images", lambda paths: decoded.append(len(paths)) or decode(paths))
    again, _ = load_cifar10(tmp_path / "data", download=False)
    assert torch.equal(again.inputs, train.inputs) and torch.equal(again.labels, train.labels)
    assert decoded == []
    # A changed folder is decoded afresh, not served stale from the cache, into the same cache file:
    # a data folder replaced every day costs one copy, not one a day.
    Image.fromarray(pixels["train/cat/0000.png"]).save(tmp_path / "data/cifar10/train/cat/0009.png")
    changed, _ = load_cifar10(tmp_path / "data", download=False)
    assert len(changed) == 31 and decoded == [31] and sorted(cache.rglob("*.safetensors")) == files
    # A cache file that cannot be read (cut short by a full disk, say) is decoded again.
    for cached in files:
        cached.write_bytes(cached.read_bytes()[:100])
    again, _ = load_cifar10(tmp_path / "data", download=False)
    assert decoded == [31, 31, 30] and torch.equal(again.inputs, changed.inputs)
    assert sorted(cache.rglob("*.safetensors")) == files


def test_missing_data_says_where_what_and_which_option(tmp_path, cache, monkeypatch, capsys):
    with pytest.raises(DataNotFound) as error:
        load_cifar10(tmp_path / "empty", download=False)
    message = str(error.value)
    assert str((tmp_path / "empty").resolve()) in message
    assert "cifar10/train/<class>" in message and "cifar-10-batches-py" in message and "--data-dir" in message

    # The command line checks the download before any lesson trains (a HEAD request, here refused).
    monkeypatch.setattr(cifar10_data, "unreachable", lambda url: "OSError: no network")
    with pytest.raises(SystemExit) as exit_:
        main(["cifar10-mlp", "--data-dir", str(tmp_path / "empty"), "--out-dir", str(tmp_path / "out")])
    assert exit_.value.code == 2
    stderr = capsys.readouterr().err
    assert "could not be downloaded (OSError: no network)" in stderr and "Nothing was trained" in stderr
    assert "Traceback" not in stderr


def test_wrong_folders_and_bad_torchvision_copy_are_reported(tmp_path, cache):
    (tmp_path / "a/cifar10/train/cats").mkdir(parents=True)
    (tmp_path / "a/cifar10/test").mkdir(parents=True)
    with pytest.raises(DataNotFound, match="one folder per CIFAR-10 class"):
        load_cifar10(tmp_path / "a", download=False)
    (tmp_path / "b/cifar-10-batches-py").mkdir(parents=True)
    with pytest.raises(DataNotFound, match="incomplete or corrupt"):
        load_cifar10(tmp_path / "b", download=False)


def test_crop_flip_matches_torchvision_reflect_pad_crop_and_flip():
    torch.manual_seed(0)
    images = torch.randint(0, 256, (64, 3, 32, 32), dtype=torch.uint8)
    shifts = torch.randint(-4, 5, (64, 2))
    flips = torch.rand(64) < 0.5
    ours = crop_flip(images, shifts, flips)
    padded = TF.pad(images, [4], padding_mode="reflect")  # (64, 3, 40, 40), what RandomCrop(padding=4) sees
    for image, out, (dy, dx), flip in zip(padded, ours, shifts.tolist(), flips.tolist(), strict=True):
        expected = TF.crop(image, 4 + dy, 4 + dx, 32, 32)
        torch.testing.assert_close(out, TF.hflip(expected) if flip else expected, rtol=0, atol=0)


def test_random_crop_flip_keeps_shape_and_only_moves_pixels():
    torch.manual_seed(1)
    images = torch.randint(0, 256, (256, 3, 32, 32), dtype=torch.uint8)
    out = random_crop_flip(images, padding=4)
    assert out.shape == images.shape and out.dtype == torch.uint8
    # Pixels only move: every output value comes from its own image, and the images do move.
    assert not torch.equal(out, images)
    for i in range(4):
        assert set(out[i].flatten().tolist()) <= set(images[i].flatten().tolist())
    no_shift = random_crop_flip(images, padding=0)
    same = (no_shift == images).flatten(1).all(1)
    mirrored = (no_shift == images.flip(3)).flatten(1).all(1)
    assert (same | mirrored).all() and 0.3 < same.float().mean() < 0.7
    assert torch.equal(crop_flip(images, torch.zeros(256, 2, dtype=torch.long), torch.ones(256, dtype=torch.bool)),
                       images.flip(3))
    # float batches too, as on an accelerator after conversion
    assert random_crop_flip(images.float()).dtype == torch.float32


def test_normalisation_uses_the_course_statistics():
    mean_image = (torch.tensor(CIFAR_MEAN) * 255).view(1, 3, 1, 1).expand(2, 3, 32, 32)
    assert normalize_cifar(mean_image).abs().max() < 1e-5
    assert normalize_cifar(torch.zeros(1, 3, 32, 32, dtype=torch.uint8)).shape == (1, 3, 32, 32)


@pytest.mark.parametrize(("lesson", "options"), [
    ("cifar10-mlp", []), ("cifar10-cnn", []),
    ("cifar10-resnet9", ["--fast=true"]),  # the plain run is in test_lessons.py's sweep
])
def test_lesson_smoke_run(lesson, options, tmp_path):
    from shared.models import MODELS

    main([lesson, "--profile", "smoke", "--out-dir", str(tmp_path), *options])
    folder = tmp_path / lesson
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["complete"] and metrics["test_accuracy"] > 30  # 10 classes: chance is 10%
    for name in ("model.safetensors", "config.json", "README.md", "curves.png", "confusion_matrix.png",
                 "misclassified.png"):
        assert (folder / name).is_file(), name
    history = json.loads((folder / "history.json").read_text())
    assert {"train_loss", "val_loss", "val_accuracy"} <= set(history[-1])
    if lesson == "cifar10-cnn":  # lesson 4's look inside: kernels and feature maps
        assert (folder / "kernels.png").is_file() and (folder / "feature_maps.png").is_file()
    if "--fast=true" in options:  # the root is the running average; the raw weights are kept for --resume
        published = MODELS[lesson].from_pretrained(folder)
        raw = MODELS[lesson].from_pretrained(folder / "model")
        pairs = list(zip(published.state_dict().values(), raw.state_dict().values(), strict=True))
        assert not all(torch.equal(a, b) for a, b in pairs)


def test_resnet9_draws_its_one_cycle_and_the_course_split_validates_on_the_test_set(tmp_path):
    from training.lessons.cifar10_resnet9 import PROFILES, one_cycle, schedule

    assert PROFILES["course"]["val_size"] == 0
    main(["cifar10-resnet9", "--profile", "smoke", "--val_size=0", "--epochs=3", "--out-dir", str(tmp_path)])
    folder = tmp_path / "cifar10-resnet9"
    metrics = json.loads((folder / "metrics.json").read_text())
    history = json.loads((folder / "history.json").read_text())
    # All 640 synthetic training images train (10 steps of 64), and the metrics say what validated.
    assert metrics["validated_on"].startswith("the test set") and metrics["samples_per_second"] > 0
    assert {"test_loss", "test_accuracy"} <= set(history[0]) and "val_accuracy" not in history[0]
    assert history[-1]["test_accuracy"] == metrics["test_accuracy"]  # the same 256 images
    # learning_rate.png draws the scheduler's own rates: they match the ones the run logged.
    rates = schedule(lambda optimizer: one_cycle(optimizer, 0.01, 30), 30)
    assert [round(rates[10 * e], 12) for e in (1, 2)] == [round(row["lr"], 12) for row in history[:2]]
    assert max(rates) == pytest.approx(0.01) and rates.index(max(rates)) == 8  # peak after 30% of the 30 steps
    assert (folder / "learning_rate.png").is_file()


@pytest.mark.realdata
def test_real_cifar10_copy_loads_and_a_short_run_learns(tmp_path):
    data_dir = find_datasets("cifar10/train")
    if data_dir is None:
        pytest.skip("CIFAR-10 copy not found: set ZTG_DATA_DIR or put ../shared/datasets beside the repo")
    train, test = load_cifar10(data_dir, download=False)
    assert train.inputs.shape == (50_000, 3, 32, 32) and test.inputs.shape == (10_000, 3, 32, 32)
    assert torch.bincount(train.labels).tolist() == [5000] * 10
    assert torch.bincount(test.labels).tolist() == [1000] * 10
    means = train.inputs.sum(dim=(0, 2, 3), dtype=torch.float64) / (50_000 * 32 * 32 * 255)
    torch.testing.assert_close(means, torch.tensor(CIFAR_MEAN, dtype=torch.float64), atol=1e-3, rtol=0)
    main(["cifar10-mlp", "--profile", "cpu", "--epochs=1", "--hidden_sizes=128", "--data-dir", str(data_dir), "--out-dir", str(tmp_path)])
    metrics = json.loads((tmp_path / "cifar10-mlp" / "metrics.json").read_text())
    assert metrics["test_accuracy"] > 35 and metrics["test_samples"] == 10_000
