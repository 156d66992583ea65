"""Publishing to the Hub without a network: the exact calls, what is uploaded and deleted, the token.

`HfApi` is replaced by `create_autospec(HfApi, instance=True)`, so a call with an argument
name the installed huggingface_hub does not have fails here as it would against the Hub.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from types import SimpleNamespace
from unittest import mock

import pytest
import torch
from conftest import ROOT, train
from huggingface_hub import CommitOperationAdd, CommitOperationDelete, HfApi
from PIL import Image

from training import hub
from training.anime_faces_data import HUB_DATASET, HUB_FILE, HUB_REVISION, synthetic_faces
from training.lessons import LESSONS

TOKEN = "hf_FAKEtoken1234567890abcdefghij"


@pytest.fixture(autouse=True)
def fake_token(monkeypatch):
    monkeypatch.setenv("HF_TOKEN", TOKEN)


@pytest.fixture
def api(monkeypatch):
    """The HfApi every `HfApi()` in training.hub returns: a repo that holds files of an older, longer run."""
    fake = mock.create_autospec(HfApi, instance=True)
    fake.list_repo_files.return_value = [".gitattributes", "README.md", "config.json", "model.safetensors",
                                         "samples/epoch_012.png", "resume/state.pt"]
    fake.create_commit.return_value = SimpleNamespace(commit_url="https://huggingface.co/me/sketch/commit/0123abc")
    fake.repo_info.return_value = SimpleNamespace(private=True)
    monkeypatch.setattr(hub, "HfApi", mock.Mock(return_value=fake))
    return fake


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """A finished smoke checkpoint, trained once for the tests that only publish it."""
    out = tmp_path_factory.mktemp("trained")
    train("mnist-logistic", out)
    return out / "mnist-logistic"


def committed(api) -> tuple[dict[str, bytes], set[str], dict]:
    """What the one create_commit call adds (path -> bytes), deletes, and its other arguments."""
    api.create_commit.assert_called_once()
    args, kwargs = api.create_commit.call_args
    operations = list(kwargs.pop("operations", None) or args[1])
    adds = {op.path_in_repo: op.path_or_fileobj if isinstance(op.path_or_fileobj, bytes)
            else Path(op.path_or_fileobj).read_bytes() for op in operations if isinstance(op, CommitOperationAdd)}
    deletes = {op.path_in_repo for op in operations if isinstance(op, CommitOperationDelete)}
    return adds, deletes, {"repo_id": args[0] if args else kwargs.pop("repo_id"), **kwargs}


def test_push_to_hub_mirrors_the_folder_in_one_commit(tmp_path, api):
    from training.cli import main

    main(["mnist-logistic", "--profile", "smoke", "--out-dir", str(tmp_path), "--push-to-hub", "me/sketch"])
    folder = tmp_path / "mnist-logistic"
    api.create_repo.assert_called_once_with("me/sketch", repo_type="model", private=None, exist_ok=True)
    api.repo_info.assert_not_called()  # without --private the account's default visibility applies
    api.upload_folder.assert_not_called()
    adds, deletes, call = committed(api)
    assert call["repo_id"] == "me/sketch" and call["repo_type"] == "model"
    local = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    assert sorted(adds) == [name for name in local if not name.startswith("resume/")]
    assert {"config.json", "model.safetensors", "README.md", "metrics.json", "curves.png"} <= set(adds)
    assert deletes == {"samples/epoch_012.png", "resume/state.pt"}  # .gitattributes stays
    assert adds["model.safetensors"] == (folder / "model.safetensors").read_bytes()
    card = adds["README.md"].decode()
    assert 'MODELS["mnist-logistic"].from_pretrained("me/sketch")' in card and "<org>" not in card
    assert "<org>/mnist-logistic" in (folder / "README.md").read_text()  # the folder is left as trained
    assert TOKEN not in call["commit_message"] and all(TOKEN.encode() not in data for data in adds.values())


def test_private_creates_a_private_repo_and_never_uploads_into_a_public_one(checkpoint, api):
    assert hub.publish(checkpoint, "me/sketch", private=True).endswith("/commit/0123abc")
    api.create_repo.assert_called_once_with("me/sketch", repo_type="model", private=True, exist_ok=True)
    api.repo_info.assert_called_once_with("me/sketch", repo_type="model")
    api.create_commit.reset_mock()
    api.repo_info.return_value = SimpleNamespace(private=False)  # the repo existed, public
    with pytest.raises(hub.PublishError, match="exists and is public"):
        hub.publish(checkpoint, "me/sketch", private=True)
    api.create_commit.assert_not_called()


def test_the_token_never_leaves_the_process(tmp_path, api, capfd):
    """A library error that quotes the token is reported without it; nothing written holds it."""
    from training.cli import main

    api.create_commit.side_effect = RuntimeError(f"401 Client Error: bad credentials {TOKEN} for url\ndetails")
    with pytest.raises(SystemExit) as exit_:
        main(["mnist-logistic", "--profile", "smoke", "--out-dir", str(tmp_path), "--push-to-hub", "me/sketch",
              "--tracker", "tensorboard"])
    assert exit_.value.code == 3
    out, err = capfd.readouterr()
    assert "publishing to me/sketch failed (RuntimeError: 401 Client Error: bad credentials hf_*** for url)" in err
    assert "python -m training.hub" in err and "The checkpoint is kept" in err
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert any(p.name == "model.safetensors" for p in written) and any("tfevents" in p.name for p in written)
    for text in [out, err, *(p.read_bytes().decode("latin-1") for p in written)]:
        assert TOKEN not in text


def test_no_token_or_a_bad_repo_id_stops_before_training(tmp_path, monkeypatch, capsys):
    from training.cli import main

    monkeypatch.setattr(hub, "get_token", lambda: None)
    for repo, message in (("me/sketch", "hf auth login"), ("me/bad name", "is not a Hub repo id")):
        with pytest.raises(SystemExit) as exit_:
            main(["mnist-logistic", "--profile", "smoke", "--out-dir", str(tmp_path), "--push-to-hub", repo])
        assert exit_.value.code == 3 and message in capsys.readouterr().err
    assert not (tmp_path / "mnist-logistic").exists()


def test_a_path_of_this_machine_or_an_unfinished_run_is_not_published(checkpoint, tmp_path, api):
    folder = tmp_path / "mnist-logistic"
    shutil.copytree(checkpoint, folder)
    metrics = json.loads((folder / "metrics.json").read_text())
    note = f"FID skipped: not in {Path.home() / '.cache' / 'torch'}"  # what metrics.json used to carry
    (folder / "metrics.json").write_text(json.dumps({**metrics, "fid_note": note}))
    with pytest.raises(hub.PublishError, match="metrics.json holds a path of this machine"):
        hub.publish(folder, "me/sketch")
    (folder / "metrics.json").write_text(json.dumps({**metrics, "complete": False}))
    with pytest.raises(hub.PublishError, match="unfinished run"):
        hub.publish(folder, "me/sketch")
    api.create_repo.assert_not_called()


def stopped_run(lesson: str, out_dir: Path) -> Path:
    """A smoke run of `lesson` stopped after its first epoch, as Stop or Ctrl-C leaves it."""
    from training.cli import make_run
    from training.run import TrainingStopped

    def stop_after_an_epoch(row):
        if row["kind"] == "epoch":
            run.request_stop()

    module, run = make_run(lesson, [], profile="smoke", data_dir=out_dir / "data", out_dir=out_dir,
                           on_progress=stop_after_an_epoch)
    with pytest.raises(TrainingStopped):
        module.train(run)
    return out_dir / lesson


def test_a_stopped_run_is_published_only_when_asked_and_says_where_it_stopped(tmp_path, api, capsys):
    """Refused by default (library and command line); with allow_unfinished one commit of a folder
    that loads strictly, whose card, metrics.json and commit message say it stopped after epoch 1 of 2."""
    from shared.models import MODELS

    folder = stopped_run("mnist-logistic", tmp_path)
    with pytest.raises(hub.PublishError, match=r"unfinished run \(smoke profile, stopped after epoch 1 of 2\); "
                                               "finish it with --resume .*--allow-unfinished"):
        hub.publish(folder, "me/stopped")
    with pytest.raises(SystemExit) as exit_:
        hub.main([str(folder), "me/stopped"])
    assert exit_.value.code == 3 and "--allow-unfinished" in capsys.readouterr().err
    api.create_repo.assert_not_called()

    hub.main([str(folder), "me/stopped", "--allow-unfinished"])
    adds, deletes, call = committed(api)
    assert call["commit_message"] == "Upload mnist-logistic (smoke profile, stopped after epoch 1 of 2) with zero-to-gans"
    assert not [name for name in adds if name.startswith("resume/")]
    card = adds["README.md"].decode()
    assert "**Unfinished run: training stopped after epoch 1 of 2.**" in card
    assert "not evaluated on the test set" in card and "After epoch 1: val loss" in card
    assert "model-index" not in card  # no test result is claimed for these weights
    metrics = json.loads(adds["metrics.json"])
    assert metrics == {**metrics, "complete": False, "epochs_completed": 1, "step_in_epoch": 0, "epochs_planned": 2}
    pushed = tmp_path / "pushed"
    for name, data in adds.items():
        (pushed / name).parent.mkdir(parents=True, exist_ok=True)
        (pushed / name).write_bytes(data)
    MODELS["mnist-logistic"].from_pretrained(pushed)  # strict, safetensors: a valid model repo


def test_fid_note_names_no_path():
    from training.gan_metrics import fid

    with mock.patch.dict(os.environ, {"ZTG_INCEPTION_WEIGHTS": "/nonexistent/inception.pth"}):
        note = fid(synthetic_faces(2, seed=0).inputs, synthetic_faces(2, seed=1).inputs)["fid_note"]
    assert str(Path(torch.hub.get_dir())) not in note and str(Path.home()) not in note and "/" not in note


def card_of(lesson: str, metrics: dict, folder: Path, task: dict | None = None, **config):
    """The card training writes for `lesson` (real data unless config says synthetic_data), saved to
    `folder` and read back with huggingface_hub's parser, as the Hub reads it."""
    from huggingface_hub import ModelCard

    from training.card import model_card
    from training.cli import lesson_module

    snapshot = SimpleNamespace(task=task or lesson_module(lesson).TASK, lesson=lesson, profile="cpu", complete=True,
                               modules={}, published="model", config={"synthetic_data": False, **config},
                               progress=None)
    folder.mkdir(parents=True, exist_ok=True)
    model_card(snapshot, metrics).save(folder / "README.md")
    return ModelCard.load(folder / "README.md")


