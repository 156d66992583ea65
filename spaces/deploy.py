"""Serve, stage and deploy the Gradio Spaces in spaces/<name>/.

    python spaces/deploy.py list                              # the Spaces that exist
    python spaces/deploy.py serve digits [--port 7860]        # = python spaces/digits/app.py
    python spaces/deploy.py serve-all [--port 7860]           # every Space, on consecutive ports
    python spaces/deploy.py stage digits build/spaces/digits [--weights-org ORG]  # a self-contained Space folder
    python spaces/deploy.py upload digits your-org/digit-sketchpad [--weights-org ORG] [--private]
    python spaces/deploy.py publish your-org [--checkpoints checkpoints] [--private]  # = make publish HF_ORG=...

A staged folder is what a Space repo holds: the app folder (app.py, README.md with the Spaces
front matter, requirements.txt) plus a copy of the `shared/` package next to app.py, which the
app puts first on its import path. A Space that imports more of the project says so with a line
`# vendor: training` in its requirements.txt (the playground trains with `training/`), and
that package is copied next to app.py too. With `--weights-org ORG` the staged README's `models:` and
`preload_from_hub:` name ORG's repos instead of the project's (`ORG/<lesson>`, what `publish`
pushes), so the Space serves that account's weights, fetched when the Space is built.
`upload` stages into a temporary folder and uploads it as one commit; `publish` pushes every
finished checkpoint under checkpoints/ to ORG/<lesson> (one commit each), then uploads every
Space to ORG/<space> wired to them. The token comes from HF_TOKEN or `hf auth login` and is
never printed. A Space itself needs no token: it only reads the model repos.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SPACES = Path(__file__).resolve().parent
ROOT = SPACES.parent
REQUIRED = ("app.py", "README.md", "requirements.txt")
ORG_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")
VENDOR_LINE = re.compile(r"^#\s*vendor:\s*(.+)$")
VENDORABLE = ("shared", "training")  # the project's packages a Space may ship a copy of
# Never shipped: caches, Gradio's working folders, editor and OS litter.
IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc", "*.pyi", ".gradio", "flagged", ".DS_Store", "*.log")


def list_spaces() -> list[str]:
    return sorted(p.parent.name for p in SPACES.glob("*/app.py"))


def space_folder(space: str) -> Path:
    folder = SPACES / space
    if not (folder / "app.py").is_file():
        raise SystemExit(f"error: no Space {space!r} (spaces/{space}/app.py); Spaces: {', '.join(list_spaces())}")
    missing = [name for name in REQUIRED if not (folder / name).is_file()]
    if missing:
        raise SystemExit(f"error: spaces/{space}/ lacks {', '.join(missing)}")
    return folder


def vendored(space: str) -> list[str]:
    """The project packages copied into a staged Space: shared/, plus those its requirements.txt
    names on `# vendor: NAME [NAME ...]` lines."""
    packages = ["shared"]
    for line in (space_folder(space) / "requirements.txt").read_text().splitlines():
        found = VENDOR_LINE.match(line.strip())
        for name in found.group(1).replace(",", " ").split() if found else []:
            if name not in VENDORABLE:
                raise SystemExit(f"error: spaces/{space}/requirements.txt vendors {name!r}; "
                                 f"only {', '.join(VENDORABLE)} can be vendored")
            if name not in packages:
                packages.append(name)
    return packages


def stage(space: str, dest: Path, weights_org: str | None = None) -> Path:
    """Copy spaces/<space>/ and the packages it vendors (Python files only) into `dest`, which must
    be new or empty; with `weights_org`, the README points at that account's model repos."""
    source = space_folder(space)
    dest = Path(dest)
    if dest.exists() and any(dest.iterdir()):
        raise SystemExit(f"error: {dest} is not empty; stage into a new folder")
    shutil.copytree(source, dest, ignore=IGNORE, dirs_exist_ok=True)

    def only_python(folder, names):
        return {n for n in names if (Path(folder) / n).is_file() and not n.endswith(".py")} | set(IGNORE(folder, names))

    for package in vendored(space):
        shutil.copytree(ROOT / package, dest / package, ignore=only_python)
    if weights_org is not None:
        point_at(dest / "README.md", weights_org)
    return dest


def point_at(readme: Path, org: str) -> None:
    """Rewrite a Space README's `models:` to ORG/<lesson> and preload those repos at build time."""
    from huggingface_hub import SpaceCard

    if not ORG_NAME.match(org):
        raise SystemExit(f"error: --weights-org {org!r} is not a Hub user or organisation name")
    card = SpaceCard.load(readme)
    lessons = [ref.split("@")[0].split("/")[1] for ref in card.data.models or []]
    card.data.models = [f"{org}/{lesson}" for lesson in lessons]
    # Fetched into the Space's Hugging Face cache when it is built: no download at start-up.
    card.data.preload_from_hub = list(card.data.models)
    card.save(readme)


def upload(space: str, repo_id: str, private: bool | None = None, weights_org: str | None = None) -> str:
    """Stage `space` and upload it to the Space repo `repo_id` as one commit; returns the commit URL.

    `private=None` leaves a new repo's visibility to the account's default."""
    import huggingface_hub
    from huggingface_hub import CommitOperationAdd, CommitOperationDelete

    api = huggingface_hub.HfApi()
    with tempfile.TemporaryDirectory(prefix=f"space-{space}-") as tmp:
        folder = stage(space, Path(tmp) / space, weights_org)
        api.create_repo(repo_id, repo_type="space", space_sdk="gradio", private=private, exist_ok=True)
        # The Space mirrors the staged folder: a file gone from it (an old module) is deleted too.
        local = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
        remote = api.list_repo_files(repo_id, repo_type="space")
        operations = [CommitOperationAdd(path_in_repo=name, path_or_fileobj=folder / name) for name in local]
        operations += [CommitOperationDelete(path_in_repo=name) for name in sorted(set(remote) - set(local))
                       if name != ".gitattributes"]
        info = api.create_commit(repo_id, operations, repo_type="space",
                                 commit_message=f"Deploy the {space} Space from zero-to-gans")
    return info.commit_url


