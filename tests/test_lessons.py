"""A smoke run of every lesson, the checkpoint folder it writes as a Hub model repo, and what adding a lesson takes."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from types import SimpleNamespace

import pytest
import torch
from conftest import ROOT, train

from training.lessons import LESSONS
from training.lessons.linear_regression import INPUTS, TARGETS, basics, mse, mse_gradients


@pytest.mark.parametrize("lesson", list(LESSONS))
def test_smoke_run_writes_a_complete_checkpoint(lesson, tmp_path):
    metrics = train(lesson, tmp_path)
    folder = tmp_path / lesson
    assert metrics["complete"] and metrics["profile"] == "smoke"
    for key in ("train_seconds", "wall_seconds", "samples_per_second", "device", "versions", "seed"):
        assert key in metrics
    # the lesson's wall clock holds its training time, and data, evaluation and checkpoints besides
    assert metrics["wall_seconds"] >= metrics["train_seconds"]
    for name in ("config.json", "model.safetensors", "README.md", "metrics.json", "history.json",
                 "training_config.json", "curves.png", "resume/state.pt"):
        assert (folder / name).is_file(), name
    history = json.loads((folder / "history.json").read_text())
    assert len(history) == metrics["epochs"] > 0
    assert all(row["train_seconds"] <= row["wall_seconds"] <= metrics["wall_seconds"] for row in history)
    assert not list(tmp_path.glob(".*")), "temporary checkpoint folders left behind"


def test_lesson1_gradients_match_autograd():
    torch.manual_seed(0)
    inputs, targets = torch.tensor(INPUTS, dtype=torch.float64), torch.tensor(TARGETS, dtype=torch.float64)
    w = torch.randn(2, 3, dtype=torch.float64, requires_grad=True)
    b = torch.randn(2, dtype=torch.float64, requires_grad=True)
    mse(inputs @ w.t() + b, targets).backward()
    by_hand_w, by_hand_b = mse_gradients(inputs, targets, w.detach(), b.detach())
    torch.testing.assert_close(by_hand_w, w.grad)
    torch.testing.assert_close(by_hand_b, b.grad)
    # and it is the same loss that torch.nn.functional computes
    torch.testing.assert_close(mse(inputs @ w.t() + b, targets),
                               torch.nn.functional.mse_loss(inputs @ w.t() + b, targets))


def test_lesson1_basics_prints_numbered_sections_and_checks_the_facts():
    printed = []
    run = SimpleNamespace(print=lambda *args: printed.append(" ".join(map(str, args))),
                          accelerator=SimpleNamespace(backward=lambda loss: loss.backward()))
    facts = basics(run)
    assert [line.split(".")[0] for line in printed if not line.startswith(" ")] == ["1", "2", "3", "4"]
    assert facts["4."] == (torch.float32, ())
    assert facts["[[5., 6], [7, 8], [9, 10]]"] == (torch.float32, (3, 2))
    assert facts["[[[11, 12, 13], [13, 14, 15]], [[15, 16, 17], [17, 18, 19.]]]"] == (torch.float32, (2, 2, 3))
    assert facts["[1, 2, 3]"] == (torch.int64, (3,))
    # The course's ragged list, and the message PyTorch gives for it.
    assert facts["ragged_error"] == "expected sequence of length 3 at dim 1 (got 2)"
    assert "ValueError: expected sequence of length 3 at dim 1 (got 2)" in "\n".join(printed)
    assert facts["from_numpy_dtype"] == torch.float64
    assert facts["from_numpy_shares_memory"] and facts["numpy_shares_memory"] and facts["tensor_copies"]
    assert (facts["y"], facts["dy_dw"], facts["dy_db"], facts["dy_dx"]) == (17.0, 3.0, 1.0, None)


def test_checkpoint_folder_is_a_hub_model_repo(tmp_path):
    from huggingface_hub import ModelCard

    from shared.models import MODELS

    metrics = train("mnist-logistic", tmp_path)
    folder = tmp_path / "mnist-logistic"
    assert (folder / "training_images.png").is_file()  # the notebook opens with the data
    card = ModelCard.load(folder / "README.md")
    assert card.data.license == "mit" and "zero-to-gans" in card.data.tags
    # Synthetic data (the smoke profile): the numbers are in the text, no result on MNIST is claimed
    # (a run on real data gets model-index results: tests/test_hub.py).
    assert card.data.eval_results is None and f"| Test accuracy | {metrics['test_accuracy']} |" in card.text

    model = MODELS["mnist-logistic"].from_pretrained(folder)
    assert not model.training

    # The same files served from a Hub cache, offline: build the cache layout huggingface_hub reads.
    cache = tmp_path / "hub-cache"
    commit = "0123456789abcdef0123456789abcdef01234567"
    snapshot = cache / "models--zero-to-gans--mnist-logistic" / "snapshots" / commit
    snapshot.mkdir(parents=True)
    for name in ("config.json", "model.safetensors", "README.md"):
        (snapshot / name).write_bytes((folder / name).read_bytes())
    (cache / "models--zero-to-gans--mnist-logistic" / "refs").mkdir()
    (cache / "models--zero-to-gans--mnist-logistic" / "refs" / "main").write_text(commit)
    probe = ("import torch; from shared.models import MODELS; "
             "m = MODELS['mnist-logistic'].from_pretrained('zero-to-gans/mnist-logistic'); "
             "print(float(m.linear.weight.sum()))")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(cache)}
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert float(out.stdout) == pytest.approx(model.linear.weight.sum().item())


def test_mnist_mlp_course_schedule_is_the_notebooks_two_fits(tmp_path):
    from training.lessons.mnist_mlp import PROFILES

    assert PROFILES["course"]["lr_schedule"] == "step" and PROFILES["course"]["lr"] == 0.5
    train("mnist-mlp", tmp_path, "--lr_schedule=step", "--optimizer=sgd", "--lr=0.5", "--epochs=4")
    history = json.loads((tmp_path / "mnist-mlp" / "history.json").read_text())
    assert [round(row["lr"], 9) for row in history] == [0.5, 0.5, 0.1, 0.1]  # fit(n, 0.5), then fit(n, 0.1)


TOY_LESSON = '''"""A toy lesson, written by tests/test_lessons.py: a lesson is this one file plus its registry line."""

from dataclasses import dataclass
from pathlib import Path

from training.config import Count, Positive
from training.playground import Number, PlaygroundSettings


@dataclass
class Config:
    epochs: Count = 2
    batch_size: Count = 8
    lr: Positive = 0.1
    toy_steps: Count = 5


PROFILES = {"smoke": dict(epochs=1), "cpu": {}, "course": dict(epochs=4)}
TASK = dict(type="tabular-regression", dataset="toy", dataset_name="Toy numbers", metrics={"final_loss": "MSE"},
            summary="A toy lesson.")


def toy_data(data_dir: Path) -> str | None:
    return None if (Path(data_dir) / "toy.csv").is_file() else f"Toy numbers not found: no toy.csv in {data_dir}."


DATA = toy_data
PLAYGROUND = PlaygroundSettings(lr=Number("lr", 0.1, 0.01, 0.5), epochs=Number("epochs", 2, 1, 4, integer=True),
                                batch_size=Number("batch_size", 8, 4, 16, integer=True))


def train(run):
    raise AssertionError("the toy lesson trained without its data")
'''


def test_a_new_lesson_is_one_file_and_one_registry_line(tmp_path):
    """A toy lesson in a package of its own, registered by one line added to a copy of the
    registry (a copy of training/: the repository is not edited), is a lesson everywhere: in
    --help, in `all` (whose data check reports its missing data before any lesson trains) and
    in the playground's lessons, with its own bounds."""
    import filecmp
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(ROOT / "training", copy / "training", ignore=shutil.ignore_patterns("__pycache__"))
    (tmp_path / "toy_lessons").mkdir()
    (tmp_path / "toy_lessons" / "__init__.py").write_text("")
    (tmp_path / "toy_lessons" / "toy_lesson.py").write_text(TOY_LESSON)
    registry = copy / "training" / "lessons" / "__init__.py"
    original = registry.read_text().splitlines(keepends=True)
    end = original.index("}\n")  # the end of LESSONS: the new lesson comes last in course order
    registry.write_text("".join(original[:end] + ['    "toy-lesson": "toy_lessons.toy_lesson",\n'] + original[end:]))

    def differing(compared: filecmp.dircmp) -> list[str]:
        files = compared.diff_files + compared.left_only + compared.right_only + compared.funny_files
        return [f"{compared.left}/{name}" for name in files] + [
            name for sub in compared.subdirs.values() for name in differing(sub)]
    assert differing(filecmp.dircmp(ROOT / "training", copy / "training", ignore=["__pycache__"])) == [
        str(ROOT / "training" / "lessons" / "__init__.py")]  # and there by one line, added above

    env = {**os.environ, "PYTHONPATH": os.pathsep.join(map(str, (tmp_path, copy, ROOT)))}

    def python(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, *args], cwd=copy, env=env, capture_output=True, text=True, timeout=300)

    shown = python("-m", "training", "toy-lesson", "--help")  # the lessons, then this one's settings
    assert shown.returncode == 0 and "image-folder, toy-lesson." in " ".join(shown.stdout.split())
    assert re.search(r"--toy_steps=5 +int >=1", shown.stdout), shown.stdout[-2000:]

    out = tmp_path / "out"
    everything = python("-m", "training", "all", "--profile", "smoke", "--data-dir", str(tmp_path / "no-data"),
                        "--out-dir", str(out), "--toy_steps=3")  # a setting only the toy lesson has
    assert everything.returncode == 2, everything.stderr[-2000:]
    assert f"Toy numbers not found: no toy.csv in {tmp_path / 'no-data'}." in everything.stderr
    assert "Nothing was trained." in everything.stderr and "Traceback" not in everything.stderr
    assert "profile smoke" not in everything.stdout and not out.exists()  # not even linear-regression, first

    probe = ("import json; from training.playground import offered; s = offered()['toy-lesson']; "
             "print(json.dumps([list(offered()), [s.lr.low, s.lr.high], [s.epochs.low, s.epochs.high]]))")
    listed = python("-c", probe)
    assert listed.returncode == 0, listed.stderr[-2000:]
    names, lr, epochs = json.loads(listed.stdout)
    assert names[-1] == "toy-lesson" and "mnist-gan" in names
    assert lr == [0.01, 0.5] and epochs == [1, 4]
