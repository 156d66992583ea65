"""Lesson 6: both GANs run, are reproducible, resume exactly, run in two processes, and are measured."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import safetensors.torch
import torch
from conftest import find_datasets, run_training, train
from PIL import Image

from shared.models import MODELS
from training import anime_faces_data
from training.anime_faces_data import load_anime_faces, synthetic_faces
from training.data import DataNotFound
from training.gan import Augmented, diff_augment
from training.gan_metrics import SlicedWasserstein, fid, sorted_rows

GAN_LESSONS = ["mnist-gan", "anime-dcgan"]
# Small networks, batch 8: 96 steps per epoch on 768 synthetic digits, 32 on 256 synthetic faces.
SMALL = {"mnist-gan": ["--batch_size=8", "--hidden_size=32", "--swd_images=32"],
         "anime-dcgan": ["--batch_size=8", "--width=4", "--swd_images=32"]}
EPOCHS_FOR_100_STEPS = {"mnist-gan": 2, "anime-dcgan": 4}


def weights(folder: Path) -> dict[str, torch.Tensor]:
    """Every tensor of a checkpoint folder, BatchNorm buffers included: the published generator at
    the root (with averaging, as in the smoke profiles: the moving average), the discriminator,
    and the raw generator the average follows."""
    tensors = safetensors.torch.load_file(folder / "model.safetensors")
    for sub in ("discriminator", "generator"):
        tensors |= {f"{sub}.{k}": v for k, v in safetensors.torch.load_file(folder / sub / "model.safetensors").items()}
    return tensors


@pytest.fixture(autouse=True)
def one_thread():
    """These networks are tiny: one thread is faster, and immune to a busy machine's other jobs."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def step_log(monkeypatch):
    """Every scalar the lesson logs, step by step (the checkpoint keeps only epoch means)."""
    from training.run import Run

    steps, log_step = [], Run.log_step

    def recording(self, **scalars):
        steps.append({k: v.item() for k, v in scalars.items()})
        log_step(self, **scalars)

    monkeypatch.setattr(Run, "log_step", recording)
    return steps


def test_the_gan_step_updates_d_then_g_with_the_gradients_autograd_gives():
    """(1) moves only D, by the gradient of BCE(D(x), 1) + BCE(D(G(z)), 0); (2) moves only G, by
    the gradient of BCE(D'(G(z')), 1) through the updated D'. Plain SGD: a step is -lr * gradient."""
    import copy

    from shared.models import build_model
    from training.gan import update_discriminator, update_generator

    torch.manual_seed(0)
    generator = build_model("mnist-gan", latent_dim=8, hidden_size=16)
    discriminator = build_model("mnist-gan-discriminator", hidden_size=16)
    real, (latent_d, latent_g) = torch.rand(6, 1, 28, 28) * 2 - 1, torch.randn(2, 6, 8)
    bce = torch.nn.functional.binary_cross_entropy_with_logits
    lr, ones, zeros = 0.1, torch.ones(6), torch.zeros(6)

    def moved(module, gradients):  # a copy of `module` after one SGD step with these gradients
        module = copy.deepcopy(module)
        with torch.no_grad():
            for parameter, gradient in zip(module.parameters(), gradients, strict=True):
                parameter -= lr * gradient
        return module

    # The reference: each half as one loss, differentiated by autograd.
    expected_loss_d = bce(discriminator(real), ones) + bce(discriminator(generator(latent_d).detach()), zeros)
    updated_d = moved(discriminator, torch.autograd.grad(expected_loss_d, list(discriminator.parameters())))
    expected_loss_g = bce(updated_d(generator(latent_g)), ones)
    updated_g = moved(generator, torch.autograd.grad(expected_loss_g, list(generator.parameters())))
    expected_scores = torch.sigmoid(discriminator(real)).mean(), torch.sigmoid(discriminator(generator(latent_d))).mean()

    run = SimpleNamespace(accelerator=SimpleNamespace(backward=lambda loss: loss.backward()))
    sgd = lambda module: torch.optim.SGD(module.parameters(), lr=lr)  # noqa: E731
    before_g = copy.deepcopy(generator.state_dict())
    loss_d, real_score, fake_score = update_discriminator(run, discriminator, sgd(discriminator), real,
                                                          generator, latent_d)
    torch.testing.assert_close(generator.state_dict(), before_g, rtol=0, atol=0)  # (1) leaves G alone,
    assert all(parameter.grad is None for parameter in generator.parameters())  # not even a gradient computed
    torch.testing.assert_close(discriminator.state_dict(), updated_d.state_dict())
    torch.testing.assert_close((loss_d, real_score, fake_score), (expected_loss_d, *expected_scores))

    before_d = copy.deepcopy(discriminator.state_dict())
    loss_g = update_generator(run, generator, discriminator, sgd(generator), latent_g)
    torch.testing.assert_close(discriminator.state_dict(), before_d, rtol=0, atol=0)  # (2) leaves D alone
    torch.testing.assert_close(generator.state_dict(), updated_g.state_dict())
    torch.testing.assert_close(loss_g, expected_loss_g)