# The datasets of the lessons' TASKs that are on the Hub (checked there: ylecun/mnist and
# uoft-cs/cifar10 are the canonical MNIST and CIFAR-10 repos); the rest are not Hub datasets.
HUB_DATASETS = {"mnist": "ylecun/mnist", "cifar10": "uoft-cs/cifar10", "anime": HUB_DATASET}


def test_cards_say_task_dataset_and_library_as_the_hub_reads_them(tmp_path):
    from shared.models.registry import CODE_URL, HubModel

    pipeline = {"image-classification": {"mnist-logistic", "mnist-mlp", "mnist-cnn", "cifar10-mlp", "cifar10-cnn",
                                         "cifar10-resnet9", "cifar10-airbench", "image-folder"},
                "unconditional-image-generation": {"mnist-gan", "anime-dcgan"},
                "tabular-regression": {"linear-regression", "insurance-regression"}}
    mixin = HubModel._hub_mixin_info.model_card_data
    for lesson in LESSONS:
        card = card_of(lesson, {}, tmp_path / lesson)
        hub_id = next((v for k, v in HUB_DATASETS.items() if lesson.startswith(k)), None)
        assert lesson in pipeline[card.data.pipeline_tag], lesson
        assert card.data.datasets == ([hub_id] if hub_id else None), lesson
        assert (card.data.library_name, card.data.license) == (mixin.library_name, mixin.license)
        assert set(mixin.tags) <= set(card.data.tags)
        # Links to nothing but the code (CODE_URL) and the Hub page of the card's own dataset.
        links = set(re.findall(r"https?://[^\s)\"]+", card.text))
        assert links <= {CODE_URL, f"https://huggingface.co/datasets/{hub_id}"}, (lesson, links)


