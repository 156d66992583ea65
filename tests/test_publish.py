"""From checkpoints to Spaces on anyone's account: staging for an org, the Hub calls, and the staged
Spaces serving an org's repos from a pre-filled Hugging Face cache with HF_HUB_OFFLINE=1."""

from __future__ import annotations

import shutil
import sys
import urllib.request
from pathlib import Path
from unittest import mock

import pytest
from conftest import train
from hub_cache import fill_hub_cache
from huggingface_hub import CommitOperationDelete, HfApi, metadata_load

from harness.drawings import drawing
from harness.spaces import ROOT, client, editor_value, staged_space

sys.path.insert(0, str(ROOT / "spaces"))
import deploy  # noqa: E402

SPACES = {"digits": ["mnist-cnn", "mnist-mlp", "mnist-logistic"],
          "cifar10": ["cifar10-airbench", "cifar10-resnet9", "cifar10-cnn", "cifar10-mlp", "image-folder"],
          "faces": ["anime-dcgan", "mnist-gan"]}


@pytest.mark.parametrize("space", SPACES)
def test_staging_for_an_org_points_the_space_at_its_repos(space, tmp_path):
    staged = deploy.stage(space, tmp_path / space, weights_org="acme")
    meta = metadata_load(staged / "README.md")
    assert meta["models"] == [f"acme/{lesson}" for lesson in SPACES[space]]
    assert meta["preload_from_hub"] == meta["models"]  # fetched when the Space is built
    assert meta["suggested_hardware"] == "cpu-basic" and meta["sdk"] == "gradio"
    assert metadata_load(ROOT / "spaces" / space / "README.md")["models"][0].startswith("zero-to-gans/")
    with pytest.raises(SystemExit, match="not a Hub user or organisation"):
        deploy.stage(space, tmp_path / "bad", weights_org="acme/oops")


@pytest.mark.parametrize("space", SPACES)
def test_requirements_pin_an_exact_cpu_build_of_torch(space):
    lines = [line.strip() for line in (ROOT / "spaces" / space / "requirements.txt").read_text().splitlines()
             if line.strip() and not line.startswith("#")]
    assert "--extra-index-url https://download.pytorch.org/whl/cpu" in lines
    pins = [line for line in lines if not line.startswith("-")]
    assert all("==" in line for line in pins), pins
    assert any(line.startswith("torch==") and line.endswith("+cpu") for line in pins)


def fake_api(monkeypatch) -> mock.MagicMock:
    """HfApi replaced by an autospec double: a call with a wrong argument fails as it would for real."""
    import huggingface_hub

    import training.hub

    api = mock.create_autospec(HfApi, instance=True)
    api.create_commit.return_value.commit_url = "https://huggingface.co/commit/1"
    api.list_repo_files.return_value = [".gitattributes", "README.md", "old_module.py"]
    api.repo_info.return_value.private = True
    for module in (huggingface_hub, training.hub):
        monkeypatch.setattr(module, "HfApi", lambda *args, **kwargs: api)
    monkeypatch.setenv("HF_TOKEN", "hf_FAKEtoken1234567890abcdefghij")
    return api


def committed(call) -> dict[str, str]:
    """{path: "add" or "delete"} of one create_commit call."""
    return {op.path_in_repo: "delete" if isinstance(op, CommitOperationDelete) else "add"
            for op in call.args[1]}


def test_upload_is_one_commit_to_a_space_wired_to_the_org(monkeypatch):
    api = fake_api(monkeypatch)
    readme = []
    api.create_commit.side_effect = lambda repo_id, operations, **kw: readme.extend(
        Path(op.path_or_fileobj).read_text() for op in operations if op.path_in_repo == "README.md") or mock.DEFAULT
    deploy.upload("digits", "acme/sketchpad", weights_org="acme")
    api.create_repo.assert_called_once_with("acme/sketchpad", repo_type="space", space_sdk="gradio",
                                            private=None, exist_ok=True)
    (call,) = api.create_commit.call_args_list
    assert call.args[0] == "acme/sketchpad" and call.kwargs["repo_type"] == "space"
    files = committed(call)
    assert files["app.py"] == files["shared/preprocessing.py"] == "add"
    assert files["old_module.py"] == "delete" and ".gitattributes" not in files
    assert "- acme/mnist-cnn" in readme[0] and "preload_from_hub" in readme[0]


