"""`shared.weights`: env var (folder or Hub repo@revision), then checkpoints/, then the default Hub
repo; strict safetensors loading; offline from a pre-filled Hub cache; clear messages when missing."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hub_cache import fill_hub_cache

from shared.models import build_model
from shared.weights import (
    Source,
    WeightsError,
    WeightsNotFound,
    checkpoint_roots,
    env_var,
    find_weights,
    listed_repos,
    load_model,
    local_checkpoint,
    parse_repo_ref,
)

ROOT = Path(__file__).resolve().parents[1]


def digest(model: torch.nn.Module) -> str:
    return hashlib.sha256(b"".join(t.numpy().tobytes() for t in model.state_dict().values())).hexdigest()


def saved(folder: Path, name: str = "mnist-cnn", seed: int = 0, **kwargs) -> tuple[Path, str]:
    torch.manual_seed(seed)
    model = build_model(name, **kwargs)
    model.save_pretrained(folder)
    return folder, digest(model)


def test_env_var_names():
    assert env_var("mnist-cnn") == "ZTG_WEIGHTS_MNIST_CNN"
    assert env_var("cifar10-resnet9") == "ZTG_WEIGHTS_CIFAR10_RESNET9"


@pytest.mark.parametrize(("text", "expected"), [
    ("org/name", ("org/name", None)),
    ("zero-to-gans/mnist-cnn@v1.0", ("zero-to-gans/mnist-cnn", "v1.0")),
    ("org/name@0123456789abcdef0123456789abcdef01234567", ("org/name", "0123456789abcdef0123456789abcdef01234567")),
    ("org/name@refs/pr/3", ("org/name", "refs/pr/3")),
    (" org/my_model.v2 ", ("org/my_model.v2", None)),
])
def test_parse_repo_ref(text, expected):
    assert parse_repo_ref(text) == expected


@pytest.mark.parametrize("text", ["name", "org/name@", "a/b/c", "/abs/path", "./rel", "org/..", "org /name", ""])
def test_parse_repo_ref_refuses(text):
    with pytest.raises(ValueError):
        parse_repo_ref(text)


def test_env_var_folder_loads_strictly_in_eval_mode(tmp_path):
    folder, expected = saved(tmp_path / "w", width=8)
    loaded = load_model("mnist-cnn", environ={"ZTG_WEIGHTS_MNIST_CNN": str(folder)}, roots=[])
    assert digest(loaded.model) == expected
    assert not loaded.model.training
    assert loaded.source == Source("folder", str(folder), origin="$ZTG_WEIGHTS_MNIST_CNN")
    assert loaded.metrics == {}


def test_order_env_then_checkpoints_then_hub(tmp_path):
    env_folder, _ = saved(tmp_path / "env")
    checkpoints = tmp_path / "checkpoints"
    local, _ = saved(checkpoints / "mnist-cnn")
    (local / "metrics.json").write_text(json.dumps({"test_accuracy": 99.1}))
    environ = {"ZTG_WEIGHTS_MNIST_CNN": str(env_folder)}
    assert find_weights("mnist-cnn", "org/x", roots=[checkpoints], environ=environ).location == str(env_folder)
    assert find_weights("mnist-cnn", "org/x", roots=[checkpoints], environ={}).location == str(local)
    assert find_weights("mnist-cnn", "org/x@v2", roots=[tmp_path / "none"], environ={}) == \
        Source("hub", "org/x", "v2", origin="default Hub repo")
    assert load_model("mnist-cnn", roots=[checkpoints], environ={}).metrics == {"test_accuracy": 99.1}


def test_checkpoints_are_looked_up_under_the_repo_and_the_current_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    roots = checkpoint_roots()
    assert roots[0] == ROOT / "checkpoints" and roots[-1] == tmp_path / "checkpoints"
    (tmp_path / "checkpoints" / "mnist-mlp").mkdir(parents=True)  # a folder without weights: skipped
    assert local_checkpoint("mnist-mlp", roots=[tmp_path / "checkpoints"]) is None
    saved(tmp_path / "checkpoints" / "mnist-mlp", "mnist-mlp")
    assert local_checkpoint("mnist-mlp", roots=[tmp_path / "checkpoints"]) == tmp_path / "checkpoints" / "mnist-mlp"


def test_missing_everywhere_says_how_to_fix():
    with pytest.raises(WeightsNotFound) as error:
        load_model("mnist-cnn", roots=[], environ={})
    message = str(error.value)
    assert "make train LESSON=mnist-cnn" in message and "python -m training mnist-cnn" in message
    assert "ZTG_WEIGHTS_MNIST_CNN" in message and "org/name@revision" in message


@pytest.mark.parametrize("value", ["not a repo!", "./no/such/folder", "/no/such/folder"])
def test_bad_env_values_are_errors_not_fallbacks(value, tmp_path):
    saved(tmp_path / "checkpoints" / "mnist-cnn")  # would be found, but the variable wins
    with pytest.raises(WeightsNotFound, match="ZTG_WEIGHTS_MNIST_CNN"):
        load_model("mnist-cnn", environ={"ZTG_WEIGHTS_MNIST_CNN": value}, roots=[tmp_path / "checkpoints"])


def test_wrong_architecture_is_refused(tmp_path):
    folder, _ = saved(tmp_path / "mlp", "mnist-mlp")
    with pytest.raises(WeightsError, match="holds mnist-mlp, not mnist-cnn"):  # config.json says so
        load_model("mnist-cnn", environ={"ZTG_WEIGHTS_MNIST_CNN": str(folder)}, roots=[])
    config = json.loads((folder / "config.json").read_text())
    del config["model_type"]  # a checkpoint from before training recorded it: the strict load refuses it
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(WeightsError, match="do not load into the mnist-cnn model"):
        load_model("mnist-cnn", environ={"ZTG_WEIGHTS_MNIST_CNN": str(folder)}, roots=[])


def test_only_safetensors_are_loaded(tmp_path):
    """A folder with pickled weights only (pytorch_model.bin) is not loaded: nothing is unpickled."""
    folder, _ = saved(tmp_path / "w")
    torch.save(build_model("mnist-cnn").state_dict(), folder / "pytorch_model.bin")
    (folder / "model.safetensors").unlink()
    with pytest.raises(WeightsNotFound, match="no model.safetensors"):
        load_model("mnist-cnn", environ={"ZTG_WEIGHTS_MNIST_CNN": str(folder)}, roots=[])


def test_unknown_model():
    with pytest.raises(WeightsError, match="unknown model"):
        load_model("no-such-model", roots=[], environ={})


def test_the_space_readme_lists_its_hub_repos():
    assert listed_repos(ROOT / "spaces" / "digits" / "README.md") == [
        "zero-to-gans/mnist-cnn", "zero-to-gans/mnist-mlp", "zero-to-gans/mnist-logistic"]


OFFLINE_SCRIPT = """
import hashlib, json
from shared.weights import WeightsNotFound, load_model

