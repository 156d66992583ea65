"""From checkpoints to Spaces on anyone's account: staging for an org, the Hub calls, and the staged
Spaces serving an org's repos from a pre-filled Hugging Face cache with HF_HUB_OFFLINE=1."""

from __future__ import annotations

import shutil
import urllib.request
from pathlib import Path
from unittest import mock

import pytest
from conftest import train
from hub_cache import fill_hub_cache
from huggingface_hub import CommitOperationDelete, HfApi, metadata_load

from harness.drawings import drawing
from harness.spaces import ROOT, client, editor_value, staged_space
from spaces import deploy

SPACES = {"digits": ["mnist-cnn", "mnist-mlp", "mnist-logistic"],
          "cifar10": ["cifar10-airbench", "cifar10-resnet9", "cifar10-cnn", "cifar10-mlp", "image-folder"],
          "faces": ["anime-dcgan", "mnist-gan"]}


@pytest.mark.parametrize("space", SPACES)
def test_staging_for_an_org_points_the_space_at_its_repos(space, tmp_path):
    staged = deploy.stage(space, tmp_path / space, weights_org="acme")
    meta = metadata_load(staged / "README.md")
    assert meta["models"] == [f"acme/{lesson}" for lesson in SPACES[space]]
    assert "preload_from_hub" not in meta  # nobody asked the Hub which of them exist
    assert meta["suggested_hardware"] == "cpu-basic" and meta["sdk"] == "gradio"
    existing = {f"acme/{SPACES[space][-1]}", "acme/not-listed"}
    meta = metadata_load(deploy.stage(space, tmp_path / "preloading", weights_org="acme", preload=existing)
                         / "README.md")
    assert meta["preload_from_hub"] == [f"acme/{SPACES[space][-1]}"]  # fetched when the Space is built
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


def fake_api(monkeypatch, missing=(), private=()) -> mock.MagicMock:
    """HfApi replaced by an autospec double: a call with a wrong argument fails as it would for real.
    Every model repo exists, but those in `missing`; those in `private` are private."""
    import huggingface_hub

    import training.hub

    api = mock.create_autospec(HfApi, instance=True)
    api.create_commit.return_value.commit_url = "https://huggingface.co/commit/1"
    api.upload_folder.return_value.commit_url = "https://huggingface.co/spaces/commit/2"
    api.list_repo_files.return_value = [".gitattributes", "README.md", "old_module.py"]
    api.repo_exists.side_effect = lambda repo_id, **kwargs: repo_id not in missing
    api.repo_info.side_effect = lambda repo_id, **kwargs: mock.Mock(private=repo_id in private)
    api.whoami.return_value = {"name": "acme-bot", "auth": {"accessToken": {"role": "read"}}}
    for module in (huggingface_hub, training.hub):
        monkeypatch.setattr(module, "HfApi", lambda *args, **kwargs: api)
    monkeypatch.setenv("HF_TOKEN", "hf_FAKEtoken1234567890abcdefghij")
    return api


def committed(call) -> dict[str, str]:
    """{path: "add" or "delete"} of one create_commit call."""
    return {op.path_in_repo: "delete" if isinstance(op, CommitOperationDelete) else "add"
            for op in call.args[1]}


def uploaded(api) -> list[dict]:
    """What each upload_folder call sent: its arguments, and the folder's files with the README's
    front matter (read during the call: the staged folder is temporary)."""
    sent = []

    def record(**kwargs):
        folder = Path(kwargs["folder_path"])
        sent.append({**kwargs, "files": {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()},
                     "meta": metadata_load(folder / "README.md"),
                     "requirements": (folder / "requirements.txt").read_text()})
        return mock.DEFAULT

    api.upload_folder.side_effect = record
    return sent


def test_upload_is_one_mirroring_commit_to_a_space_wired_to_the_org(monkeypatch):
    """upload_folder with delete_patterns="*" (what it leaves: .gitattributes), the README pointing
    at the org's repos and preloading only those the Hub has (acme/mnist-mlp is missing)."""
    api = fake_api(monkeypatch, missing={"acme/mnist-mlp"})
    sent = uploaded(api)
    assert deploy.upload("digits", "acme/sketchpad", weights_org="acme") == "https://huggingface.co/spaces/commit/2"
    api.create_repo.assert_called_once_with("acme/sketchpad", repo_type="space", space_sdk="gradio",
                                            private=None, exist_ok=True)
    assert {c.args[0] for c in api.repo_exists.call_args_list} == {f"acme/{m}" for m in SPACES["digits"]}
    api.create_commit.assert_not_called()
    api.add_space_secret.assert_not_called()  # public repos: the Space needs no token
    (call,) = sent
    assert call["repo_id"] == "acme/sketchpad" and call["repo_type"] == "space" and call["delete_patterns"] == "*"
    assert {"app.py", "README.md", "requirements.txt", "shared/preprocessing.py"} <= call["files"]
    assert call["meta"]["models"] == ["acme/mnist-cnn", "acme/mnist-mlp", "acme/mnist-logistic"]
    assert call["meta"]["preload_from_hub"] == ["acme/mnist-cnn", "acme/mnist-logistic"]


