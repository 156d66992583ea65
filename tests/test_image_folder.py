"""The course project (`image-folder`): any class folder of any images trains, bad data is named."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import run_training, train
from PIL import Image

from shared.models import MODELS
from training import folder_data
from training.folder_data import BadDataset, channel_stats, decode, load_folder

CLASSES = ("circle", "square", "stripes")
# Odd sizes and every kind of file a folder of pictures gathered from anywhere holds.
KINDS = [("RGB", "png", (37, 23)), ("L", "png", (41, 45)), ("P", "png", (29, 33)),
         ("RGBA", "png", (50, 31)), ("CMYK", "jpg", (33, 47)), ("I;16", "png", (27, 27)),
         ("exif", "jpg", (44, 30))]


def picture(label: int, size: tuple[int, int], seed: int) -> np.ndarray:
    """(H, W, 3) uint8: a shape per class (of three), on a noisy background, in a random colour."""
    rng = np.random.default_rng(seed)
    width, height = size
    y, x = np.mgrid[0:height, 0:width] / np.array([height, width])[:, None, None]
    shape = [((y - 0.5) ** 2 + (x - 0.5) ** 2) < 0.1, (abs(y - 0.5) < 0.3) & (abs(x - 0.5) < 0.3),
             (y * 6).astype(int) % 2 == 0][label % 3]
    colour = rng.integers(128, 256, 3)
    pixels = np.where(shape[..., None], colour, 40) + rng.integers(0, 30, (height, width, 3))
    return pixels.clip(0, 255).astype(np.uint8)


def save(pixels: np.ndarray, kind: str, path: Path) -> None:
    image = Image.fromarray(pixels)
    if kind == "exif":  # stored on its side, with the EXIF tag that turns it upright
        exif = Image.Exif()
        exif[0x0112] = 6  # rotate 90 degrees clockwise to view
        image.transpose(Image.Transpose.ROTATE_90).save(path, exif=exif, quality=95)
    elif kind == "I;16":
        Image.fromarray(np.asarray(image.convert("L")).astype(np.uint16) * 257).save(path)
    elif kind == "P":
        image.quantize(64).save(path)
    else:
        image.convert(kind).save(path)


def write_folder(root: Path, per_class: int = 14, classes=CLASSES) -> Path:
    for label, name in enumerate(classes):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            mode, suffix, size = KINDS[i % len(KINDS)]
            save(picture(label, size, seed=100 * label + i), mode, root / name / f"{i:03d}.{suffix}")
    return root


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("ZTG_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_a_folder_of_mixed_images_trains_end_to_end_and_names_what_it_skipped(tmp_path, cache, monkeypatch):
    folder = write_folder(tmp_path / "shapes")
    good = (folder / "circle" / "000.png").read_bytes()
    (folder / "circle" / "cut.png").write_bytes(good[: len(good) // 2])  # truncated
    (folder / "square" / "notes.txt").write_text("not a picture")
    (folder / "square" / ".DS_Store").write_bytes(b"\0\1")  # hidden: not even a candidate
    result = run_training("image-folder", "--profile", "smoke", "--synthetic_data=false", "--image_size=24",
                          "--batch_size=8", "--data-dir", str(folder), "--out-dir", str(tmp_path / "out"),
                          env={"ZTG_CACHE_DIR": str(cache)})
    out = tmp_path / "out" / "image-folder"
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["complete"] and metrics["skipped_files"] == 2
    assert sorted(metrics["skipped"]) == [
        "shapes/circle/cut.png: This image file is damaged or incomplete (truncated)",
        "shapes/square/notes.txt: This file is not an image this app can read"]
    assert "skipped shapes/circle/cut.png" in result.stdout
    # 14 readable images per class: 10% of each (1.4, rounded) held out for test, as many for validation
    assert metrics["test_samples"] == 3 and metrics["val_images"] == 3 and metrics["train_images"] == 36
    config = json.loads((out / "config.json").read_text())
    assert config["class_names"] == list(CLASSES) and config["image_size"] == 24
    assert len(config["mean"]) == len(config["std"]) == 3
    for name in ("curves.png", "confusion_matrix.png", "misclassified.png", "README.md"):
        assert (out / name).is_file(), name
    model = MODELS["image-folder"].from_pretrained(out)
    assert model(torch.zeros(2, 3, 24, 24)).shape == (2, 3) and model.class_names == list(CLASSES)

    # A second load reads the cache, and still knows which files it skipped.
    def no_decoding(path, size):
        raise AssertionError("decoded again although cached")

    monkeypatch.setattr(folder_data, "decode", no_decoding)
    again = load_folder(folder, [], 24, 0.1, 0.1, seed=0)
    assert len(again.skipped) == 2 and len(again.train) == 36


def test_every_mode_arrives_upright_in_rgb_at_full_scale(tmp_path):
    pixels = picture(2, (44, 30), seed=1)

    def reference(mode: str) -> np.ndarray:  # the central 30x30 square at 16x16, in colour or grey
        image = Image.fromarray(pixels).convert(mode).convert("RGB")
        return np.asarray(image.resize((16, 16), Image.LANCZOS, box=(7, 0, 37, 30))).astype(int)

    for mode, suffix, _ in KINDS:
        path = tmp_path / f"{mode.replace(';', '')}.{suffix}"
        save(pixels, mode, path)
        decoded, reason = decode(path, 16)
        assert reason is None and decoded.shape == (16, 16, 3) and decoded.dtype == np.uint8
        expected = reference("L" if mode in ("L", "I;16") else "RGB")
        assert np.abs(decoded - expected).mean() < 6, mode  # the same picture, the same way up
        assert np.abs(decoded - expected[::-1]).mean() > 20, mode  # and not upside down


def test_layouts_and_where_each_split_comes_from(tmp_path):
    root = tmp_path / "data"
    for split, count in (("train", 20), ("valid", 3), ("test", 4)):
        write_folder(root / split, per_class=count, classes=CLASSES[:2])
    data = load_folder(root, [], 16, 0.1, 0.1, seed=0)
    assert (len(data.train), len(data.val), len(data.test)) == (40, 6, 8)
    assert data.sources == {"train": "data/train/", "val": "data/valid/", "test": "data/test/"}
    # Only train/: test then validation are seeded samples of each class; --classes picks folders.
    write_folder(tmp_path / "flat", per_class=20)
    data = load_folder(tmp_path / "flat", ["stripes", "circle"], 16, 0.1, 0.1, seed=0)
    assert data.class_names == ["circle", "stripes"]
    assert (len(data.train), len(data.val), len(data.test)) == (32, 4, 4)
    assert torch.bincount(data.test.labels).tolist() == [2, 2]
    assert data.sources["test"] == "10% of each class of flat/, seeded"
    with pytest.raises(BadDataset, match="--classes names nope, not folders of .*: circle, square, stripes"):
        load_folder(tmp_path / "flat", ["nope", "circle"], 16, 0.1, 0.1, seed=0)


@pytest.mark.parametrize("problem, message", [
    ("empty", "the class folder {root}/square is empty"),
    ("single", "has one class folder (circle); a classifier needs at least two"),
    ("unreadable", "no file of {root}/square could be read"),
])
def test_folders_that_cannot_train_a_classifier_stop_before_training(problem, message, tmp_path):
    root = write_folder(tmp_path / "data", per_class=3, classes=CLASSES[:1] if problem == "single" else CLASSES)
    if problem != "single":
        for path in (root / "square").iterdir():
            path.unlink()
    if problem == "unreadable":
        (root / "square" / "a.png").write_bytes(b"\x89PNG broken")
    result = run_training("image-folder", "--data-dir", str(root), "--out-dir", str(tmp_path / "out"),
                          "--profile", "smoke", "--synthetic_data=false", check=False)
    assert result.returncode == 2
    assert message.format(root=root) in result.stderr and "Traceback" not in result.stderr
    assert "epoch 1" not in result.stdout and not (tmp_path / "out" / "image-folder").exists()


def test_the_course_data_folder_trains_three_cifar_classes(tmp_path, capsys):
    (tmp_path / "data" / "MNIST" / "raw").mkdir(parents=True)
    with pytest.raises(SystemExit) as error:  # not MNIST/ taken for a class: a clear error
        train("image-folder", tmp_path / "out", "--synthetic_data=false", "--data-dir", str(tmp_path / "data"))
    err = capsys.readouterr().err
    assert error.value.code == 2 and "takes its example (airplane, cat, dog) from CIFAR-10" in err
    assert "cifar-10-batches-py" in err and "Nothing was trained" in err
    for split in ("train", "test"):
        write_folder(tmp_path / "data" / "cifar10" / split, per_class=6,
                     classes=("airplane", "automobile", "cat", "dog"))
    metrics = train("image-folder", tmp_path / "out", "--synthetic_data=false", "--batch_size=4",
                    "--data-dir", str(tmp_path / "data"))
    assert metrics["classes"] == ["airplane", "cat", "dog"] and metrics["test_samples"] == 18
    assert "is the course's data folder" in capsys.readouterr().out


def test_channel_statistics():
    images = torch.randint(0, 256, (300, 3, 8, 8), dtype=torch.uint8)
    mean, std = channel_stats(images, chunk=64)
    reference = images.double() / 255
    torch.testing.assert_close(torch.tensor(mean), reference.mean((0, 2, 3)).float(), atol=1e-4, rtol=0)
    torch.testing.assert_close(torch.tensor(std), reference.std((0, 2, 3)).float(), atol=1e-3, rtol=0)


def test_resume_rebuilds_the_same_self_describing_model(tmp_path, monkeypatch):
    from training.run import Run

    straight = train("image-folder", tmp_path / "straight")
    stop_agreed = Run._stop_agreed
    monkeypatch.setattr(Run, "_stop_agreed", lambda self: self.epoch == 1)  # as a SIGTERM after epoch 1
    with pytest.raises(SystemExit) as stopped:
        train("image-folder", tmp_path / "resumed")
    assert stopped.value.code == 0
    monkeypatch.setattr(Run, "_stop_agreed", stop_agreed)
    resumed = train("image-folder", tmp_path / "resumed", "--resume")
    assert resumed["test_accuracy"] == straight["test_accuracy"]
    a, b = (MODELS["image-folder"].from_pretrained(tmp_path / run / "image-folder") for run in ("straight", "resumed"))
    assert (a.class_names, a.mean, a.std) == (b.class_names, b.mean, b.std)
    for (key, x), y in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(x, y), key