def finished_checkpoints(root: Path) -> list[Path]:
    """The checkpoint folders under `root` whose training run completed."""
    import json

    found = []
    for folder in sorted(Path(root).iterdir()) if Path(root).is_dir() else []:
        try:
            if json.loads((folder / "metrics.json").read_text()).get("complete"):
                found.append(folder)
        except (OSError, ValueError):
            continue
    return found


def publish(org: str, checkpoints: Path, private: bool | None = None) -> dict[str, str]:
    """Push every finished checkpoint to ORG/<lesson>, then every Space to ORG/<space> wired to them."""
    sys.path.insert(0, str(ROOT))
    from training.hub import check_can_publish
    from training.hub import publish as push_checkpoint

    folders = finished_checkpoints(checkpoints)
    if not folders:
        raise SystemExit(f"error: no finished checkpoint under {checkpoints}/; train first (make train-all)")
    check_can_publish(f"{org}/{folders[0].name}")  # no token: stop before anything is uploaded
    urls = {}
    for folder in folders:
        urls[f"{org}/{folder.name}"] = push_checkpoint(folder, f"{org}/{folder.name}", private=private)
        print(f"[publish] model {org}/{folder.name}: {urls[f'{org}/{folder.name}']}", flush=True)
    for space in list_spaces():
        urls[f"spaces/{org}/{space}"] = upload(space, f"{org}/{space}", private=private, weights_org=org)
        print(f"[publish] Space {org}/{space}: https://huggingface.co/spaces/{org}/{space}", flush=True)
    return urls


def app_command(space: str) -> list[str]:
    return [sys.executable, str(space_folder(space) / "app.py")]


def serve(space: str, port: int | None) -> int:
    env = {**os.environ, **({"GRADIO_SERVER_PORT": str(port)} if port else {})}
    return subprocess.call(app_command(space), env=env)


def serve_all(first_port: int) -> int:
    """Start every Space on its own port; stop them all on Ctrl-C or when one exits."""
    processes = {}
    for offset, space in enumerate(list_spaces()):
        env = {**os.environ, "GRADIO_SERVER_PORT": str(first_port + offset)}
        processes[space] = subprocess.Popen(app_command(space), env=env)
        print(f"[spaces] {space}: http://127.0.0.1:{first_port + offset}/", flush=True)
    signal.signal(signal.SIGTERM, _interrupt)  # `kill` stops the children too
    try:
        while all(p.poll() is None for p in processes.values()):
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        for process in processes.values():
            if process.poll() is None:
                process.terminate()
        for process in processes.values():
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
    return max((p.returncode or 0) for p in processes.values())


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python spaces/deploy.py", description=__doc__.split("\n\n")[0])
    commands = p.add_subparsers(dest="command", required=True)
    commands.add_parser("list", help="list the Spaces")
    one = commands.add_parser("serve", help="serve one Space locally")
    one.add_argument("space")
    one.add_argument("--port", type=int, default=None, help="default: $GRADIO_SERVER_PORT or 7860")
    every = commands.add_parser("serve-all", help="serve every Space, on consecutive ports")
    every.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", 7860)))
    staging = commands.add_parser("stage", help="write a self-contained Space folder")
    staging.add_argument("space")
    staging.add_argument("dest", type=Path)
    staging.add_argument("--weights-org", metavar="ORG", help="serve ORG/<lesson> instead of the project's repos")
    uploading = commands.add_parser("upload", help="stage and upload to a Hub Space repo in one commit")
    uploading.add_argument("space")
    uploading.add_argument("repo_id", metavar="ORG/NAME")
    uploading.add_argument("--weights-org", metavar="ORG", help="serve ORG/<lesson> instead of the project's repos")
    uploading.add_argument("--private", action="store_true", default=None,
                           help="a private Space (default: the account's default)")
    publishing = commands.add_parser("publish", help="push every checkpoint and deploy every Space to ORG")
    publishing.add_argument("org", metavar="ORG")
    publishing.add_argument("--checkpoints", type=Path, default=ROOT / "checkpoints")
    publishing.add_argument("--private", action="store_true", default=None,
                            help="private repos (default: the account's default)")
    args = p.parse_args(argv)

    if args.command == "list":
        print("\n".join(list_spaces()))
    elif args.command == "serve":
        return serve(args.space, args.port)
    elif args.command == "serve-all":
        return serve_all(args.port)
    elif args.command == "stage":
        print(stage(args.space, args.dest, args.weights_org))
    elif args.command == "upload":
        if args.repo_id.count("/") != 1:
            raise SystemExit("error: the Space repo is ORG/NAME, e.g. your-org/digit-sketchpad")
        url = upload(args.space, args.repo_id, args.private, args.weights_org)
        print(f"[spaces] uploaded {args.space}: {url}")
    elif args.command == "publish":
        if not ORG_NAME.match(args.org):
            raise SystemExit(f"error: {args.org!r} is not a Hub user or organisation name (e.g. your-org)")
        publish(args.org, args.checkpoints, args.private)
    return 0


if __name__ == "__main__":
    sys.exit(main())
