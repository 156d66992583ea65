"""The command line: help, overrides, and the errors a user meets."""

from __future__ import annotations

import json
import platform
import re

import pytest
from conftest import run_training, train

from training.cli import lesson_module
from training.config import ConfigError, make_config
from training.lessons import LESSONS, mnist_mlp
from training.report import human


def test_help_lists_lessons_and_the_lessons_settings():
    out = run_training("mnist-cnn", "--help").stdout
    for text in ("linear-regression", "mnist-logistic", "--profile", "--data-dir", "--resume",
                 "--push-to-hub", "--mixed-precision", "--tracker", "--max_lr=", "smoke="):
        assert text in out


def test_openmp_threads_sleep_only_where_processes_share_the_cores():
    """OMP_WAIT_POLICY=PASSIVE (training.sleeping_openmp_waits) is set by `python -m training`
    before torch loads when torchrun or accelerate launch start several processes on one machine;
    a lone process and an import (a Space, a notebook, the tests) leave OpenMP's default."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "LOCAL_WORLD_SIZE")}
    imported = "import os, training, training.cli, training.run; print(os.environ.get('OMP_WAIT_POLICY'))"
    out = subprocess.run([sys.executable, "-c", imported], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "None"
    entry = ("import atexit, os, runpy, sys; sys.argv = ['training', '--help']; "
             "atexit.register(lambda: print('policy', os.environ.get('OMP_WAIT_POLICY'))); "
             "runpy.run_module('training', run_name='__main__')")
    for processes, policy in (("1", "None"), ("2", "PASSIVE")):
        out = subprocess.run([sys.executable, "-c", entry], env=env | {"LOCAL_WORLD_SIZE": processes},
                             capture_output=True, text=True)
        assert out.returncode == 0 and "usage: python -m training" in out.stdout, out.stderr
        assert out.stdout.strip().endswith(f"policy {policy}")


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's malloc only")
def test_a_training_process_keeps_the_memory_a_step_frees():
    """`python -m training` (training.keep_freed_memory) makes glibc keep large freed blocks: a
    64 MiB tensor made 20 times is faulted in about once, not 20 times. An import (a Space, a
    notebook, the tests) keeps glibc's own behaviour, and so do ZTG_KEEP_FREED_MEMORY=0 and an
    explicit MALLOC_MMAP_MAX_."""
    import os
    import subprocess
    import sys

    pages = (64 << 20) // os.sysconf("SC_PAGE_SIZE")
    churn = ("def churn():\n"
             "    import resource, torch\n"
             "    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt\n"
             "    for _ in range(20): torch.ones(16 << 20)\n"
             "    print('faults', resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)\n")
    entry = churn + ("import atexit, runpy, sys; sys.argv = ['training', '--help']; atexit.register(churn); "
                     "runpy.run_module('training', run_name='__main__')")
    imported = churn + "import training.cli; churn()"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_") and k != "ZTG_KEEP_FREED_MEMORY"}
    faults = {}
    for name, script, extra in (("command", entry, {}), ("import", imported, {}),
                                ("off", entry, {"ZTG_KEEP_FREED_MEMORY": "0"}),
                                ("explicit", entry, {"MALLOC_MMAP_MAX_": "65536"})):
        out = subprocess.run([sys.executable, "-c", script], env=env | extra, capture_output=True, text=True)
        assert out.returncode == 0, out.stderr
        faults[name] = int(out.stdout.split()[-1])
    assert faults["command"] < 3 * pages, faults
    assert all(faults[name] > 15 * pages for name in ("import", "off", "explicit")), faults


def test_profiles_are_settings_that_help_shows_and_overrides_change():
    out = run_training("mnist-mlp", "--help").stdout
    assert "--optimizer=adamw" in out and "adamw|sgd" in out and "course=sgd" in out
    assert "--synthetic_data=False" in out and "smoke=True" in out
    cfg = make_config(mnist_mlp.Config, mnist_mlp.PROFILES["smoke"], ["--synthetic_data=false", "--optimizer=sgd"])
    assert cfg.synthetic_data is False and cfg.optimizer == "sgd"
    with pytest.raises(ConfigError, match="--optimizer is one of adamw, sgd"):
        make_config(mnist_mlp.Config, {"optimizer": "adam"}, [])  # a profile's typo is caught too


def test_overrides_are_typed():
    cfg = make_config(mnist_mlp.Config, mnist_mlp.PROFILES["cpu"], ["--epochs=3", "--hidden_sizes=64,32", "--lr", "0.01"])
    assert cfg.epochs == 3 and cfg.hidden_sizes == [64, 32] and cfg.lr == 0.01
    with pytest.raises(ConfigError, match="--epochs expects int"):
        make_config(mnist_mlp.Config, {}, ["--epochs=three"])
    with pytest.raises(ConfigError, match="unknown option --epoch;.*--epochs"):
        make_config(mnist_mlp.Config, {}, ["--epoch=3"])


@pytest.mark.parametrize("args, message", [
    (["--epoch=3"], "unknown option --epoch"),
    (["--epochs=x"], "--epochs expects int"),
    (["--optimizer=rmsprop"], "--optimizer is one of adamw, sgd; got 'rmsprop'"),
    (["--mixed-precision", "fp16"], "fp16 needs a CUDA GPU"),
    (["--push-to-hub", "no-slash"], "ORG/NAME"),
])
def test_bad_command_lines_get_a_clear_error(tmp_path, args, message):
    result = run_training("mnist-mlp", "--profile", "smoke", "--out-dir", str(tmp_path), *args, check=False)
    assert result.returncode != 0
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_a_bad_augmentation_stops_before_the_data_is_read(tmp_path):
    result = run_training("anime-dcgan", "--augment=color,blur", "--data-dir", str(tmp_path / "nothing"),
                          "--out-dir", str(tmp_path), check=False, env={"HF_HUB_OFFLINE": "1"})
    assert result.returncode == 2
    assert "--augment: unknown augmentation ['blur']: choose from color, translation, cutout" in result.stderr
    assert "animefacedataset" not in result.stderr  # the setting failed first, not the missing faces
    assert "Traceback" not in result.stderr


def test_missing_data_names_the_folder_the_layout_and_the_option(tmp_path):
    result = run_training("mnist-logistic", "--data-dir", str(tmp_path / "nothing"), "--out-dir", str(tmp_path),
                          check=False, env={"HF_HUB_OFFLINE": "1"})
    assert result.returncode == 2
    for text in (str(tmp_path / "nothing" / "MNIST" / "raw"), "train-images-idx3-ubyte", "--data-dir"):
        assert text in result.stderr
    assert "Traceback" not in result.stderr


def test_tensorboard_gets_every_check_and_every_epoch_and_its_files_go_into_the_checkpoint(tmp_path):
    import socket

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from training.hub import files_to_upload

    # Batches of 4: 160 a process an epoch, so the running means are checked at batches 50, 100, 150.
    train("mnist-mlp", tmp_path, "--tracker", "tensorboard", "--epochs=3", "--batch_size=4")
    folder = tmp_path / "mnist-mlp"
    events = EventAccumulator(str(folder / "runs"))  # read from the checkpoint, as the Hub reads it
    events.Reload()
    assert [event.step for event in events.Scalars("val_accuracy")] == [160, 320, 480]  # one x-axis: batches
    assert [event.step for event in events.Scalars("step/train_loss")] == [50, 100, 150, 210, 260, 310, 370, 420, 470]
    uploaded = [name for name in files_to_upload(folder) if name.startswith("runs/")]
    assert any("tfevents" in name for name in uploaded) and not any(socket.gethostname() in n for n in uploaded)


def test_numbers_are_printed_as_people_write_them():
    from training.report import duration, human

    assert [human(v) for v in (24180.4, 2.418e4, 1234567, 0.12345, 12.3456, 0.0, 1e-5, float("nan"), "adamw")] == [
        "24,180", "24,180", "1,234,567", "0.1235", "12.35", "0", "1.00e-05", "nan", "adamw"]
    assert [duration(s) for s in (0.4, 42, 185, 4800)] == ["0s", "42s", "3m05s", "1h20m"]


def test_a_result_worse_than_its_reference_by_more_than_the_spread_is_marked():
    from training.report import Reference, compare

    accuracy = Reference("test_accuracy", 92.62, spread=0.3, seconds=10)
    assert compare(accuracy, 92.40) == ("within the spread (-0.22)", False)
    assert compare(accuracy, 93.00)[1] is False and compare(accuracy, 93.00)[0].startswith("better")
    assert compare(accuracy, 92.00) == ("**worse by more than the spread** (-0.62, spread 0.3)", True)
    swd = Reference("swd", 30.7, spread=5, seconds=180, higher_is_better=False)  # lower is better
    assert compare(swd, 20.0)[1] is False and compare(swd, 36.0)[1] is True


def test_without_a_terminal_a_run_prints_progress_lines_with_time_left(tmp_path):
    result = run_training("mnist-cnn", "--profile", "smoke", "--out-dir", str(tmp_path), "--epochs=2",
                          "--progress-every", "0.01")  # an epoch of the smoke data takes about 0.2 s
    lines = [line for line in result.stderr.splitlines() if " batch " in line]
    assert lines, result.stderr[-2000:]
    pattern = re.compile(r"^\[mnist-cnn\] epoch [12]/2  batch \d+/\d+  loss \d+\.\d+  [\d,]+ img/s  "
                         r"epoch left \d+s  run left \d+s$")
    assert all(pattern.match(line) for line in lines), lines


def parse_table(text: str) -> list[dict]:
    """The rows of the first markdown table in `text`, as dicts keyed by its header."""
    lines = [line for line in text.splitlines() if line.startswith("|")]
    header = [cell.strip() for cell in lines[0].strip("|").split("|")]
    assert set(lines[1]) <= {"|", "-"}
    return [dict(zip(header, (cell.strip() for cell in line.strip("|").split("|")), strict=True))
            for line in lines[2:]]


def test_all_runs_every_lesson_in_course_order_and_ends_with_the_results(tmp_path):
    result = run_training("all", "--profile", "smoke", "--out-dir", str(tmp_path), "--seed=3")
    starts = [result.stdout.find(f"[{lesson}] profile smoke,") for lesson in LESSONS]
    assert -1 not in starts and starts == sorted(starts), result.stdout[-2000:]
    for lesson in LESSONS:
        assert (tmp_path / lesson / "model.safetensors").is_file()
    places = re.findall(r"^\[all\] lesson (\d+) of (\d+): ([\w-]+); job left (.+)$", result.stdout, re.MULTILINE)
    assert [(int(k), int(n), name) for k, n, name, _ in places] == [
        (k, len(LESSONS), name) for k, name in enumerate(LESSONS, 1)]
    assert places[0][3] == "unknown"  # smoke has no reference times; then the finished lessons' mean
    assert all(re.fullmatch(r"about \d+s", left) for *_, left in places[1:]), places

    printed = parse_table(result.stdout.split("results (also in")[1])
    page = (tmp_path / "RESULTS.md").read_text()
    written = parse_table(page)
    assert [row["lesson"] for row in printed] == [row["lesson"] for row in written] == list(LESSONS)
    for shown, row, lesson in zip(printed, written, LESSONS, strict=True):
        metrics = json.loads((tmp_path / lesson / "metrics.json").read_text())
        module = lesson_module(lesson)
        assert row["metric"] == shown["metric"] == (module.REFERENCE.metric if module.REFERENCE
                                                      else next(iter(module.TASK["metrics"])))
        assert float(row["result"].replace(",", "")) == pytest.approx(metrics[row["metric"]], rel=1e-3)
        assert row["vs reference"] == "not compared: this run used the smoke profile"  # no reference for smoke
        assert row["training time"].startswith(f"{human(metrics['train_seconds'])} s (")
        assert shown["checkpoint"] == str(tmp_path / lesson) and row["checkpoint"] == f"[{lesson}/]({lesson}/)"
        assert {k: v for k, v in shown.items() if k != "checkpoint"} == {k: v for k, v in row.items() if k != "checkpoint"}
    for link in re.findall(r"!\[[^]]*\]\(([^)]+)\)", page):  # curves and pictures, relative to the page
        assert (tmp_path / link).is_file(), link
    assert "(mnist-gan/samples/epoch_002.png)" in page and "(cifar10-cnn/curves.png)" in page
    assert run_training("all", "--profile", "smoke", "--out-dir", str(tmp_path), "--no_such=1",
                        check=False).returncode == 2


def test_every_number_a_lesson_takes_has_its_range():
    import dataclasses
    import typing

    from training.cli import lesson_module
    from training.config import field_ranges, field_types

    for name in LESSONS:
        config = lesson_module(name).Config
        ranges = field_ranges(config)
        for field in dataclasses.fields(config):
            kind = field_types(config)[field.name]
            item = typing.get_args(kind)[0] if typing.get_origin(kind) in (list, tuple) else kind
            if item in (int, float):
                assert field.name in ranges, f"{name}: --{field.name} has no valid range"


@pytest.mark.parametrize("lesson, setting, message", [
    ("mnist-logistic", "--epochs=-3", "--epochs must be at least 1; got -3"),
    ("cifar10-resnet9", "--batch_size=0", "--batch_size must be at least 1; got 0"),
    ("mnist-mlp", "--lr=0", "--lr must be above 0; got 0"),
    ("cifar10-cnn", "--hidden_sizes=64,0", "--hidden_sizes must be at least 1 for each value; got 64,0"),
    ("image-folder", "--val_fraction=1.5", "--val_fraction must be from 0 to 1; got 1.5"),
    ("anime-dcgan", "--lr=nan", "--lr must be a finite number"),
])
def test_impossible_settings_are_refused_before_any_data_is_read(tmp_path, capsys, lesson, setting, message):
    from training.cli import main

    with pytest.raises(SystemExit) as exit_:
        main([lesson, setting, "--data-dir", str(tmp_path / "nothing"), "--out-dir", str(tmp_path)])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and message in err
    assert "not found" not in err and "Traceback" not in err
    assert not (tmp_path / lesson).exists()


def test_all_checks_each_lessons_data_in_the_torchvision_layout_before_training(tmp_path, monkeypatch):
    """A data folder with CIFAR-10 as torchvision's batches (made tiny: only the layout is checked
    up front) satisfies the CIFAR-10 lessons and image-folder, which takes its example from it."""
    from training import mnist_data
    from training.cli import check_data, parser
    from training.data import DataNotFound

    monkeypatch.setattr(mnist_data, "unreachable", lambda url: "URLError: offline")
    data = tmp_path / "data"
    (data / "cifar-10-batches-py").mkdir(parents=True)
    for name in ("data_batch_1", "test_batch", "batches.meta"):
        (data / "cifar-10-batches-py" / name).write_bytes(b"tiny")
    args = parser().parse_args(["all", "--data-dir", str(data), "--out-dir", str(tmp_path / "out")])
    cifar_and_project = ["cifar10-mlp", "cifar10-cnn", "cifar10-resnet9", "cifar10-airbench", "image-folder"]
    check_data({name: [] for name in cifar_and_project}, args)  # nothing missing
    with pytest.raises(DataNotFound) as missing:
        check_data({name: [] for name in LESSONS}, args)
    assert "MNIST not found" in str(missing.value) and "CIFAR-10" not in str(missing.value)


def test_image_folder_takes_its_course_example_from_cifar10_tensors():
    import torch

    from training.cifar10_data import CLASSES
    from training.data import TensorData
    from training.folder_data import course_example

    labels = torch.arange(200) % 10
    images = (labels * 25).to(torch.uint8).view(-1, 1, 1, 1).expand(-1, 3, 32, 32).contiguous()
    data = course_example(TensorData(images, labels), TensorData(images[:50], labels[:50]),
                          ["dog", "airplane", "cat"], 64, 0.1, seed=0)
    assert data.class_names == ["airplane", "cat", "dog"]
    assert data.train.inputs.shape[1:] == (3, 64, 64) and data.train.inputs.dtype == torch.uint8
    assert len(data.train) + len(data.val) == 60 and len(data.test) == 15 and len(data.val) == 6
    for split in (data.train, data.val, data.test):  # each image keeps its class's grey level
        shade = {0: CLASSES.index("airplane") * 25, 1: CLASSES.index("cat") * 25, 2: CLASSES.index("dog") * 25}
        assert all(int(image[0, 0, 0]) == shade[int(label)] for image, label in zip(split.inputs, split.labels, strict=True))