def test_publish_pushes_each_finished_checkpoint_then_every_space(monkeypatch, tmp_path):
    train("mnist-cnn", tmp_path / "checkpoints")
    (tmp_path / "checkpoints" / "unfinished").mkdir()  # no metrics.json: not pushed
    api = fake_api(monkeypatch)
    deploy.publish("acme", tmp_path / "checkpoints", private=True)
    created = [(c.args[0], c.kwargs["repo_type"], c.kwargs["private"]) for c in api.create_repo.call_args_list]
    assert created == [("acme/mnist-cnn", "model", True)] + [(f"acme/{s}", "space", True) for s in deploy.list_spaces()]
    commits = [(c.args[0], c.kwargs["repo_type"]) for c in api.create_commit.call_args_list]
    assert commits == [("acme/mnist-cnn", "model")] + [(f"acme/{s}", "space") for s in deploy.list_spaces()]
    assert committed(api.create_commit.call_args_list[0])["model.safetensors"] == "add"
    with pytest.raises(SystemExit, match="no finished checkpoint"):
        deploy.publish("acme", tmp_path / "empty")


# ---- end to end: an org's repos in a pre-filled cache, staged Spaces, no network ------------------


@pytest.fixture(scope="module")
def hub_cache(tmp_path_factory) -> Path:
    """acme/<lesson> for every model the Spaces serve, made from real (smoke) training runs, as a
    push would upload them (no resume/), in the Hugging Face cache's own layout."""
    out, cache = tmp_path_factory.mktemp("checkpoints"), tmp_path_factory.mktemp("hub")
    for i, lesson in enumerate(lesson for lessons in SPACES.values() for lesson in lessons):
        train(lesson, out)
        upload = out / f"{lesson}-upload"
        shutil.copytree(out / lesson, upload, ignore=shutil.ignore_patterns("resume"))
        fill_hub_cache(cache, f"acme/{lesson}", {f"{i:040x}": upload}, {"main": f"{i:040x}"})
    return cache


def offline(cache: Path) -> dict:
    return {"HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(cache)}


def page_text(url: str) -> str:
    with urllib.request.urlopen(url + "config", timeout=30) as response:
        return response.read().decode()


def test_staged_spaces_serve_an_orgs_repos_offline(hub_cache, tmp_path):
    canvas = tmp_path / "canvas.png"
    drawing("7").save(canvas)
    photo = tmp_path / "photo.png"
    drawing("4", size=(64, 48)).convert("RGB").save(photo)
    for space in SPACES:
        with staged_space(space, offline(hub_cache), tmp_path / space, weights_org="acme") as app:
            assert "unavailable" not in page_text(app.url), app.log()[-3000:]
            api = client(app.url, tmp_path / space / "downloads")
            if space == "digits":
                label, _, message = api.predict(editor_value(canvas), "mnist-mlp", api_name="/predict_sketch")
                assert len(label["confidences"]) == 3 and "acme/mnist-mlp" in message
            elif space == "cifar10":
                from gradio_client import handle_file

                label, *_ = api.predict(handle_file(str(photo)), "cifar10-cnn", api_name="/predict")
                assert len(label["confidences"]) == 3
            else:
                grid, archive, message = api.predict("mnist-gan", 7, 4, api_name="/generate")
                assert Path(grid).is_file() and Path(archive).is_file(), message


def test_a_wrong_or_missing_repo_is_named_and_the_rest_still_serves(hub_cache, tmp_path):
    # acme2/mnist-mlp holds mnist-cnn, acme2/mnist-logistic does not exist, acme2/mnist-cnn is right.
    wrong = tmp_path / "hub"
    shutil.copytree(hub_cache, wrong, symlinks=True)
    shutil.copytree(wrong / "models--acme--mnist-cnn", wrong / "models--acme2--mnist-cnn", symlinks=True)
    shutil.copytree(wrong / "models--acme--mnist-cnn", wrong / "models--acme2--mnist-mlp", symlinks=True)
    canvas = tmp_path / "canvas.png"
    drawing("1").save(canvas)
    with staged_space("digits", offline(wrong), tmp_path / "space", weights_org="acme2") as app:
        text = page_text(app.url)
        assert "acme2/mnist-mlp holds mnist-cnn" in text and "acme2/mnist-logistic could not be read" in text
        assert "HF_HUB_OFFLINE" in text
        api = client(app.url, tmp_path / "downloads")
        label, _, _ = api.predict(editor_value(canvas), "mnist-cnn", api_name="/predict_sketch")
        assert len(label["confidences"]) == 3
        _, _, message = api.predict(editor_value(canvas), "mnist-mlp", api_name="/predict_sketch")
        assert "mnist-mlp is not available" in message and "make train LESSON=mnist-mlp" in message