@pytest.mark.parametrize("lesson", GAN_LESSONS)
def test_smoke_run_writes_the_checkpoint_the_space_needs(lesson, tmp_path):
    metrics = train(lesson, tmp_path)
    folder = tmp_path / lesson
    assert metrics["complete"] and metrics["epochs"] == 2
    assert metrics["swd"] > 0 and metrics["swd_floor"] >= 0
    assert "fid" in metrics or metrics["fid_note"].startswith("FID skipped")
    history = json.loads((folder / "history.json").read_text())
    for key in ("train_loss_d", "train_loss_g", "train_real_score", "train_fake_score", "swd"):
        assert all(key in row for row in history), key
    assert 0 < history[-1]["train_real_score"] < 1 and 0 < history[-1]["train_fake_score"] < 1
    grids = sorted(p.name for p in (folder / "samples").iterdir())
    assert grids == ["epoch_000.png", "epoch_001.png", "epoch_002.png"]  # 000: before any training
    with Image.open(folder / "timelapse.gif") as gif:
        assert gif.n_frames == 3
    with Image.open(folder / "real.png") as real, Image.open(folder / "samples" / "epoch_001.png") as grid:
        assert real.size == grid.size  # 64 training images, in the grid the samples use
    assert (folder / "curves.png").is_file() and (folder / "resume" / "state.pt").is_file()

    generator = MODELS[lesson].from_pretrained(folder)  # the root is the generator, for the Space
    discriminator = MODELS[f"{lesson}-discriminator"].from_pretrained(folder / "discriminator")
    latent = torch.randn(5, generator.latent_dim)
    with torch.no_grad():
        images = generator(latent)
        assert images.shape == (5, *discriminator.input_shape)
        assert images.min() >= -1 and images.max() <= 1
        assert discriminator(images).shape == (5,)


def test_faces_recipe_a_generator_wider_than_the_discriminator(tmp_path):
    metrics = train("anime-dcgan", tmp_path, "--width=4", "--generator_width=12", "--batch_size=8", "--swd_images=32",
                    "--epochs=1")
    folder = tmp_path / "anime-dcgan"
    assert metrics["complete"] and metrics["swd"] > 0
    generator = MODELS["anime-dcgan"].from_pretrained(folder)  # what the faces Space loads
    discriminator = MODELS["anime-dcgan-discriminator"].from_pretrained(folder / "discriminator")
    assert generator.net[0].out_channels == 8 * 12 and discriminator.net[0].out_channels == 4


