"""Stopping and resuming: same parameters as an uninterrupted run, and no half-written checkpoint."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest
import torch
from conftest import ROOT, run_training, train
from safetensors.torch import load_file


def weights(folder):
    return load_file(folder / "model.safetensors")


def assert_same_weights(a, b):
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys()
    for key in wa:
        assert torch.equal(wa[key], wb[key]), key


def test_one_more_epoch_after_resume_gives_identical_parameters(tmp_path):
    # Constant learning rate: --epochs=2 describes the same run whether or not it was split.
    train("mnist-logistic", tmp_path / "straight", "--epochs=2", "--lr_schedule=constant")
    train("mnist-logistic", tmp_path / "resumed", "--epochs=1", "--lr_schedule=constant")
    metrics = train("mnist-logistic", tmp_path / "resumed", "--resume", "--epochs=2")
    assert metrics["epochs"] == 2
    history = json.loads((tmp_path / "resumed" / "mnist-logistic" / "history.json").read_text())
    assert [row["epoch"] for row in history] == [1, 2]
    assert_same_weights(tmp_path / "straight" / "mnist-logistic", tmp_path / "resumed" / "mnist-logistic")


def start(out_dir, *args):
    return subprocess.Popen([sys.executable, "-m", "training", "mnist-cnn", "--profile", "smoke",
                             "--out-dir", str(out_dir), *args],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


PROGRESS_LINE = re.compile(r"^\[mnist-cnn\] epoch (\d+)/6  batch (\d+)/(\d+)  loss [\d.]+  [\d,]+ img/s  "
                           r"epoch left \d+s  run left \d+s$")


def test_sigterm_mid_epoch_saves_and_resume_matches_an_uninterrupted_run(tmp_path):
    # Augmentation, dropout, batchnorm and a one-cycle schedule: everything a resume must restore.
    # --progress-every 0: a progress line after every batch (stderr is a pipe here, not a terminal),
    # so the SIGTERM is sent while the second epoch is under way, 11 batches of ~0.1 s long.
    args = ["--epochs=6", "--val_size=16"]
    process = start(tmp_path / "stopped", *args, "--progress-every", "0")
    lines = []
    for line in process.stdout:  # wait until the second epoch is under way, then stop it
        lines.append(line)
        progress = PROGRESS_LINE.match(line.rstrip("\n"))
        if progress and progress[1] == "2":
            process.send_signal(signal.SIGTERM)
            break
    output = "".join(lines) + process.communicate(timeout=120)[0]
    assert process.returncode == 0, output
    assert "--resume" in output
    assert progress and progress[3] == "11", output  # the lines are where the stop is timed from
    folder = tmp_path / "stopped" / "mnist-cnn"
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["complete"] is False and metrics["epochs_completed"] == 1, output
    assert 0 < metrics["step_in_epoch"] < 11, "the stop must fall inside an epoch, not at its end"
    assert (folder / "model.safetensors").is_file() and (folder / "resume" / "state.pt").is_file()

    run_training("mnist-cnn", "--profile", "smoke", "--out-dir", str(tmp_path / "stopped"), "--resume", *args)
    train("mnist-cnn", tmp_path / "straight", *args)
    assert_same_weights(tmp_path / "straight" / "mnist-cnn", folder)


def kill_after_epochs(lesson: str, out_dir, epochs: int, *args: str) -> dict:
    """Start a run and SIGKILL it once its checkpoint holds `epochs` epochs; return that checkpoint's metrics."""
    process = subprocess.Popen([sys.executable, "-m", "training", lesson, "--profile", "smoke",
                                "--out-dir", str(out_dir), *args], cwd=ROOT,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    history, deadline = out_dir / lesson / "history.json", time.monotonic() + 300
    while process.poll() is None and time.monotonic() < deadline:
        with contextlib.suppress(OSError, ValueError):  # absent, or renamed away for a moment by a swap
            if len(json.loads(history.read_text())) >= epochs:
                process.kill()
                break
        time.sleep(0.005)
    process.wait(timeout=60)
    assert process.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    return json.loads((out_dir / lesson / "metrics.json").read_text())


@pytest.mark.parametrize("lesson, args", [
    # A cosine schedule and augmentation: the step count and the RNG must both be where they were.
    ("mnist-mlp", ["--epochs=12", "--val_size=16"]),
    ("mnist-gan", ["--epochs=8", "--batch_size=16", "--hidden_size=32", "--swd_images=32", "--fid_images=32"]),
    # A DataLoader, shuffled every epoch: its order must be the one the uninterrupted run draws.
    ("linear-regression", ["--epochs=40"]),
])
def test_sigkill_after_an_epoch_end_checkpoint_resumes_to_the_same_bits(lesson, args, tmp_path):
    metrics = kill_after_epochs(lesson, tmp_path / "killed", 2, *args)
    assert metrics["complete"] is False and metrics["epochs_completed"] >= 2 and metrics["step_in_epoch"] == 0
    run_training(lesson, "--profile", "smoke", "--out-dir", str(tmp_path / "killed"), "--resume", *args)
    train(lesson, tmp_path / "straight", *args)
    for sub in ["", *(["generator", "discriminator"] if lesson == "mnist-gan" else [])]:
        assert_same_weights(tmp_path / "straight" / lesson / sub, tmp_path / "killed" / lesson / sub)


# A real SIGTERM, sent by the process to itself while it trains a chosen batch (STOP_AT: the
# 0-based batch of the run), for a lesson whose batches are too short to aim at from outside.
SIGTERM_AT_BATCH = """
import os, signal, sys
from training.run import Run
log_step = Run.log_step
def log_step_then_signal(self, **scalars):
    log_step(self, **scalars)
    if self.global_step == int(os.environ["STOP_AT"]):
        os.kill(os.getpid(), signal.SIGTERM)
Run.log_step = log_step_then_signal
from training.cli import main
main(sys.argv[1:])
"""


def test_sigterm_mid_epoch_of_a_dataloader_resumes_at_the_batch_it_stopped(tmp_path):
    # linear-regression iterates a shuffled DataLoader: 3 batches of 5 rows an epoch. Batch 7 of
    # the run is the second of epoch 3, so the checkpoint holds 2 epochs and 2 batches.
    args = ["linear-regression", "--profile", "smoke", "--epochs=5"]
    stopped = subprocess.run([sys.executable, "-c", SIGTERM_AT_BATCH, *args, "--out-dir", str(tmp_path / "stopped")],
                             cwd=ROOT, capture_output=True, text=True, timeout=300, env={**os.environ, "STOP_AT": "7"})
    assert stopped.returncode == 0 and "stopped in epoch 3 after 2 batches" in stopped.stderr, stopped.stderr
    folder = tmp_path / "stopped" / "linear-regression"
    metrics = json.loads((folder / "metrics.json").read_text())
    assert (metrics["complete"], metrics["epochs_completed"], metrics["step_in_epoch"]) == (False, 2, 2)

    resumed = run_training(*args, "--out-dir", str(tmp_path / "stopped"), "--resume")
    assert "stopped" not in resumed.stderr
    train("linear-regression", tmp_path / "straight", "--epochs=5")
    assert_same_weights(tmp_path / "straight" / "linear-regression", folder)
    history = json.loads((folder / "history.json").read_text())
    assert [row["epoch"] for row in history] == [1, 2, 3, 4, 5]


def test_the_loss_scaler_state_is_saved_and_restored(tmp_path):
    """fp16 on a GPU gives the Accelerator a GradScaler (`accelerator.scaler`); torch's GradScaler
    also runs on a CPU, so here one is set where Accelerate sets it, before anything is prepared,
    and the run really scales its losses through it (the GPU's fp16 is all that is missing)."""
    from training import checkpoint
    from training.cli import lesson_config
    from training.run import Run, make_accelerator

    def scaled_run(out_dir, epochs: int, resume: bool = False):
        module, profile, config = lesson_config("mnist-logistic", [f"--epochs={epochs}", "--lr_schedule=constant"], profile="smoke",
                                                resume=resume, out_dir=out_dir)
        accelerator = make_accelerator(None, None, out_dir, seed=config.seed)
        accelerator.scaler = torch.amp.GradScaler("cpu", init_scale=2.0**10, growth_interval=4)
        saved = checkpoint.load(out_dir / "mnist-logistic") if resume else None
        run = Run("mnist-logistic", module.TASK, config, profile, out_dir, out_dir, accelerator, saved=saved)
        if saved is not None:  # restored before the first batch
            assert accelerator.scaler.state_dict() == saved.scaler
        module.train(run)
        return accelerator.scaler.state_dict()

    scaled_run(tmp_path / "resumed", epochs=1)
    saved = checkpoint.load(tmp_path / "resumed" / "mnist-logistic").scaler
    assert saved is not None and saved["scale"] > 2.0**10 and saved["_growth_tracker"] > 0, saved  # grown, mid-interval
    resumed = scaled_run(tmp_path / "resumed", epochs=2, resume=True)
    straight = scaled_run(tmp_path / "straight", epochs=2)
    assert resumed == straight
    assert_same_weights(tmp_path / "straight" / "mnist-logistic", tmp_path / "resumed" / "mnist-logistic")


def test_a_prepared_optimizer_steps_as_accelerates_own_wrapper(tmp_path):
    """`run.prepare` gives back Accelerate's optimizer wrapper without its per-step Python
    (PlainStepOptimizer): the same weights and cleared gradients as Accelerate's own wrapper,
    and like it no step and no clearing while gradients accumulate (`sync_gradients` false)."""
    import copy

    from accelerate.optimizer import AcceleratedOptimizer

    from training.cli import make_run
    from training.run import PlainStepOptimizer

    _, run = make_run("mnist-mlp", [], profile="smoke", data_dir=tmp_path, out_dir=tmp_path)
    torch.manual_seed(0)
    model = torch.nn.Linear(6, 3)
    twin, initial = copy.deepcopy(model), model.weight.detach().clone()
    model, optimizer = run.prepare(model=model, optimizer=torch.optim.AdamW(model.parameters(), lr=0.1, fused=True))
    accelerates = AcceleratedOptimizer(torch.optim.AdamW(twin.parameters(), lr=0.1, fused=True), device_placement=False)
    assert type(optimizer) is PlainStepOptimizer and optimizer in run.accelerator._optimizers
    inputs = torch.randn(8, 6)
    run.accelerator.gradient_accumulation_steps = 2  # accumulate: gradients sync every second micro step
    for micro_step in range(4):
        with run.accelerator.accumulate(model):
            for net, opt in ((model, optimizer), (twin, accelerates)):
                run.accelerator.backward(net(inputs).square().mean())
                opt.step()
                opt.zero_grad()
        sync = micro_step % 2 == 1
        assert run.accelerator.sync_gradients == sync
        for a, b in zip(model.parameters(), twin.parameters(), strict=True):
            assert torch.equal(a, b) and (a.grad is None) == (b.grad is None) == sync
    assert not torch.equal(model.weight, initial)  # they did train


CRASH_DURING_SECOND_WRITE = """
import os, signal, sys
import training.checkpoint as checkpoint
original, calls = checkpoint.write_contents, []
def write_then_die(tmp, *args, **kwargs):
    calls.append(1)
    if len(calls) == 2:  # half of the epoch-2 checkpoint is on disk when the process dies
        (tmp / "model.safetensors").write_bytes(b"partial")
        os.kill(os.getpid(), signal.SIGKILL)
    return original(tmp, *args, **kwargs)
checkpoint.write_contents = write_then_die
from training.cli import main
main(sys.argv[1:])
"""


def test_a_crash_while_writing_keeps_the_previous_checkpoint(tmp_path):
    args = ["mnist-mlp", "--profile", "smoke", "--out-dir", str(tmp_path), "--epochs=3"]
    crashed = subprocess.run([sys.executable, "-c", CRASH_DURING_SECOND_WRITE, *args], cwd=ROOT,
                             capture_output=True, text=True, timeout=300)
    assert crashed.returncode == -signal.SIGKILL
    folder = tmp_path / "mnist-mlp"
    assert json.loads((folder / "metrics.json").read_text())["epochs_completed"] == 1
    assert list(tmp_path.glob(".mnist-mlp.tmp-*")), "the interrupted write should be in a temporary folder"

    metrics = train("mnist-mlp", tmp_path, "--resume")
    assert metrics["epochs"] == 3
    history = json.loads((folder / "history.json").read_text())
    assert [row["epoch"] for row in history] == [1, 2, 3]
    assert not list(tmp_path.glob(".mnist-mlp.*"))


def test_a_crash_between_the_renames_resumes_from_the_previous_checkpoint(tmp_path):
    train("mnist-mlp", tmp_path, "--epochs=1")
    folder = tmp_path / "mnist-mlp"
    folder.rename(tmp_path / ".mnist-mlp.old")  # the state right after the first of the two renames
    metrics = train("mnist-mlp", tmp_path, "--resume", "--epochs=2")
    assert metrics["epochs"] == 2 and folder.is_dir()


def test_resume_without_a_checkpoint_says_so(tmp_path):
    result = run_training("mnist-mlp", "--profile", "smoke", "--out-dir", str(tmp_path), "--resume", check=False)
    assert result.returncode == 2
    assert "no checkpoint" in result.stderr and "without --resume" in result.stderr


def test_nan_loss_stops_the_run_and_publishes_nothing(tmp_path):
    # A learning rate of 1e38 is a valid setting (--lr=inf is refused before training) whose first
    # step sends the weights to infinity, so the loss becomes NaN.
    # --push-to-hub would try the network (absent here) if the run got as far as publishing;
    # a (fake) token lets it past the check that stops a run without one before training.
    result = run_training("mnist-logistic", "--profile", "smoke", "--out-dir", str(tmp_path),
                          "--lr=1e38", "--optimizer=sgd", "--push-to-hub", "someone/model", check=False,
                          env={"HF_TOKEN": "hf_FAKEtoken1234567890abcdefghij", "HF_HUB_OFFLINE": "1"})
    assert result.returncode == 1, result.stderr
    assert "non-finite" in result.stderr and "nothing was saved or published" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "mnist-logistic" / "model.safetensors").exists()