def test_model_index_holds_only_hub_datasets_and_the_text_names_the_rest(tmp_path):
    """Every lesson with its metrics: a model-index result only with a Hub dataset id as its type; a
    dataset that is not on the Hub (crop yields, insurance.csv, a user's folder) named in the text,
    next to its numbers, and nowhere in the metadata."""
    from training.cli import lesson_module

    not_on_hub = set()
    for lesson in LESSONS:
        task = lesson_module(lesson).TASK
        metrics = {key: 0.5 for key in task["metrics"]}
        card = card_of(lesson, metrics, tmp_path / lesson)
        hub_id = next((v for k, v in HUB_DATASETS.items() if lesson.startswith(k)), None)
        if hub_id:
            assert {r.dataset_type for r in card.data.eval_results} == {hub_id}, lesson
            assert len(card.data.eval_results) == len(task["metrics"])
            assert f"[`{hub_id}`](https://huggingface.co/datasets/{hub_id})" in card.text
        else:
            not_on_hub.add(lesson)
            assert card.data.eval_results is None and card.data.datasets is None, lesson
            metadata = json.dumps(card.data.to_dict())
            assert "model-index" not in metadata and task["dataset"] not in metadata, lesson
            assert f"Trained on {task['dataset_name']}, which is not a Hugging Face Hub dataset" in card.text
            for label in task["metrics"].values():
                assert f"| {label} | 0.5 |" in card.text  # the numbers are still on the card
    assert not_on_hub == {"linear-regression", "insurance-regression", "image-folder"}