def test_sample_grids_reads_back_the_files_sample_grid_names(tmp_path):
    from shared.models.gan import sample_grid, sample_grids

    assert sample_grid(0) == "samples/epoch_000.png" and sample_grid(12) == "samples/epoch_012.png"
    for name in (sample_grid(12), sample_grid(0), sample_grid(1000), "samples/epoch_1.png", "samples/notes.png",
                 "samples/epoch_002.png.bak", "epoch_003.png"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_bytes(b"png")
    assert sample_grids(tmp_path) == {e: tmp_path / sample_grid(e) for e in (0, 12, 1000)}
    assert sample_grids(tmp_path / "nothing") == {}


def test_diff_augment_shifts_cuts_out_and_lets_gradients_through():
    images = torch.rand(16, 3, 64, 64) * 2 - 1 + 3  # no pixel is 0 before the augmentation
    shifted = diff_augment(images, ["translation"], torch.Generator().manual_seed(0))
    padded = torch.nn.functional.pad(images, (8, 8, 8, 8))
    for image, out in zip(padded, shifted, strict=True):  # each output is a 64x64 window of the padded image
        assert any(torch.equal(out, image[:, y:y + 64, x:x + 64]) for y in range(17) for x in range(17))
    cut = diff_augment(images, ["cutout"], torch.Generator().manual_seed(0))
    zeroed = cut == 0
    assert torch.equal(cut[~zeroed], images[~zeroed])  # everything outside the square is untouched
    for mask in zeroed[:, 0]:
        rows, cols = mask.any(1).nonzero().flatten(), mask.any(0).nonzero().flatten()
        assert len(rows) <= 32 and len(cols) <= 32 and mask.sum() == len(rows) * len(cols)  # one square
    assert zeroed.any()
    images.requires_grad_(True)
    diff_augment(images, ["color", "translation", "cutout"], torch.Generator().manual_seed(0)).sum().backward()
    assert images.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="unknown augmentation .'blur'.: choose from color, translation, cutout"):
        Augmented(None, "translation,blur", None)


@pytest.mark.parametrize("lesson", GAN_LESSONS)
def test_same_seed_gives_identical_losses_for_100_steps(lesson, tmp_path, step_log):
    args = [f"--epochs={EPOCHS_FOR_100_STEPS[lesson]}", *SMALL[lesson]]
    train(lesson, tmp_path / "a", *args)
    first, step_log[:] = list(step_log), []
    train(lesson, tmp_path / "b", *args)
    assert len(first) >= 100
    assert first[:100] == step_log[:100]
    step_log[:] = []
    train(lesson, tmp_path / "c", *args, "--seed=1")
    assert step_log[:100] != first[:100]  # and another seed does change them


@pytest.mark.parametrize("lesson", GAN_LESSONS)
def test_resume_restores_both_networks_and_both_optimizers(lesson, tmp_path):
    args = SMALL[lesson]
    train(lesson, tmp_path / "straight", "--epochs=2", *args)
    train(lesson, tmp_path / "resumed", "--epochs=1", *args)
    train(lesson, tmp_path / "resumed", "--epochs=2", "--resume")
    straight, resumed = tmp_path / "straight" / lesson, tmp_path / "resumed" / lesson
    a, b = weights(straight), weights(resumed)
    assert a.keys() == b.keys()
    assert any("running_mean" in k for k in a) == (lesson == "anime-dcgan")
    for key in a:
        assert torch.equal(a[key], b[key]), key
    states = [torch.load(f / "resume" / "state.pt", weights_only=True)["states"] for f in (straight, resumed)]
    for name in ("optimizer_g", "optimizer_d"):
        for param, state in states[0][name]["state"].items():
            for k, v in state.items():
                assert torch.equal(v, states[1][name]["state"][param][k]), (name, param, k)
    losses = [[row["train_loss_g"] for row in json.loads((f / "history.json").read_text())] for f in (straight, resumed)]
    assert losses[0] == losses[1]
    # The untrained generator's grid survives the resume (a resumed run must not redraw it trained).
    assert (straight / "samples/epoch_000.png").read_bytes() == (resumed / "samples/epoch_000.png").read_bytes()


def test_stopped_mid_epoch_the_dcgan_resumes_to_the_same_parameters(tmp_path, monkeypatch):
    """SIGINT/SIGTERM stop after a batch: the noise and the learning rates of the remaining steps must be
    what they would have been (--lr_decay: both rates fall to 0 over the second epoch)."""
    from training.run import Run

    args = ["--epochs=2", "--lr_decay=0.5", *SMALL["anime-dcgan"]]
    train("anime-dcgan", tmp_path / "straight", *args)
    stop_agreed = Run._stop_agreed
    monkeypatch.setattr(Run, "_stop_agreed", lambda self: self.epoch == 0 and self.step == 5)
    with pytest.raises(SystemExit) as stopped:  # what the command line does after a signal
        train("anime-dcgan", tmp_path / "stopped", *args)
    assert stopped.value.code == 0
    folder = tmp_path / "stopped" / "anime-dcgan"
    assert json.loads((folder / "metrics.json").read_text())["step_in_epoch"] == 5
    monkeypatch.setattr(Run, "_stop_agreed", stop_agreed)
    train("anime-dcgan", tmp_path / "stopped", "--resume")
    a, b = weights(tmp_path / "straight" / "anime-dcgan"), weights(folder)
    for key in a:
        assert torch.equal(a[key], b[key]), key
    states = torch.load(folder / "resume" / "state.pt", weights_only=True)["states"]
    assert [group["lr"] for group in states["optimizer_g"]["param_groups"]] == [0.0]
    assert [group["lr"] for group in states["optimizer_d"]["param_groups"]] == [0.0]


