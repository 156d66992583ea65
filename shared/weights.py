"""Find and load the trained weights a Space serves.

For a lesson (= registered model name, e.g. `mnist-cnn`) the weights come from the first of:

1. the environment variable `ZTG_WEIGHTS_<LESSON>` (upper case, `-` -> `_`, e.g.
   `ZTG_WEIGHTS_MNIST_CNN`), naming a local checkpoint folder or a Hub model repo
   `org/name`, optionally pinned as `org/name@revision` (a branch, tag or commit);
   when it is set, nothing else is tried;
2. the local checkpoint folder `checkpoints/<lesson>/` that `make train-all` (or
   `python -m training <lesson>`) writes, looked up under the repository root and under the
   current directory;
3. the default Hub repo: the repo of the `models:` list of the Space's README that holds this
   model. Which model a repo holds is read from its config.json (`model_type`, written by
   training), not from its name: `my-org/sketch-cnn` may hold `mnist-cnn`.

Loading goes through `MODELS[lesson].from_pretrained`: safetensors only, `strict=True`, the
model in `eval()` mode on the CPU. Hub downloads use the Hugging Face cache, so with
`HF_HUB_OFFLINE=1` a pre-filled cache serves them without any network access. When no weights
are found, `WeightsNotFound` says what was tried and how to train or where to point.
"""

from __future__ import annotations

import json
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

ENV_PREFIX = "ZTG_WEIGHTS_"
REPO_ROOT = Path(__file__).resolve().parents[1]
# What a model needs from a checkpoint folder or Hub repo; metrics.json only adds a description.
WEIGHT_FILES = ("config.json", "model.safetensors")
_REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")


class WeightsError(RuntimeError):
    """Weights could not be found or loaded; the message says how to fix it."""


class WeightsNotFound(WeightsError):
    """No source holds weights for this lesson."""


@dataclass(frozen=True)
class Source:
    kind: str                    # "folder" or "hub"
    location: str                # a folder, or a Hub repo id "org/name"
    revision: str | None = None  # Hub branch, tag or commit; None means the default branch
    origin: str = ""             # why this source was used: the env var, the local checkpoint, ...

    def __str__(self) -> str:
        if self.kind == "hub":
            return f"Hub repo {self.location}" + (f"@{self.revision}" if self.revision else "")
        return f"folder {_shown(Path(self.location))}"


class Loaded(NamedTuple):
    model: object    # the HubModel, in eval() mode
    source: Source
    metrics: dict    # the checkpoint's metrics.json ({} when it has none)

    def caption(self, metric: str, template: str) -> str:
        """For a page: where the weights come from (a Hub repo, or "a local checkpoint": a Space
        shows no server path) and, when the checkpoint recorded it, `template` filled with `metric`."""
        where = str(self.source) if self.source.kind == "hub" else "a local checkpoint"
        value = self.metrics.get(metric)
        return where + (", " + template.format(value) if value is not None else "")


def env_var(lesson: str) -> str:
    """`mnist-cnn` -> `ZTG_WEIGHTS_MNIST_CNN`."""
    return ENV_PREFIX + re.sub(r"[^A-Za-z0-9]", "_", lesson).upper()


def parse_repo_ref(text: str) -> tuple[str, str | None]:
    """`org/name` or `org/name@revision` -> (repo id, revision or None); ValueError if malformed."""
    repo_id, at, revision = text.strip().partition("@")
    if not _REPO_ID.match(repo_id) or ".." in repo_id or (at and not revision.strip()):
        raise ValueError(f"{text!r} is not a Hub repo id (expected org/name or org/name@revision)")
    return repo_id, (revision.strip() or None)


def checkpoint_roots() -> list[Path]:
    """Where `checkpoints/` may be: under the repository root, then under the current directory."""
    roots = []
    for root in (REPO_ROOT / "checkpoints", Path.cwd() / "checkpoints"):
        if root.resolve() not in [r.resolve() for r in roots]:
            roots.append(root)
    return roots


def local_checkpoint(lesson: str, roots: list[Path] | None = None) -> Path | None:
    """The first `<root>/<lesson>/` holding config.json and model.safetensors, if any."""
    for root in checkpoint_roots() if roots is None else roots:
        folder = Path(root) / lesson
        if all((folder / name).is_file() for name in WEIGHT_FILES):
            return folder
    return None


