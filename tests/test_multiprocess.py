"""Two real training processes on the CPU (gloo), as `accelerate launch` runs them on two GPUs.

`accelerate launch --cpu --num_processes 2` starts a single process on this machine, so the
processes are started with torchrun and ACCELERATE_USE_CPU=1, which Accelerate reads.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT

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


def launch_two(tmp_path: Path, *args: str) -> tuple[dict, list[str], str]:
    script = tmp_path / "record_saves.py"
    script.write_text(RECORD_SAVES)
    log = tmp_path / "saves.log"
    torchrun = Path(sys.executable).with_name("torchrun")
    result = subprocess.run(
        [str(torchrun), "--nproc_per_node", "2", "--master_addr", "127.0.0.1", "--master_port", str(free_port()),
         str(script), *args, "--out-dir", str(tmp_path / "out")],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
        env={**os.environ, "ACCELERATE_USE_CPU": "1", "SAVE_LOG": str(log), "OMP_NUM_THREADS": "1"},
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    lesson = args[0]
    metrics = json.loads((tmp_path / "out" / lesson / "metrics.json").read_text())
    return metrics, log.read_text().split("\n")[:-1], result.stdout


def check_one_writer(metrics, saves, stdout):
    assert metrics["num_processes"] == 2 and "2 process(es)" in stdout
    ranks = {line.split()[0] for line in saves}
    pids = {line.split()[1] for line in saves}
    assert ranks == {"0"} and len(pids) == 1, f"checkpoints written by {saves}"
    assert len(saves) == metrics["epochs"] + 1  # one per epoch, one final


def test_two_processes_count_each_test_sample_once(tmp_path):
    metrics, saves, stdout = launch_two(tmp_path, "mnist-cnn", "--profile", "smoke")
    assert metrics["test_samples"] == 257  # odd on purpose: the processes get 129 and 128
    check_one_writer(metrics, saves, stdout)


@pytest.mark.realdata
def test_two_processes_on_real_mnist(tmp_path, datasets):
    metrics, saves, stdout = launch_two(tmp_path, "mnist-logistic", "--data-dir", str(datasets), "--epochs=2")
    assert metrics["test_samples"] == 10_000
    assert metrics["test_accuracy"] > 90
    check_one_writer(metrics, saves, stdout)
