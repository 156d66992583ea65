"""cifar10-airbench: each method checked against what it claims, and every method switchable."""

from __future__ import annotations

import copy
import json

import pytest
import torch
import torch.nn.functional as F
from conftest import run_training, train

from shared.models import MODELS, build_model
from shared.models.airbench import whitening_weights
from training.airbench_optim import lr_factor, optimizer_for
from training.augment import EpochDraw, MultiCrop, cutout
from training.cifar10_data import conv_input, synthetic_cifar
from training.config import as_flags, make_config
from training.lessons.cifar10_airbench import PROFILES, RECIPES, Config, network
from training.muon import Muon


def epoch_images(data, epoch: int, cfg: Config) -> torch.Tensor:
    """The whole training set as one epoch's batches see it (no preprocessing)."""
    draw = EpochDraw.draw(len(data), epoch, cfg.seed, cfg.flip, cfg.translate, cfg.cutout)
    return draw.apply(data.inputs, torch.arange(len(data)), lambda images: images)


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
    first, second, third = (epoch_images(data, epoch, cfg) for epoch in (1, 2, 3))
    flipped = (first != data.inputs).flatten(1).any(1)
    assert 60 < flipped.sum() < 140  # about half, at random
    torch.testing.assert_close(first[flipped], data.inputs[flipped].flip(3))
    torch.testing.assert_close(second[~flipped], data.inputs[~flipped].flip(3))  # the other half
    torch.testing.assert_close(second[flipped], data.inputs[flipped])
    torch.testing.assert_close(third, first)
    # the same on a second call (a resumed run) and for another process
    torch.testing.assert_close(epoch_images(data, 2, cfg), second)
    # a batch of any images is augmented as they are in the whole epoch's
    index = torch.tensor([7, 3, 150, 3])
    draw = EpochDraw.draw(len(data), 2, cfg.seed, cfg.flip, cfg.translate)
    torch.testing.assert_close(draw.apply(data.inputs, index, lambda images: images), second[index])


def test_cutout_blanks_one_square_of_the_given_side_in_each_image():
    images = torch.ones(3, 2, 8, 8)
    corners = torch.tensor([[0, 0], [5, 2], [3, 5]])
    blanked = cutout(images, corners, 3)
    for image, (y, x) in zip(blanked, corners.tolist(), strict=True):
        assert (image == 0).all(0).sum() == 9 and (image[:, y:y + 3, x:x + 3] == 0).all()
    draw = EpochDraw.draw(100, 1, 0, "none", 0, cutout=12)
    assert draw.corners.min() >= 0 and draw.corners.max() <= 32 - 12


def test_translate_shifts_by_at_most_the_setting():
    data = synthetic_cifar(50, seed=4)
    shifted = epoch_images(data, 1, Config(flip="none", translate=2))
    padded = F.pad(data.inputs.float(), (2, 2, 2, 2), mode="reflect")
    for image, original in zip(shifted.float(), padded, strict=True):
        assert any(torch.equal(image, original[:, 2 + dy:34 + dy, 2 + dx:34 + dx])
                   for dy in range(-2, 3) for dx in range(-2, 3))


def test_crop_epochs_train_on_windows_cut_anywhere_within_translate_of_the_edges():
    data = synthetic_cifar(60, seed=5)
    draw = EpochDraw.draw(len(data), 1, 0, "alternating", 2, cutout=8, crop=24)
    windows = draw.apply(data.inputs, torch.arange(len(data)), lambda images: images.float())
    assert windows.shape == (60, 3, 24, 24)
    corners = draw.shifts  # the windows' top-left corners, in the image reflect-padded by 2
    assert corners.min() == -2 and corners.max() == 32 - 24 + 2
    assert draw.corners.min() >= 0 and draw.corners.max() <= 24 - 8  # the cutout squares, inside the windows
    padded = F.pad(data.inputs.float(), (2, 2, 2, 2), mode="reflect")
    for window, original, (y, x), flip, (cy, cx) in zip(windows, padded, corners.tolist(), draw.flips.tolist(),
                                                         draw.corners.tolist(), strict=True):
        expected = original[:, 2 + y:26 + y, 2 + x:26 + x]
        expected = (expected.flip(2) if flip else expected).clone()
        expected[:, cy:cy + 8, cx:cx + 8] = 0
        torch.testing.assert_close(window, expected, rtol=0, atol=0)


