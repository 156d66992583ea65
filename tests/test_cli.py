"""The command line: help, overrides, and the errors a user meets."""

from __future__ import annotations

import pytest
from conftest import run_training, train

from training import LESSONS
from training.config import ConfigError, make_config
from training.lessons import mnist_mlp


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


def test_tensorboard_tracker_logs_every_epoch(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    train("mnist-mlp", tmp_path, "--tracker", "tensorboard", "--epochs=3")
    logs = tmp_path / "logs" / "mnist-mlp"
    events = EventAccumulator(str(logs))
    events.Reload()
    steps = [event.step for event in events.Scalars("val_accuracy")]
    assert steps == [1, 2, 3]
    assert not (tmp_path / "mnist-mlp" / "logs").exists()  # outside the checkpoint that is swapped


def test_all_runs_every_lesson_in_course_order(tmp_path):
    result = run_training("all", "--profile", "smoke", "--out-dir", str(tmp_path), "--seed=3")
    starts = [result.stdout.find(f"[{lesson}] profile smoke,") for lesson in LESSONS]
    assert -1 not in starts and starts == sorted(starts), result.stdout[-2000:]
    for lesson in LESSONS:
        assert (tmp_path / lesson / "model.safetensors").is_file()
    assert run_training("all", "--profile", "smoke", "--out-dir", str(tmp_path), "--no_such=1",
                        check=False).returncode == 2
