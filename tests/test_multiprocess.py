"""Two real training processes on the CPU (gloo), as `accelerate launch` runs them on two GPUs.

`accelerate launch --cpu --num_processes 2` starts a single process on this machine, so the
processes are started with torchrun and ACCELERATE_USE_CPU=1, which Accelerate reads, or
with `accelerate launch` and the repository's config files (configs/accelerate/).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import ROOT, train
from safetensors.torch import load_file

pytestmark = pytest.mark.multiprocess

# Records which process writes checkpoints, then runs the ordinary command line.
RECORD_SAVES = """
import os, sys
import training.checkpoint as checkpoint
original = checkpoint.save
def recorded_save(*args, **kwargs):
    with open(os.environ["SAVE_LOG"], "a") as log:
        log.write(f"{os.environ['RANK']} {os.getpid()}\\n")
    return original(*args, **kwargs)
checkpoint.save = recorded_save
from training.cli import main
main(sys.argv[1:])
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun_two(tmp_path: Path, *args: str, out: str = "out") -> list[str]:
    """The command that runs `python -m training ARGS` as two processes, recording checkpoint writers."""
    script = tmp_path / "record_saves.py"
    script.write_text(RECORD_SAVES)
    return torchrun_script(script, *args, "--out-dir", str(tmp_path / out))


def torchrun_script(script: Path, *args: str) -> list[str]:
    """The command that runs `python SCRIPT ARGS` as two processes on this machine."""
    torchrun = Path(sys.executable).with_name("torchrun")
    return [str(torchrun), "--nproc_per_node", "2", "--master_addr", "127.0.0.1", "--master_port", str(free_port()),
            str(script), *args]


def environment(tmp_path: Path, **extra: str) -> dict:
    return {**os.environ, "ACCELERATE_USE_CPU": "1", "SAVE_LOG": str(tmp_path / "saves.log"), "OMP_NUM_THREADS": "1",
            **extra}


def launch_two(tmp_path: Path, *args: str, out: str = "out", **env: str) -> tuple[dict, list[str], str]:
    result = subprocess.run(torchrun_two(tmp_path, *args, out=out), cwd=ROOT, capture_output=True, text=True,
                            timeout=600, env=environment(tmp_path, **env))
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    lesson = args[0]
    metrics = json.loads((tmp_path / out / lesson / "metrics.json").read_text())
    log = tmp_path / "saves.log"
    saves = log.read_text().split("\n")[:-1]
    log.unlink()
    return metrics, saves, result.stdout


def check_one_writer(metrics, saves, stdout):
    assert metrics["num_processes"] == 2 and "2 process(es)" in stdout
    ranks = {line.split()[0] for line in saves}
    pids = {line.split()[1] for line in saves}
    assert ranks == {"0"} and len(pids) == 1, f"checkpoints written by {saves}"
    assert len(saves) == metrics["epochs"] + 1  # one per epoch, one final


@pytest.mark.parametrize("args, samples, watched", [
    (["mnist-cnn"], 257, "val_accuracy"),  # odd on purpose: the processes get 129 and 128
    (["cifar10-airbench", "--eval_every=0"], 256, "test_accuracy"),  # from the multi-crop pass, its plain view
])
def test_two_processes_count_each_test_sample_once(args, samples, watched, tmp_path):
    metrics, saves, stdout = launch_two(tmp_path, *args, "--profile", "smoke")
    assert metrics["test_samples"] == samples
    history = json.loads((tmp_path / "out" / args[0] / "history.json").read_text())
    assert watched in history[-1]
    check_one_writer(metrics, saves, stdout)


@pytest.mark.realdata
def test_two_processes_on_real_mnist(tmp_path, datasets):
    metrics, saves, stdout = launch_two(tmp_path, "mnist-logistic", "--data-dir", str(datasets), "--epochs=2")
    assert metrics["test_samples"] == 10_000
    assert metrics["test_accuracy"] > 90
    check_one_writer(metrics, saves, stdout)


def same_weights(a: Path, b: Path) -> bool:
    wa, wb = load_file(a / "model.safetensors"), load_file(b / "model.safetensors")
    return wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


def test_one_and_two_processes_train_the_same_recipe(tmp_path):
    # No dropout, no batchnorm: DDP's mean of two half-batch gradients is the full-batch gradient.
    args = ["--epochs=3", "--batch_size=64"]
    one = train("mnist-logistic", tmp_path / "one", *args)
    two, _, stdout = launch_two(tmp_path, "mnist-logistic", "--profile", "smoke", *args, out="two")
    assert "global batch 64 (32 per process)" in stdout
    assert (one["batch_size"], one["batch_size_per_process"]) == (64, 64)
    assert (two["batch_size"], two["batch_size_per_process"], two["num_processes"]) == (64, 32, 2)
    steps = [torch.load(tmp_path / run / "mnist-logistic" / "resume" / "state.pt", weights_only=True)
             ["progress"]["global_step"] for run in ("one", "two")]
    assert steps[0] == steps[1] == 3 * (640 // 64)
    a = load_file(tmp_path / "one" / "mnist-logistic" / "model.safetensors")
    b = load_file(tmp_path / "two" / "mnist-logistic" / "model.safetensors")
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-4, atol=1e-5)