@pytest.mark.parametrize("lesson", ["mnist-logistic", "mnist-cnn"])
def test_same_seed_same_result(lesson, tmp_path):
    a = train(lesson, tmp_path / "a")
    b = train(lesson, tmp_path / "b")
    assert a["test_accuracy"] == b["test_accuracy"]
    assert_same_weights(tmp_path / "a" / lesson, tmp_path / "b" / lesson)


def test_a_run_in_a_thread_reports_progress_and_stops_on_request(tmp_path):
    """Rows streamed to another thread, and a stop asked from it (the playground's worker process
    asks from its listener thread when the server sends Stop)."""
    import queue
    import threading

    from training.cli import make_run
    from training.run import TrainingStopped

    rows, outcome = queue.Queue(), {}

    def train_in_thread():
        module, run = make_run("mnist-logistic", ["--epochs=40", "--batch_size=8"], profile="smoke",
                               data_dir=tmp_path, out_dir=tmp_path, on_progress=rows.put)
        outcome["run"] = run
        try:
            module.train(run)
        except TrainingStopped as stop:
            outcome["stopped"] = str(stop)

    thread = threading.Thread(target=train_in_thread)
    thread.start()
    seen = [rows.get(timeout=120) for _ in range(4)]
    outcome["run"].request_stop()
    thread.join(timeout=60)
    assert not thread.is_alive() and "stopped" in outcome
    assert {row["kind"] for row in seen} == {"step", "epoch"}
    steps = [row for row in seen if row["kind"] == "step"]
    assert all("train_loss" in row and row["samples_per_second"] > 0 for row in steps)
    metrics = json.loads((tmp_path / "mnist-logistic" / "metrics.json").read_text())
    assert metrics["complete"] is False and metrics["epochs_completed"] < 40


