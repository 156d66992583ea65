"""The command line: help, overrides, and the errors a user meets."""

from __future__ import annotations

import json
import re

import pytest
from conftest import run_training, train

from training import LESSONS
from training.cli import lesson_module
from training.config import ConfigError, make_config
from training.lessons import mnist_mlp
from training.report import human


def test_help_lists_lessons_and_the_lessons_settings():
    out = run_training("mnist-cnn", "--help").stdout
    for text in ("linear-regression", "mnist-logistic", "--profile", "--data-dir", "--resume",
                 "--push-to-hub", "--mixed-precision", "--tracker", "--max_lr=", "smoke="):
        assert text in out


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
                          "--progress-every", "0.2")
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