def write_cifar_folder(root: Path, suffix: str, per_class: int = 3) -> Path:
    """root/cifar10/{train,test}/<class>/NNNN.<suffix>: 32x32 pictures in one format."""
    import numpy as np

    from shared.models.cifar10 import CLASSES

    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for name in CLASSES:
            (root / "cifar10" / split / name).mkdir(parents=True)
            for i in range(per_class):
                pixels = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(root / "cifar10" / split / name / f"{i:04d}.{suffix}")
    return root


@pytest.mark.parametrize("suffix", ["png", "jpg"])
def test_cifar10_results_say_which_copy_they_were_measured_on(suffix, tmp_path, monkeypatch):
    """A real (tiny) run on each copy: on the course's PNGs the test accuracy is a model-index result
    on uoft-cs/cifar10 that names the copy; on a JPEG copy (as the project's dataset cache is) the
    card says so and the metadata claims no result on uoft-cs/cifar10's pixels."""
    from huggingface_hub import ModelCard

    from training.cifar10_data import cifar10_copy

    monkeypatch.setenv("ZTG_CACHE_DIR", str(tmp_path / "cache"))
    data = write_cifar_folder(tmp_path / "data", suffix)
    metrics = train("cifar10-mlp", tmp_path / "out", "--synthetic_data=false",
                    "--val_size=10", "--epochs=1", "--data-dir", str(data))
    card = ModelCard.load(tmp_path / "out" / "cifar10-mlp" / "README.md")
    copy, original = cifar10_copy(data)
    assert card.data.datasets == ["uoft-cs/cifar10"] and f"read from {copy}" in card.text
    if suffix == "png":
        assert original and "PNG archive" in copy
        (result,) = card.data.eval_results
        assert result.dataset_type == "uoft-cs/cifar10" and result.metric_value == metrics["test_accuracy"]
        assert result.dataset_name == f"CIFAR-10, {copy}"
    else:
        assert not original and copy.startswith("a JPEG copy") and "lower" in copy
        assert card.data.eval_results is None and "model-index" not in json.dumps(card.data.to_dict())
        assert "measured on that copy, not on `uoft-cs/cifar10`'s own pixels" in card.text
        assert f"| Test accuracy | {metrics['test_accuracy']} |" in card.text


def test_cifar10_copy_names_torchvision_batches_as_the_original(tmp_path):
    from training.cifar10_data import cifar10_copy

    (tmp_path / "cifar-10-batches-py").mkdir()
    assert cifar10_copy(tmp_path) == ("torchvision's original batches (cifar-10-batches-py)", True)
    assert cifar10_copy(tmp_path / "nothing") is None