def test_a_run_with_crop_epochs_trains_small_windows_first_then_whole_images_and_bad_crops_are_refused(tmp_path, capsys):
    seen = []
    hook = torch.nn.modules.module.register_module_forward_pre_hook(
        lambda module, args: seen.append(args[0].shape[-1]) if type(module).__name__ == "Cifar10Airbench" else None)
    try:
        metrics = train("cifar10-airbench", tmp_path, "--epochs=3", "--crop=24", "--crop_epochs=2", "--tta=0")
    finally:
        hook.remove()
    assert metrics["complete"] and metrics["test_accuracy"] > 0
    assert seen[0] == 24 and set(seen) == {24, 32}  # windows first; whole images in epoch 3 and every evaluation
    for crop, message in (("40", "--crop must be from 0 to 32; got 40"), ("8", "--crop is 0 (whole images) or from 9")):
        with pytest.raises(SystemExit):
            train("cifar10-airbench", tmp_path / crop, f"--crop={crop}", "--crop_epochs=1")
        assert message in capsys.readouterr().err


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
        both = MultiCrop(model, 2, plain_too=True)(images)
        torch.testing.assert_close(both["multi_crop"], expected.detach())
        torch.testing.assert_close(both["plain"], model(images))


def test_the_last_epoch_reads_its_test_accuracy_off_the_multi_crop_pass(tmp_path):
    from training.cli import make_run
    from training.evaluate import evaluate_classifier

    test_set = synthetic_cifar(256, seed=2)  # the lesson's synthetic test set (cifar_splits)
    images_seen = []
    hook = torch.nn.modules.module.register_module_forward_pre_hook(
        lambda module, args: images_seen.append(len(args[0]))
        if type(module).__name__ == "Cifar10Airbench" and not module.training else None)
    try:
        metrics = train("cifar10-airbench", tmp_path, "--epochs=2", "--eval_every=0")
    finally:
        hook.remove()
    assert sum(images_seen) == 6 * len(test_set)  # mirror and two shifts, mirrored: the plain view once

    folder = tmp_path / "cifar10-airbench"
    last = json.loads((folder / "history.json").read_text())[-1]
    model = MODELS["cifar10-airbench"].from_pretrained(folder).eval()
    _, run = make_run("cifar10-airbench", [], profile="smoke", data_dir=tmp_path, out_dir=tmp_path / "again")
    plain = evaluate_classifier(run, model, test_set, conv_input)
    multi_crop = evaluate_classifier(run, MultiCrop(model, 2), test_set, conv_input)
    assert last["test_accuracy"] == pytest.approx(plain["accuracy"])
    assert last["test_loss"] == pytest.approx(plain["loss"], rel=1e-5)
    assert metrics["test_accuracy"] == round(multi_crop["accuracy"], 2)


def test_identity_init_passes_the_input_through_and_frozen_parts_get_no_gradient():
    model = network([32, 32, 32], 2, synthetic_cifar(100, seed=5), Config())
    conv = model.features[2][4]  # the second 3x3 convolution of the second block: 32 -> 32
    x = torch.randn(2, 32, 7, 7)
    torch.testing.assert_close(conv(x), x)
    assert not model.whiten.weight.requires_grad and model.whiten.bias.requires_grad
    norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert all(not m.weight.requires_grad and m.bias.requires_grad for m in norms)
    sgd, muon = optimizer_for(model, Config())
    groups = sgd.param_groups
    assert muon is None and [len(g["params"]) for g in groups] == [1, len(norms), 7]  # 6 convolutions and the linear layer
    assert groups[1]["lr"] == pytest.approx(64 * groups[2]["lr"])
    # the step's weight decay (lr * weight_decay) is the same in every group
    assert len({round(g["lr"] * g["weight_decay"], 12) for g in groups}) == 1
    # Muon takes the six 3x3 filter banks; SGD keeps the whitening bias, the norm biases and the head
    sgd, muon = optimizer_for(model, Config(optimizer="muon"))
    assert isinstance(muon, Muon) and [p.shape[2:] for p in muon.param_groups[0]["params"]] == [(3, 3)] * 6
    assert [len(g["params"]) for g in sgd.param_groups] == [1, len(norms), 1]