def test_a_global_batch_that_does_not_divide_is_refused(tmp_path):
    result = subprocess.run(torchrun_two(tmp_path, "mnist-logistic", "--profile", "smoke", "--batch_size=63"),
                            cwd=ROOT, capture_output=True, text=True, timeout=300, env=environment(tmp_path))
    assert result.returncode != 0
    assert "--batch_size=63 is the global batch and must divide evenly over 2 processes" in result.stderr


def fake_cifar10(root: Path, per_class: int) -> Path:
    """The fast.ai layout with a few generated 32x32 pictures per class and split."""
    from PIL import Image

    from shared.models.cifar10 import CLASSES

    for split, count in (("train", per_class), ("test", 2)):
        for label, name in enumerate(CLASSES):
            (root / "cifar10" / split / name).mkdir(parents=True)
            for i in range(count):
                colour = (25 * label, 255 - 20 * label, (40 * i) % 256)
                Image.new("RGB", (32, 32), colour).save(root / "cifar10" / split / name / f"{i}.png")
    return root


def test_two_processes_on_an_empty_cache_decode_the_dataset_once(tmp_path):
    data, cache = fake_cifar10(tmp_path / "data", per_class=4), tmp_path / "cache"
    metrics, _, stdout = launch_two(tmp_path, "cifar10-mlp", "--profile", "smoke", "--synthetic_data=false",
                                    "--data-dir", str(data), "--val_size=8", "--batch_size=8", "--epochs=1",
                                    ZTG_CACHE_DIR=str(cache))
    assert stdout.count("decoding the 40 images of train/") == 1, stdout
    assert stdout.count("decoding the 20 images of test/") == 1, stdout
    assert sorted(p.name.split("-")[0] for p in (cache / "cifar10").iterdir()) == ["test", "train"]  # no temporary left
    assert metrics["test_samples"] == 20


def test_two_process_sigterm_mid_epoch_then_resume_equals_an_uninterrupted_run(tmp_path):
    # Batches of 4 (2 per process): 188 steps per epoch, so the stop checks at 50, 100, 150 fall inside it.
    # The main process prints a progress line after every batch (--progress-every 0): the SIGTERM
    # goes out when the first epoch has begun, and reaches the processes before its end.
    args = ["mnist-cnn", "--profile", "smoke", "--epochs=3", "--batch_size=4", "--val_size=16"]
    process = subprocess.Popen(torchrun_two(tmp_path, *args, "--progress-every", "0", out="stopped"), cwd=ROOT,
                               env=environment(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    for line in process.stdout:  # the scheduler's SIGTERM goes to the launcher, which forwards it
        if line.startswith("[mnist-cnn] epoch 1/3  batch "):
            process.send_signal(signal.SIGTERM)
            break
    output = process.communicate(timeout=120)[0]
    folder = tmp_path / "stopped" / "mnist-cnn"
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["complete"] is False, output
    assert metrics["epochs_completed"] == 0 and metrics["step_in_epoch"] in (50, 100, 150), metrics  # inside the epoch
    state = torch.load(folder / "resume" / "state.pt", weights_only=True)
    assert len(state["rng"]) == 2 and not torch.equal(state["rng"][0]["cpu"], state["rng"][1]["cpu"])

    launch_two(tmp_path, *args, "--resume", out="stopped")
    launch_two(tmp_path, *args, out="straight")
    assert same_weights(tmp_path / "straight" / "mnist-cnn", folder)


# Records what each model of the run is when it finishes (a DDP wrapper or the module itself).
RECORD_MODELS = """
import json, os, sys
from training.run import Run
finish = Run.finish
def recorded_finish(self, **metrics):
    with open(os.environ["MODELS_LOG"], "a") as log:
        log.write(json.dumps({name: type(m).__name__ for name, m in self.models.items()}) + "\\n")
    return finish(self, **metrics)
Run.finish = recorded_finish
""" + RECORD_SAVES


def test_two_processes_keep_the_averaged_generator_out_of_ddp_and_resume_it_exactly(tmp_path):
    """The moving average of the GAN's generator is never trained: no DDP wrapper, yet saved,
    published (the checkpoint's root) and restored like the trained modules."""
    script = tmp_path / "record_models.py"
    script.write_text(RECORD_MODELS)
    args = ["mnist-gan", "--profile", "smoke", "--batch_size=32", "--swd_images=32", "--fid_images=32"]
    env = environment(tmp_path, MODELS_LOG=str(tmp_path / "models.log"))

    def launch(out: str, *extra: str) -> None:
        command = torchrun_two(tmp_path, *args, *extra, out=out)
        command[command.index(str(tmp_path / "record_saves.py"))] = str(script)
        result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600, env=env)
        assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]

    launch("straight", "--epochs=2")
    models = [json.loads(line) for line in (tmp_path / "models.log").read_text().splitlines()]
    assert len(models) == 2  # one line per process
    for seen in models:
        assert seen["generator"] == seen["discriminator"] == "DistributedDataParallel", seen
        assert seen["generator_average"] != "DistributedDataParallel", seen
    launch("resumed", "--epochs=1")
    launch("resumed", "--epochs=2", "--resume")
    for sub in ("", "generator", "discriminator"):  # the root is the published average
        assert same_weights(tmp_path / "straight" / "mnist-gan" / sub, tmp_path / "resumed" / "mnist-gan" / sub), sub
    folder = tmp_path / "resumed" / "mnist-gan"
    assert not same_weights(folder, folder / "generator")  # the root holds the average, not the raw generator