def test_a_smoke_run_on_synthetic_data_claims_no_result(tmp_path):
    from huggingface_hub import ModelCard

    metrics = train("mnist-logistic", tmp_path)
    card = ModelCard.load(tmp_path / "mnist-logistic" / "README.md")
    assert card.data.eval_results is None and card.data.datasets is None
    assert "synthetic stand-in data" in card.text and f"| Test accuracy | {metrics['test_accuracy']} |" in card.text


def test_a_card_says_where_the_code_is_and_how_to_install_it(tmp_path):
    """The pip line installs the package that holds `shared.models` from the URL that pyproject.toml
    and the models' mixin name; the Load-it snippet then names the repo the card is published to."""
    from huggingface_hub import ModelCard

    from shared.models.registry import CODE_URL, HubModel
    from training.card import for_repo

    tomllib = pytest.importorskip("tomllib")  # Python 3.11+

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert project["project"]["urls"]["Source"] == CODE_URL and CODE_URL.startswith("https://")
    assert "shared*" in project["tool"]["setuptools"]["packages"]["find"]["include"]
    assert HubModel._hub_mixin_info.repo_url == CODE_URL
    card = card_of("mnist-cnn", {"test_accuracy": 0.99}, tmp_path)
    published = ModelCard(for_repo(str(card), "someone/digits"))
    install = f'pip install "{project["project"]["name"]} @ git+{CODE_URL}"'
    text = published.text
    assert install in text and f"[zero-to-gans]({CODE_URL})" in text
    assert text.index(install) < text.index('MODELS["mnist-cnn"].from_pretrained("someone/digits")')


def test_huggingface_hub_lower_bound_is_the_mixin_the_loader_is_written_for():
    """`HubModel._from_pretrained` names every keyword the installed mixin passes to it; 0.x passed
    `proxies` and `resume_download` too, which would fall into `model_kwargs` and reach the model's
    constructor. So pyproject.toml must not allow a 0.x huggingface_hub."""
    import inspect

    import huggingface_hub
    from huggingface_hub import ModelHubMixin
    from packaging.requirements import Requirement

    from shared.models.registry import HubModel

    tomllib = pytest.importorskip("tomllib")  # Python 3.11+

    def named(method):
        return {name for name, p in inspect.signature(method).parameters.items() if p.kind is p.KEYWORD_ONLY}

    passed = named(ModelHubMixin._from_pretrained)
    assert {"model_id", "revision", "token"} <= passed and {"proxies", "resume_download"}.isdisjoint(passed)
    assert passed <= named(HubModel._from_pretrained)
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    (spec,) = [Requirement(r) for r in project["project"]["dependencies"] if r.startswith("huggingface_hub")]
    assert huggingface_hub.__version__ in spec.specifier
    assert not any(v in spec.specifier for v in ("0.26.0", "0.36.2", "0.99"))
    assert "1.0.0" in spec.specifier


def test_every_checkpoint_says_which_model_it_holds(tmp_path):
    from shared.models import MODELS
    from shared.models.registry import model_name_of

    for name, cls in MODELS.items():
        cls().save_pretrained(tmp_path / name)
        config = json.loads((tmp_path / name / "config.json").read_text())
        assert model_name_of(config) == name
        assert type(cls.from_pretrained(tmp_path / name)) is cls  # the extra key is not a constructor argument
    old = tmp_path / "mnist-cnn"  # a checkpoint saved before the key existed still loads
    config = json.loads((old / "config.json").read_text())
    del config["model_type"]
    (old / "config.json").write_text(json.dumps(config))
    assert model_name_of(config) is None and not MODELS["mnist-cnn"].from_pretrained(old).training