def test_learning_rate_schedule_shapes():
    rates = [lr_factor(step, 100, Config()) for step in range(101)]  # airbench94's triangle
    assert rates[0] == pytest.approx(0.2) and max(rates) == pytest.approx(1, abs=0.01)
    assert rates.index(max(rates)) in (23, 24) and rates[100] == pytest.approx(0.07)
    rates = [lr_factor(step, 100, Config(warmup=0, lr_end=0)) for step in range(101)]  # airbench94_muon's
    assert rates[0] == 1 and rates[50] == pytest.approx(0.5) and rates[100] == 0
    rates = [lr_factor(step, 100, Config(warmup=0.1, lr_end=0)) for step in range(101)]  # airbench96's
    assert rates.index(max(rates)) == 10 and rates[100] == 0


def test_the_recipes_read_back_from_their_flags_and_the_cpu_profile_is_muons():
    for name, settings in RECIPES.items():
        config = make_config(Config, {}, as_flags(settings))
        assert {key: getattr(config, key) for key in settings} == settings, name
    cpu = make_config(Config, PROFILES["cpu"], [])
    assert (cpu.optimizer, cpu.lookahead, cpu.widths, cpu.epochs, cpu.batch_size) == ("muon", False, [48, 192, 192], 9, 1000)
    assert (cpu.crop, cpu.crop_epochs, cpu.muon_lr, cpu.eval_every) == (28, 6, 0.17, 0)  # the README's measured flags