def test_a_checkpoint_is_written_where_the_lesson_calls_save_checkpoint(tmp_path):
    """end_epoch writes nothing; save_checkpoint writes what --resume reads; an epoch that ends
    without it stops the loop with a message; prepare refuses what is no model, optimizer or LR
    scheduler instead of keeping it as a scheduler."""
    from shared.models import build_model
    from training import checkpoint
    from training.cli import make_run
    from training.data import TensorData

    _, run = make_run("mnist-logistic", ["--epochs=2"], profile="smoke", data_dir=tmp_path, out_dir=tmp_path)
    model = build_model("mnist-logistic")
    with pytest.raises(TypeError, match=r"run.prepare\(schedule=...\) got a function"):
        run.prepare(model=model, schedule=lambda step: 1.0)
    model = run.prepare(model=model)
    data = TensorData(torch.zeros(8, 28, 28), torch.zeros(8, dtype=torch.long))
    with pytest.raises(RuntimeError, match=r"epoch 2 did not end with run.end_epoch\(...\) and run.save_checkpoint"):
        for epoch in run.epochs():
            for inputs, _ in run.batches(data, 4):
                run.log_step(loss=model(inputs.flatten(1)).sum())
            run.end_epoch()
            assert not (tmp_path / "mnist-logistic").exists() or epoch == 2
            if epoch == 1:
                run.save_checkpoint()
                assert checkpoint.load(tmp_path / "mnist-logistic").progress.epoch == 1
    assert checkpoint.load(tmp_path / "mnist-logistic").progress.epoch == 1  # epoch 2 was never written