def fill_hub_cache(cache: Path, faces: torch.Tensor) -> None:
    """The Hugging Face cache as huggingface_hub lays it out, holding a data.zip of PNG faces.

    Like the real data.zip, every face is there twice, in two folders.
    """
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for folder in ("data", "data/data"):
            for i, face in enumerate(faces):
                png = io.BytesIO()
                Image.fromarray(face.permute(1, 2, 0).numpy()).save(png, format="PNG")
                archive.writestr(f"{folder}/{i}.png", png.getvalue())
    blob = buffer.getvalue()
    repo = cache / f"datasets--{HUB_DATASET.replace('/', '--')}"
    (repo / "blobs").mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "snapshots" / HUB_REVISION).mkdir(parents=True)
    sha = hashlib.sha256(blob).hexdigest()
    (repo / "blobs" / sha).write_bytes(blob)
    (repo / "snapshots" / HUB_REVISION / HUB_FILE).symlink_to(Path("..") / ".." / "blobs" / sha)
    (repo / "refs" / "main").write_text(HUB_REVISION)


def test_anime_faces_come_from_the_hub_cache_offline(tmp_path):
    faces = synthetic_faces(3, seed=0).inputs
    fill_hub_cache(tmp_path / "hub", faces)
    probe = """
import contextlib, json, sys
from pathlib import Path
from types import SimpleNamespace
from training.anime_faces_data import anime_faces, data_problem
run = SimpleNamespace(config=SimpleNamespace(synthetic_data=False), data_dir=Path(sys.argv[1]), task={},
                      accelerator=SimpleNamespace(local_main_process_first=contextlib.nullcontext),
                      to_device=lambda data: data)
data = anime_faces(run)
data.inputs.numpy().tofile(sys.argv[2])
print(json.dumps({"problem": data_problem(Path(sys.argv[1])), "shape": list(data.inputs.shape), **run.task}))
"""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path / "hub"),
           "ZTG_CACHE_DIR": str(tmp_path / "decoded"), "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", probe, str(tmp_path / "no-data"), str(tmp_path / "faces.bin")],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["problem"] is None and result["dataset"] == HUB_DATASET and "CC0" in result["dataset_name"]
    assert result["shape"] == [3, 3, 64, 64]  # each face once, though the zip holds it twice
    decoded = torch.frombuffer(bytearray((tmp_path / "faces.bin").read_bytes()), dtype=torch.uint8).view(3, 3, 64, 64)
    assert sorted(decoded.flatten(1).sum(1).tolist()) == sorted(faces.flatten(1).sum(1).tolist())  # PNG: exact


def test_the_data_dir_comes_before_the_hub_and_a_miss_names_all_three(tmp_path, monkeypatch):
    import huggingface_hub.constants

    from training.anime_faces_data import DataNotFound, data_problem, find_anime_faces

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.setitem(sys.modules, "kagglehub", None)
    with pytest.raises(DataNotFound) as error:
        find_anime_faces(tmp_path)
    for message in (str(error.value), data_problem(tmp_path)):
        for text in (str(tmp_path / "animefacedataset" / "images"), f"the Hub dataset {HUB_DATASET}: ",
                     "kagglehub", "--data-dir"):
            assert text in message
    images = tmp_path / "animefacedataset" / "images"
    images.mkdir(parents=True)
    Image.new("RGB", (64, 64), "red").save(images / "0_2000.jpg")
    source = find_anime_faces(tmp_path)
    assert source.files == (images / "0_2000.jpg",) and "Kaggle" in source.dataset_name
    assert data_problem(tmp_path) is None


def test_all_checks_every_dataset_before_training(tmp_path, monkeypatch, capsys):
    import huggingface_hub.constants

    from training import cifar10_data, insurance_data, mnist_data
    from training.cli import check_data, main, parser

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.setitem(sys.modules, "kagglehub", None)
    for module in (mnist_data, cifar10_data, insurance_data):  # as on a machine without a network
        monkeypatch.setattr(module, "unreachable", lambda url: "URLError: offline")
    with pytest.raises(SystemExit) as exit_:
        main(["all", "--data-dir", str(tmp_path / "data"), "--out-dir", str(tmp_path / "out")])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    for text in ("MNIST not found", "CIFAR-10 not found", "medical-cost data was not found",
                 "anime faces not found", "Nothing was trained"):
        assert text in err
    assert not (tmp_path / "out").exists()
    smoke = parser().parse_args(["all", "--profile", "smoke", "--data-dir", str(tmp_path / "data")])
    check_data({lesson: [] for lesson in LESSONS}, smoke)  # synthetic data needs nothing