def test_the_residual_block_and_old_checkpoints_load_strictly(tmp_path):
    deep = build_model("cifar10-airbench", widths=[8, 16, 16], block_depth=3)
    assert deep(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    assert sum(isinstance(m, torch.nn.Conv2d) and m.kernel_size == (3, 3) for m in deep.modules()) == 9
    deep.save_pretrained(tmp_path / "deep")
    MODELS["cifar10-airbench"].from_pretrained(tmp_path / "deep")  # strict
    # A checkpoint written before block_depth existed has no such key: it loads as the 2-deep network.
    shallow = build_model("cifar10-airbench", widths=[8, 16, 16])
    shallow.save_pretrained(tmp_path / "old")
    config = json.loads((tmp_path / "old" / "config.json").read_text())
    (tmp_path / "old" / "config.json").write_text(json.dumps({k: v for k, v in config.items() if k != "block_depth"}))
    loaded = MODELS["cifar10-airbench"].from_pretrained(tmp_path / "old")
    # the keys of every checkpoint published so far: per block, conv 0, norm 2, conv 4, norm 5
    norm = ["weight", "bias", "running_mean", "running_var", "num_batches_tracked"]
    published = ["features.0.weight", "features.0.bias",
                 *(key for block in (2, 3, 4) for key in [f"features.{block}.0.weight",
                                                          *(f"features.{block}.2.{n}" for n in norm),
                                                          f"features.{block}.4.weight",
                                                          *(f"features.{block}.5.{n}" for n in norm)]),
                 "classifier.2.weight"]
    assert list(loaded.state_dict()) == list(shallow.state_dict()) == published


@pytest.mark.parametrize("options", [
    [],
    ["--whiten=false", "--identity_init=false", "--frozen_norm_scale=false", "--lookahead=false",
     "--flip=random", "--translate=0", "--tta=0", "--label_smoothing=0"],
    # airbench94_muon's recipe with airbench96's network, augmentation and proxy selection
    ["--optimizer=muon", "--lookahead=false", "--warmup=0", "--lr_end=0", "--block_depth=3", "--translate=4",
     "--cutout=12", "--proxy_keep=0.5"],
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


@pytest.mark.parametrize("every, evaluated", [(0, [3]), (2, [2, 3])])
def test_eval_every_spaces_the_test_evaluations_out_and_the_curves_keep_them(every, evaluated, tmp_path):
    from matplotlib import pyplot as plt

    from training.plots import plot_curves

    metrics = train("cifar10-airbench", tmp_path, "--epochs=3", f"--eval_every={every}")
    history = json.loads((tmp_path / "cifar10-airbench" / "history.json").read_text())
    assert [row["epoch"] for row in history if "test_accuracy" in row] == evaluated  # the last epoch always
    assert metrics["complete"] and metrics["test_accuracy"] > 0
    figure = plot_curves(history, "cifar10-airbench")  # a metric missing from the first rows still gets its line
    lines = {line.get_label(): list(line.get_xdata()) for ax in figure.axes for line in ax.get_lines()}
    plt.close(figure)
    assert lines["test_accuracy"] == evaluated and lines["train_loss"] == [1, 2, 3]


def test_the_proxy_picks_the_batch_share_it_finds_hardest_and_learns_every_fourth_batch(tmp_path):
    from training.airbench_optim import scheduled
    from training.cli import make_run
    from training.proxy import HardestShare

    _, run = make_run("cifar10-airbench", ["--proxy_keep=0.25"], profile="smoke", data_dir=tmp_path, out_dir=tmp_path)
    cfg, data = run.config, synthetic_cifar(64, seed=6)
    proxy = network(cfg.proxy_widths, 2, data, cfg)
    optimizer, _ = optimizer_for(proxy, cfg, trained=16)
    hardest = HardestShare(run, *run.prepare(proxy=proxy, proxy_optimizer=optimizer,
                                             proxy_scheduler=scheduled(optimizer, 8, 8, cfg)),
                           keep=cfg.proxy_keep, label_smoothing=cfg.label_smoothing)
    images = torch.randn(64, 3, 32, 32).contiguous(memory_format=torch.channels_last)
    for step in range(2):
        run.progress.global_step = step
        before = [p.detach().clone() for p in proxy.parameters()]
        with torch.no_grad():  # the ranking it should make, with batchnorm on this batch's statistics
            losses = F.cross_entropy(copy.deepcopy(proxy).train()(images), data.labels, reduction="none",
                                     label_smoothing=cfg.label_smoothing)
        chosen, labels = hardest(images, data.labels)
        expected = losses.topk(16).indices
        torch.testing.assert_close(chosen, images[expected])
        torch.testing.assert_close(labels, data.labels[expected])
        moved = any(not torch.equal(a, b) for a, b in zip(before, proxy.parameters(), strict=True))
        assert moved == (step == 0)  # a backward pass on batch 0 (and 4, 8, ...) only


def test_muon_and_the_proxy_resume_to_the_same_bits(tmp_path):
    from test_resume import assert_same_weights, kill_after_epochs

    args = ["--optimizer=muon", "--proxy_keep=0.5", "--block_depth=3", "--cutout=8", "--epochs=3"]
    metrics = kill_after_epochs("cifar10-airbench", tmp_path / "killed", 1, *args)
    assert metrics["complete"] is False
    history = json.loads((tmp_path / "killed" / "cifar10-airbench" / "history.json").read_text())
    run_training("cifar10-airbench", "--profile", "smoke", "--out-dir", str(tmp_path / "killed"), "--resume", *args)
    train("cifar10-airbench", tmp_path / "straight", *args)
    for sub in ("", "proxy"):
        assert_same_weights(tmp_path / "straight" / "cifar10-airbench" / sub, tmp_path / "killed" / "cifar10-airbench" / sub)
    resumed = json.loads((tmp_path / "killed" / "cifar10-airbench" / "metrics.json").read_text())
    # the first session's time is kept: the wall clock goes on from its last epoch's
    assert resumed["wall_seconds"] > history[-1]["wall_seconds"] and resumed["wall_seconds"] >= resumed["train_seconds"]


def test_micro_batches_add_up_to_the_whole_batch_gradient(tmp_path):
    from training.cli import make_run

    _, run = make_run("cifar10-airbench", [], profile="smoke", data_dir=tmp_path, out_dir=tmp_path)
    data = synthetic_cifar(64, seed=3)
    images = data.inputs.float().div(255).contiguous(memory_format=torch.channels_last)
    model = network([8, 16, 16], 2, data, run.config).eval()  # batchnorm on its running statistics: parts add up exactly
    whole = copy.deepcopy(model)
    F.cross_entropy(whole(images), data.labels, label_smoothing=0.2).backward()
    sizes, total = [], 0.0
    for part, labels, share in run.micro_batches(model, images, data.labels, 48):
        loss = F.cross_entropy(model(part), labels, label_smoothing=0.2) * share
        run.accelerator.backward(loss)
        sizes.append(len(part))
        total += loss.detach()
    assert sizes == [48, 16]
    torch.testing.assert_close(total, F.cross_entropy(whole(images), data.labels, label_smoothing=0.2))
    for a, b in zip(model.parameters(), whole.parameters(), strict=True):
        if a.requires_grad:
            torch.testing.assert_close(a.grad, b.grad, rtol=1e-4, atol=1e-6)
    assert [len(p) for p, _, _ in run.micro_batches(model, images, data.labels, 0)] == [64]