@pytest.mark.multiprocess
@pytest.mark.parametrize("lesson", GAN_LESSONS)
def test_two_processes_on_cpu(lesson, tmp_path):
    # `accelerate launch --multi_gpu` on a machine without CUDA starts two independent
    # one-process runs unless ACCELERATE_USE_CPU=1; torchrun with it starts one run of two.
    result = run_training(lesson, "--profile", "smoke", "--out-dir", str(tmp_path),
                          python=[sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                                  "-m", "training"],
                          env={"ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "1"})
    assert "2 process(es)" in result.stdout
    metrics = json.loads((tmp_path / lesson / "metrics.json").read_text())
    assert metrics["complete"] and metrics["num_processes"] == 2
    assert all(torch.isfinite(v).all() for v in weights(tmp_path / lesson).values())


def test_sliced_wasserstein_distance_sanity():
    faces = synthetic_faces(256, seed=0).inputs
    swd = SlicedWasserstein(faces[:128], levels=3, patches_per_image=16, directions=64)
    same = swd(faces[:128])
    assert set(same) == {"swd", "swd_64", "swd_32", "swd_16"}
    assert same["swd"] == 0
    other_real = swd(faces[128:])["swd"]
    noise = swd(torch.randint(0, 256, (128, 3, 64, 64), dtype=torch.uint8))["swd"]
    flat = swd(faces[128:].float().mean(dim=(2, 3), keepdim=True).expand(-1, -1, 64, 64).to(torch.uint8))["swd"]
    assert 0 < other_real < flat and other_real < noise


def test_sliced_wasserstein_sorts_on_the_cpu_as_torch_does():
    """The metric's rows are sorted by numpy on a CPU (7x faster): the same values as torch.sort."""
    values = torch.randn(8, 1000, generator=torch.Generator().manual_seed(0))
    values[0, :10] = 0.5  # ties
    assert torch.equal(sorted_rows(values), values.sort(dim=1).values)
    assert torch.equal(sorted_rows(values.T.contiguous().T), values.sort(dim=1).values)  # a strided view


def test_fid_is_skipped_with_a_note_without_inception_weights(tmp_path, monkeypatch):
    monkeypatch.setenv("ZTG_INCEPTION_WEIGHTS", str(tmp_path / "missing.pth"))
    images = synthetic_faces(4, seed=0).inputs
    assert fid(images, images)["fid_note"].startswith("FID skipped: the Inception weights are not in the local cache")


def test_fid_with_inception_weights_in_the_cache(tmp_path, monkeypatch):
    """The FID path end to end, with random Inception weights standing in for the real ones."""
    extractor_module = pytest.importorskip("torch_fidelity.feature_extractor_inceptionv3")
    cls = extractor_module.FeatureExtractorInceptionV3
    monkeypatch.setattr(extractor_module, "load_state_dict_from_url", lambda *a, **k: None)
    monkeypatch.setattr(cls, "load_state_dict", lambda self, state: None)
    torch.manual_seed(0)
    extractor = cls("inception-v3-compat", ["2048"])
    for module in extractor.modules():
        if isinstance(module, torch.nn.Conv2d):  # He init: features neither vanish nor explode
            torch.nn.init.kaiming_normal_(module.weight)
    torch.save(extractor.state_dict(), tmp_path / "inception.pth")
    monkeypatch.undo()
    monkeypatch.setenv("ZTG_INCEPTION_WEIGHTS", str(tmp_path / "inception.pth"))
    faces = synthetic_faces(16, seed=0).inputs
    same, different = fid(faces[:8], faces[:8]), fid(faces[:8], faces[8:])
    assert same["fid_images"] == 8
    assert abs(same["fid"]) < 1e-3 * different["fid"]


def test_anime_faces_are_decoded_once_and_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("ZTG_CACHE_DIR", str(tmp_path / "cache"))
    images = tmp_path / "data" / "animefacedataset" / "images"
    images.mkdir(parents=True)
    faces = synthetic_faces(3, seed=0).inputs
    for i, face in enumerate(faces):
        Image.fromarray(face.permute(1, 2, 0).numpy()).save(images / f"{i}_2000.jpg", quality=95)
    Image.new("RGB", (96, 80), "red").save(images / "big_2001.jpg")  # resized and centre-cropped
    (images / "broken_2002.jpg").write_bytes(b"\xff\xd8not a jpeg")  # skipped
    data = load_anime_faces(tmp_path / "data")
    assert data.inputs.shape == (4, 3, 64, 64) and data.inputs.dtype == torch.uint8 and len(data.labels) == 4
    error = (data.inputs[:3].float() - faces.float()).abs().mean(dim=(1, 2, 3))  # JPEG loses a little
    assert (error < 10).all() and (data.inputs[:3].float() - faces.roll(1, 0).float()).abs().mean() > 2 * error.max()
    assert data.inputs[3, 0].float().mean() > 240 and data.inputs[3, 1:].float().mean() < 15
    [cached] = (tmp_path / "cache").rglob("*.safetensors")
    with monkeypatch.context() as patched:
        patched.setattr("training.anime_faces_data._decode", lambda *a: pytest.fail("decoded again"))
        assert torch.equal(load_anime_faces(tmp_path / "data").inputs, data.inputs)
    # Files touched (a dataset folder synced again) are decoded again, into the same cache file.
    decoded = []
    decode = anime_faces_data._decode
    monkeypatch.setattr(anime_faces_data, "_decode", lambda *a: decoded.append(a) or decode(*a))
    os.utime(images / "0_2000.jpg", ns=(0, 0))
    assert torch.equal(load_anime_faces(tmp_path / "data").inputs, data.inputs) and len(decoded) == 5
    assert list((tmp_path / "cache").rglob("*.safetensors")) == [cached]


def test_missing_anime_faces_name_the_folder_layout_and_option(tmp_path, monkeypatch, capsys):
    import huggingface_hub.constants

    monkeypatch.setitem(sys.modules, "kagglehub", None)  # as offline without kagglehub
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # and without the Hub
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    with pytest.raises(DataNotFound) as error:
        load_anime_faces(tmp_path)
    message = str(error.value)
    assert str(tmp_path / "animefacedataset" / "images") in message
    assert "images/*.jpg" in message and "--data-dir" in message and "kagglehub" in message
    from training.cli import main

    with pytest.raises(SystemExit) as exit_:  # the command line: a clear message, no traceback
        main(["anime-dcgan", "--data-dir", str(tmp_path), "--out-dir", str(tmp_path / "out")])
    assert exit_.value.code == 2
    assert "--data-dir" in capsys.readouterr().err


@pytest.mark.realdata
def test_real_anime_faces_train(tmp_path):
    data_dir = find_datasets("animefacedataset/images")
    if data_dir is None:
        pytest.skip("anime faces not found: set ZTG_DATA_DIR or put ../shared/datasets beside the repo")
    faces = load_anime_faces(data_dir)
    assert faces.inputs.shape[1:] == (3, 64, 64) and len(faces) >= 15_000
    metrics = train("anime-dcgan", tmp_path, "--profile", "cpu", "--data-dir", str(data_dir),
                    "--epochs=1", "--width=4", "--generator_width=4", "--batch_size=256", "--swd_images=256", "--fid_images=16")
    assert metrics["complete"] and 0 < metrics["swd"] < 1000


@pytest.mark.realdata
def test_real_mnist_gan_trains(tmp_path, datasets):
    metrics = train("mnist-gan", tmp_path, "--profile", "cpu", "--data-dir", str(datasets),
                    "--epochs=1", "--swd_images=512", "--fid_images=16")
    assert metrics["complete"] and 0 < metrics["swd"] < 1000