def test_spaces_reading_private_repos_get_a_read_token_secret_or_nothing_is_uploaded(monkeypatch, capsys):
    private = {"acme/mnist-cnn", "acme/mnist-mlp", "acme/mnist-logistic"}
    api = fake_api(monkeypatch, private=private)
    monkeypatch.delenv(deploy.READ_TOKEN_VAR, raising=False)
    with pytest.raises(SystemExit) as refused:
        deploy.main(["upload", "digits", "acme/sketchpad", "--weights-org", "acme", "--private"])
    message = str(refused.value.code)
    assert "acme/mnist-cnn, acme/mnist-mlp, acme/mnist-logistic are private" in message
    assert "acme/sketchpad was not uploaded" in message and message.endswith(
        "ZTG_SPACE_READ_TOKEN=<your read token> python spaces/deploy.py upload digits acme/sketchpad "
        "--weights-org acme --private")
    api.create_repo.assert_not_called()
    api.upload_folder.assert_not_called()

    sent = uploaded(api)
    read_token = "hf_READtoken1234567890abcdefghijkl"
    monkeypatch.setenv(deploy.READ_TOKEN_VAR, read_token)
    assert deploy.main(["upload", "digits", "acme/sketchpad", "--weights-org", "acme", "--private"]) == 0
    api.whoami.assert_called_once_with(token=read_token)
    (secret,) = api.add_space_secret.call_args_list
    assert secret.args == ("acme/sketchpad", "HF_TOKEN", read_token)
    # Set before the upload, whose build needs it; the private repos are loaded at start-up, not preloaded.
    assert [c[0] for c in api.mock_calls].index("add_space_secret") < [c[0] for c in api.mock_calls].index("upload_folder")
    assert "preload_from_hub" not in sent[0]["meta"] and read_token not in capsys.readouterr().out

    api.whoami.return_value = {"auth": {"accessToken": {"role": "write"}}}
    api.add_space_secret.reset_mock()
    with pytest.raises(SystemExit, match="is a write token"):
        deploy.upload("digits", "acme/sketchpad", weights_org="acme", read_token=read_token)
    api.add_space_secret.assert_not_called()


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    """checkpoints/ with one finished smoke run (mnist-cnn) and an unfinished folder."""
    out = tmp_path_factory.mktemp("checkpoints")
    train("mnist-cnn", out)
    (out / "unfinished").mkdir()  # no metrics.json: not pushed
    return out


def test_publish_pushes_each_finished_checkpoint_then_every_space(monkeypatch, finished):
    api = fake_api(monkeypatch, private={"acme/mnist-cnn"})
    sent = uploaded(api)
    with pytest.raises(SystemExit, match="private, so each Space of acme needs a read token .*; nothing was uploaded"):
        deploy.publish("acme", finished, private=True)
    api.create_repo.assert_not_called()  # refused before anything was pushed
    deploy.publish("acme", finished, private=True, read_token="hf_READtoken1234567890abcdefghijkl")
    created = [(c.args[0], c.kwargs["repo_type"], c.kwargs["private"]) for c in api.create_repo.call_args_list]
    assert created == [("acme/mnist-cnn", "model", True)] + [(f"acme/{s}", "space", True) for s in deploy.list_spaces()]
    (model_commit,) = api.create_commit.call_args_list
    assert model_commit.args[0] == "acme/mnist-cnn" and committed(model_commit)["model.safetensors"] == "add"
    assert [(c["repo_id"], c["repo_type"]) for c in sent] == [(f"acme/{s}", "space") for s in deploy.list_spaces()]
    # Only the Spaces that list the private repo get the secret.
    assert [c.args[0] for c in api.add_space_secret.call_args_list] == [
        f"acme/{s}" for s in deploy.list_spaces() if "acme/mnist-cnn" in deploy.space_models(s, "acme")]
    with pytest.raises(SystemExit, match="no finished checkpoint"):
        deploy.publish("acme", finished / "empty")


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
