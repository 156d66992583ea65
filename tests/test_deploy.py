"""spaces/deploy.py: a staged Space folder runs on its own, and an upload is one commit."""

from __future__ import annotations

import subprocess
import sys

import gradio
import pytest
from huggingface_hub import metadata_load

from harness.drawings import drawing
from harness.spaces import ROOT, client, editor_value, random_weights, staged_space
from spaces import deploy

SPACES = deploy.list_spaces()


def test_spaces_are_listed():
    assert "digits" in SPACES


@pytest.mark.parametrize("space", SPACES)
def test_space_readme_front_matter(space):
    meta = metadata_load(ROOT / "spaces" / space / "README.md")
    assert meta["sdk"] == "gradio" and meta["sdk_version"] == gradio.__version__
    assert meta["app_file"] == "app.py" and str(meta["python_version"]).startswith("3.")
    assert meta["license"] and meta["title"] and meta["emoji"]
    assert 0 < len(meta["short_description"]) <= 60  # the Hub's limit
    assert meta["models"] and all(m.count("/") == 1 for m in meta["models"])


@pytest.mark.parametrize("space", SPACES)
def test_requirements_leave_gradio_to_the_sdk(space):
    lines = (ROOT / "spaces" / space / "requirements.txt").read_text().splitlines()
    names = [line.split("=")[0].split(">")[0].split("<")[0].strip().lower() for line in lines
             if line.strip() and not line.startswith(("#", "-"))]
    assert "gradio" not in names and "torch" in names


@pytest.mark.parametrize("space", SPACES)
def test_stage_is_self_contained(space, tmp_path):
    staged = deploy.stage(space, tmp_path / space)
    files = {p.relative_to(staged).as_posix() for p in staged.rglob("*") if p.is_file()}
    assert {"app.py", "README.md", "requirements.txt", "shared/__init__.py", "shared/images.py",
            "shared/preprocessing.py", "shared/serving.py", "shared/weights.py", "shared/models/__init__.py"} <= files
    assert not [f for f in files if "__pycache__" in f or f.endswith((".pyc", ".pyi"))]
    assert all(f.endswith(".py") for f in files if f.startswith("shared/"))
    with pytest.raises(SystemExit, match="not empty"):
        deploy.stage(space, staged)


@pytest.mark.parametrize("space", SPACES)
def test_a_staged_space_pins_the_versions_installed_here(space, tmp_path):
    """Every `==` pin of the staged requirements.txt is the version this Python has (the tests'
    own), torch's CPU build label kept; the rest of the file is unchanged."""
    from importlib import metadata

    source = (ROOT / "spaces" / space / "requirements.txt").read_text().splitlines()
    staged = (deploy.stage(space, tmp_path / space) / "requirements.txt").read_text().splitlines()
    assert len(staged) == len(source)
    pins = dict(line.split("==") for line in staged if "==" in line)
    assert {"torch", "huggingface_hub", "safetensors", "numpy", "pillow"} <= set(pins)
    for name, version in pins.items():
        assert version.split("+")[0] == metadata.version(name).split("+")[0], name
    assert pins["torch"].endswith("+cpu")
    assert [line for line in staged if "==" not in line] == [line for line in source if "==" not in line]


def test_a_pin_of_a_package_not_installed_is_refused(tmp_path):
    with pytest.raises(SystemExit, match="pins no-such-package, which is not installed here"):
        deploy.pin_installed("no-such-package==1.0\n", "spaces/x/requirements.txt")
    assert deploy.pin_installed("# vendor: training\ntorch>=2\n", "x") == "# vendor: training\ntorch>=2\n"


def test_staged_digits_space_runs_on_its_own(tmp_path):
    """From a temporary folder, with a Python that cannot import this checkout, PYTHONPATH unset and
    the working directory elsewhere: the staged app serves predictions, and says which weights are
    missing (none in checkpoints/ here, no network) and how to get them."""
    env = random_weights(tmp_path / "weights", ["mnist-cnn"])
    with staged_space("digits", env, tmp_path) as app:
        api = client(app.url, tmp_path / "downloads")
        canvas = tmp_path / "canvas.png"
        drawing("7").save(canvas)
        label, _, message = api.predict(editor_value(canvas), "mnist-cnn", api_name="/predict_sketch")
        assert len(label["confidences"]) == 3 and "mnist-cnn" in message
        label, _, message = api.predict(editor_value(canvas), "mnist-mlp", api_name="/predict_sketch")
        assert label is None or not label.get("confidences")
        assert "mnist-mlp is not available" in message and "make train LESSON=mnist-mlp" in message
        assert "ZTG_WEIGHTS_MNIST_MLP" in message


def test_command_line(tmp_path):
    result = subprocess.run([sys.executable, str(ROOT / "spaces" / "deploy.py"), "stage", "digits",
                             str(tmp_path / "out")], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and (tmp_path / "out" / "app.py").is_file()
    result = subprocess.run([sys.executable, str(ROOT / "spaces" / "deploy.py"), "serve", "nope"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode != 0 and "no Space 'nope'" in result.stderr
    result = subprocess.run([sys.executable, str(ROOT / "spaces" / "deploy.py"), "upload", "digits", "noslash"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode != 0 and "ORG/NAME" in result.stderr