def accelerate_launch(config: str, *args: str, env: dict) -> subprocess.Popen:
    launcher = Path(sys.executable).with_name("accelerate")
    return subprocess.Popen([str(launcher), "launch", "--config_file", str(ROOT / "configs" / "accelerate" / config),
                             *args], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_two_machines_on_one_host(tmp_path):
    """Two launcher invocations, machine ranks 0 and 1 on 127.0.0.1, one process each (gloo)."""
    script = tmp_path / "record_saves.py"
    script.write_text(RECORD_SAVES)
    port, env = str(free_port()), environment(tmp_path)
    machines = [accelerate_launch("multi_node.yaml", "--num_machines", "2", "--num_processes", "2",
                                  "--machine_rank", str(rank), "--main_process_ip", "127.0.0.1",
                                  "--main_process_port", port, "--mixed_precision", "no", str(script),
                                  "mnist-cnn", "--profile", "smoke", "--out-dir", str(tmp_path / "out"), env=env)
                for rank in (0, 1)]
    outputs = [machine.communicate(timeout=600)[0] for machine in machines]
    assert [m.returncode for m in machines] == [0, 0], outputs[0][-3000:] + outputs[1][-3000:]
    metrics = json.loads((tmp_path / "out" / "mnist-cnn" / "metrics.json").read_text())
    assert metrics["test_samples"] == 257
    check_one_writer(metrics, (tmp_path / "saves.log").read_text().split("\n")[:-1], outputs[0])


def test_the_one_gpu_config_asks_for_bf16_and_an_explicit_flag_wins(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    runs = {"config": [], "launcher flag": ["--mixed_precision", "no"]}
    for name, flags in runs.items():
        launched = accelerate_launch("one_gpu.yaml", *flags, "-m", "training", "mnist-logistic", "--profile", "smoke",
                                     "--out-dir", str(tmp_path / name), env=env)
        output = launched.communicate(timeout=300)[0]
        assert launched.returncode == 0, output[-3000:]
    precision = {name: json.loads((tmp_path / name / "mnist-logistic" / "metrics.json").read_text())["mixed_precision"]
                 for name in runs}
    assert precision == {"config": "bf16", "launcher flag": "no"}


MICRO_BATCHES = """
import sys, torch, torch.nn.functional as F
from training.cli import make_run

_, run = make_run("cifar10-mlp", [], profile="smoke", data_dir=sys.argv[1], out_dir=sys.argv[1])
torch.manual_seed(0)  # the same weights on both processes; each process its own images
model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 5))
whole = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 5))
whole.load_state_dict(model.state_dict())
model, whole = run.accelerator.prepare(model), run.accelerator.prepare(whole)
g = torch.Generator().manual_seed(run.accelerator.process_index)
images, labels = torch.randn(10, 3, 2, 2, generator=g), torch.randint(0, 5, (10,), generator=g)
run.accelerator.backward(F.cross_entropy(whole(images), labels))
for part, part_labels, share in run.micro_batches(model, images, labels, 4):
    run.accelerator.backward(F.cross_entropy(model(part), part_labels) * share)
for a, b in zip(model.parameters(), whole.parameters(), strict=True):
    torch.testing.assert_close(a.grad, b.grad)  # both all-reduced: the mean over the two processes
open(f"{sys.argv[1]}/rank{run.accelerator.process_index}.ok", "w").close()
run.accelerator.wait_for_everyone()  # neither closes its connections while the other still reads
torch.distributed.destroy_process_group()
"""


def test_micro_batches_all_reduce_once_to_the_whole_batch_gradient(tmp_path):
    script = tmp_path / "micro.py"
    script.write_text(MICRO_BATCHES)
    result = subprocess.run(torchrun_script(script, str(tmp_path)), cwd=ROOT, capture_output=True, text=True,
                            timeout=300, env=environment(tmp_path))
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    assert (tmp_path / "rank0.ok").exists() and (tmp_path / "rank1.ok").exists()