def listed_repos(readme: str | Path) -> list[str]:
    """`models:` of a Space README's YAML front matter: ["org/name", "org/name@revision", ...]."""
    from huggingface_hub import metadata_load

    models = (metadata_load(readme) or {}).get("models") or []
    return [models] if isinstance(models, str) else list(models)


def repo_model(ref: str, cache_dir: str | Path | None = None) -> str | None:
    """The registered model a Hub repo holds, from its config.json (None for a checkpoint written
    before training recorded it). Raises WeightsNotFound when the repo cannot be read."""
    from huggingface_hub import hf_hub_download

    from shared.models.registry import model_name_of

    repo_id, revision = parse_repo_ref(ref)
    try:
        config = json.loads(Path(hf_hub_download(repo_id, "config.json", revision=revision,
                                                 cache_dir=cache_dir)).read_text())
    except Exception as error:  # noqa: BLE001  (offline, repo/revision not found, HTTP errors, bad JSON)
        raise WeightsNotFound(f"the Hub repo {ref} could not be read ({_hub_reason(error)})") from error
    return model_name_of(config)


def default_repos(readme: str | Path, names: list[str], cache_dir: str | Path | None = None
                  ) -> tuple[dict[str, str], dict[str, str]]:
    """For a Space: ({model name: the listed repo that holds it}, {listed repo: why it serves nothing}).

    Each repo of the README's `models:` is asked which model it holds (its config.json); a repo
    with no record of it counts as holding the model its name says (older checkpoints).
    """
    found, problems = {}, {}
    for ref in listed_repos(readme):
        try:
            held = repo_model(ref, cache_dir) or parse_repo_ref(ref)[0].split("/")[1]
        except (WeightsNotFound, ValueError) as error:
            problems[ref] = str(error)
            continue
        if held not in names:
            problems[ref] = f"the Hub repo {ref} holds {held}, which this Space does not serve ({', '.join(names)})"
        elif held in found:
            problems[ref] = f"the Hub repo {ref} holds {held}, already served from {found[held]}"
        else:
            found[held] = ref
    return found, problems


def find_weights(lesson: str, default_repo: str | None = None, *, roots: list[Path] | None = None,
                 environ: dict | None = None) -> Source:
    """The source the weights of `lesson` come from (see the module docstring for the order)."""
    name = env_var(lesson)
    value = (os.environ if environ is None else environ).get(name, "").strip()
    if value:
        path = Path(value).expanduser()
        if path.is_dir():
            return Source("folder", str(path), origin=f"${name}")
        try:
            repo_id, revision = parse_repo_ref(value)
        except ValueError:
            raise WeightsNotFound(
                f"{name}={value} is neither an existing folder nor a Hub repo id "
                f"(org/name or org/name@revision). {how_to_fix(lesson)}") from None
        if path.exists() or value.startswith((".", "/", "~")):
            raise WeightsNotFound(f"{name}={value}: no such checkpoint folder. {how_to_fix(lesson)}")
        return Source("hub", repo_id, revision, origin=f"${name}")
    folder = local_checkpoint(lesson, roots)
    if folder is not None:
        return Source("folder", str(folder), origin="local checkpoint")
    if default_repo:
        repo_id, revision = parse_repo_ref(default_repo)
        return Source("hub", repo_id, revision, origin="default Hub repo")
    raise WeightsNotFound(f"No weights for {lesson}: {name} is not set, there is no checkpoints/"
                          f"{lesson}/ folder and no default Hub repo. {how_to_fix(lesson)}")


def load_model(lesson: str, default_repo: str | None = None, *, roots: list[Path] | None = None,
               environ: dict | None = None, cache_dir: str | Path | None = None) -> Loaded:
    """Find and load the weights of `lesson` (strict, safetensors only, eval mode, CPU)."""
    from shared.models import MODELS

    if lesson not in MODELS:
        raise WeightsError(f"unknown model {lesson!r}; registered: {', '.join(sorted(MODELS))}")
    source = find_weights(lesson, default_repo, roots=roots, environ=environ)
    folder = Path(source.location)
    if source.kind == "hub":
        folder = _download(lesson, source, cache_dir)
    missing = [name for name in WEIGHT_FILES if not (folder / name).is_file()]
    if missing:
        raise WeightsNotFound(f"{lesson}: {source} ({source.origin}) has no {' or '.join(missing)}. "
                              f"{how_to_fix(lesson)}")
    held = _model_in(folder)
    if held is not None and held != lesson:
        raise WeightsError(f"{lesson}: {source} ({source.origin}) holds {held}, not {lesson}. "
                           f"{how_to_fix(lesson)}")
    try:
        model = MODELS[lesson].from_pretrained(folder)
    except Exception as error:  # noqa: BLE001  (shape mismatch, corrupt file, bad config, ...)
        raise WeightsError(f"{lesson}: the weights in {source} ({source.origin}) do not load into the "
                           f"{lesson} model: {_first_line(error)}. Retrain with `make train "
                           f"LESSON={lesson}` or point {env_var(lesson)} elsewhere.") from error
    return Loaded(model, source, _read_metrics(folder))