def digest(model):
    return hashlib.sha256(b"".join(t.numpy().tobytes() for t in model.state_dict().values())).hexdigest()

result = {}
main = load_model("mnist-cnn", "zero-to-gans/mnist-cnn", roots=[])
result["main"], result["source"] = digest(main.model), str(main.source)
for name in ("v1", "COMMIT"):
    ref = "zero-to-gans/mnist-cnn@" + name
    result[name] = digest(load_model("mnist-cnn", roots=[], environ={"ZTG_WEIGHTS_MNIST_CNN": ref}).model)
for lesson, default in (("mnist-mlp", "zero-to-gans/mnist-mlp"), ("mnist-cnn", "zero-to-gans/mnist-cnn@v9")):
    try:
        load_model(lesson, default, roots=[])
    except WeightsNotFound as error:
        result.setdefault("missing", []).append(str(error))
print(json.dumps(result))
"""


def test_offline_from_a_prefilled_hub_cache(tmp_path):
    """HF_HUB_OFFLINE=1: the default repo and pinned revisions load from the cache, no network."""
    main_folder, main_digest = saved(tmp_path / "main", seed=1)
    v1_folder, v1_digest = saved(tmp_path / "v1", seed=2, width=8)
    commit_main, commit_v1 = "a" * 40, "b" * 40
    cache = tmp_path / "hub"
    fill_hub_cache(cache, "zero-to-gans/mnist-cnn", {commit_main: main_folder, commit_v1: v1_folder},
                   {"main": commit_main, "v1": commit_v1})
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "ZTG_WEIGHTS_"))}
    env.update(HF_HUB_OFFLINE="1", HF_HUB_CACHE=str(cache), HF_HOME=str(tmp_path / "hf-home"))
    result = subprocess.run([sys.executable, "-c", OFFLINE_SCRIPT.replace("COMMIT", commit_v1)],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    found = json.loads(result.stdout.strip().splitlines()[-1])
    assert found["main"] == main_digest and found["source"] == "Hub repo zero-to-gans/mnist-cnn"
    assert found["v1"] == v1_digest and found[commit_v1] == v1_digest
    assert len(found["missing"]) == 2
    for message in found["missing"]:
        assert "HF_HUB_OFFLINE" in message and "make train LESSON=" in message