def load_models(names: list[str], readme: str | Path, tag: str) -> tuple[dict[str, Loaded], dict[str, str]]:
    """What a Space serves: ({name: Loaded}, {name: why it is missing}), loaded in parallel.

    Default Hub repos come from the `models:` list of the Space's `readme`; a model that
    cannot be loaded is reported on stderr under `[tag]` and the others are still served.
    """
    from concurrent.futures import ThreadPoolExecutor

    # The listed Hub repos are asked only when a model has neither its variable nor a local checkpoint.
    on_hub = [n for n in names if not os.environ.get(env_var(n), "").strip() and local_checkpoint(n) is None]
    repos, problems = default_repos(readme, names) if on_hub else ({}, {})
    for problem in problems.values():
        print(f"[{tag}] {problem}", file=sys.stderr)

    def attempt(name):
        try:
            return name, load_model(name, repos.get(name)), None
        except WeightsNotFound as error:
            if not repos.get(name) and problems:  # say why none of the listed repos served it
                error = WeightsNotFound(f"{error} The Space's README lists: " + "; ".join(problems.values()) + ".")
            print(f"[{tag}] {error}", file=sys.stderr)
            return name, None, str(error)
        except WeightsError as error:
            print(f"[{tag}] {error}", file=sys.stderr)
            return name, None, str(error)

    with ThreadPoolExecutor(len(names)) as pool:
        results = list(pool.map(attempt, names))
    return {n: m for n, m, _ in results if m}, {n: e for n, _, e in results if e}


# Lessons trained on a folder of the learner's own, which their training command must name.
OWN_DATA = {"image-folder": "MY_FOLDER"}


def how_to_fix(lesson: str) -> str:
    folder = OWN_DATA.get(lesson)
    make, python = f"make train LESSON={lesson}", f"python -m training {lesson}"
    if folder:
        make, python = f"{make} DATA_DIR={folder}", f"{python} --data-dir {folder}"
    return (f"Train it with `{make}` (or `{python}`"
            + (", the folder holding one subfolder of images per class" if folder else "")
            + f"), which writes checkpoints/{lesson}/, or set {env_var(lesson)} to a checkpoint folder or a "
            "Hub model repo (org/name or org/name@revision).")


def _download(lesson: str, source: Source, cache_dir) -> Path:
    """Fetch the weight files of a Hub repo into the HF cache (one repo lookup, then the files)."""
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(source.location, revision=source.revision, cache_dir=cache_dir,
                                      allow_patterns=[*WEIGHT_FILES, "metrics.json"]))
    except Exception as error:  # noqa: BLE001  (offline, repo/revision not found, HTTP errors)
        raise WeightsNotFound(f"No weights for {lesson}: {source} ({source.origin}) could not be "
                              f"loaded ({_hub_reason(error)}). {how_to_fix(lesson)}") from error


def _hub_reason(error: BaseException) -> str:
    offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")
    reason = "HF_HUB_OFFLINE is set and the Hugging Face cache does not hold it" if offline else _first_line(error)
    return f"{type(error).__name__}: {reason}"


def _model_in(folder: Path) -> str | None:
    from shared.models.registry import model_name_of

    try:
        return model_name_of(json.loads((folder / "config.json").read_text()))
    except (OSError, ValueError):
        return None


def _read_metrics(folder: Path) -> dict:
    try:
        return json.loads((folder / "metrics.json").read_text())
    except (OSError, ValueError):
        return {}


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0][:300] if text else type(error).__name__


def _shown(path: Path) -> str:
    """A path relative to the repository or the current directory when it is inside one."""
    for base in (Path.cwd(), REPO_ROOT):
        try:
            return str(path.resolve().relative_to(base.resolve()))
        except ValueError:
            continue
    return str(path)
