"""Serve, stage and deploy the Gradio Spaces in spaces/<name>/.

    python spaces/deploy.py list                              # the Spaces that exist
    python spaces/deploy.py serve digits [--port 7860]        # = python spaces/digits/app.py
    python spaces/deploy.py serve-all [--port 7860]           # every Space, on consecutive ports
    python spaces/deploy.py stage digits build/spaces/digits [--weights-org ORG]  # a self-contained Space folder
    python spaces/deploy.py upload digits your-org/digit-sketchpad [--weights-org ORG] [--private]
    python spaces/deploy.py publish your-org [--checkpoints checkpoints] [--private]  # = make publish HF_ORG=...

A staged folder is what a Space repo holds: the app folder (app.py, README.md with the Spaces
front matter, requirements.txt) plus a copy of the `shared/` package next to app.py, which
Python finds first, since a script's own folder leads its import path (in a clone, `make setup`
installs the project instead). A Space that imports more of the project says so with a line
`# vendor: training` in its requirements.txt (the playground trains with `training/`), and
that package is copied next to app.py too. Every `name==version` pin of the staged
requirements.txt is the version installed where `stage` runs (torch keeps its `+cpu` build),
so a Space runs with what the tests here ran with.

With `--weights-org ORG` the staged README's `models:` name ORG's repos instead of the
project's (`ORG/<lesson>`, what `publish` pushes), so the Space serves that account's weights.
`preload_from_hub:` (fetched when the Space is built) lists only the public ones of those
repos that exist: `upload` asks the Hub (`stage` alone never does, so it preloads nothing);
a missing repo is named on the Space's page instead of failing its build.

`upload` stages into a temporary folder and uploads it with `upload_folder`, one commit that
makes the Space repo mirror the folder (`delete_patterns`: a file gone from the folder is
deleted, `.gitattributes` stays); `publish` pushes every finished checkpoint under
checkpoints/ to ORG/<lesson> (one commit each), then uploads every Space to ORG/<space> wired
to them. The token comes from HF_TOKEN or `hf auth login` and is never printed. A Space reading
public repos needs no token. One reading private repos (`--private`, or an organisation whose
repos are private by default) needs a read token as its HF_TOKEN secret: give one in
$ZTG_SPACE_READ_TOKEN and it is set through the API (`add_space_secret`); without it nothing is
uploaded and the error says the command to run. A write token is refused: a Space holds none.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path

SPACES = Path(__file__).resolve().parent
ROOT = SPACES.parent
REQUIRED = ("app.py", "README.md", "requirements.txt")
ORG_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")
VENDOR_LINE = re.compile(r"^#\s*vendor:\s*(.+)$")
VENDORABLE = ("shared", "training")  # the project's packages a Space may ship a copy of
PIN = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)==(?P<version>\S+)$")
READ_TOKEN_VAR = "ZTG_SPACE_READ_TOKEN"  # a read token for the HF_TOKEN secret of Spaces that read private repos
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


def stage(space: str, dest: Path, weights_org: str | None = None, preload: Iterable[str] = ()) -> Path:
    """Copy spaces/<space>/ and the packages it vendors (Python files only) into `dest`, which must
    be new or empty, with its pins set to the installed versions; with `weights_org`, the README
    points at that account's model repos and preloads those of them in `preload`."""
    source = space_folder(space)
    dest = Path(dest)
    if dest.exists() and any(dest.iterdir()):
        raise SystemExit(f"error: {dest} is not empty; stage into a new folder")
    requirements = pin_installed((source / "requirements.txt").read_text(), f"spaces/{space}/requirements.txt")
    shutil.copytree(source, dest, ignore=IGNORE, dirs_exist_ok=True)
    (dest / "requirements.txt").write_text(requirements)

    def only_python(folder, names):
        return {n for n in names if (Path(folder) / n).is_file() and not n.endswith(".py")} | set(IGNORE(folder, names))

    for package in vendored(space):
        shutil.copytree(ROOT / package, dest / package, ignore=only_python)
    if weights_org is not None:
        point_at(dest / "README.md", weights_org, set(preload))
    return dest


def pin_installed(requirements: str, where: str) -> str:
    """`requirements` with every `name==version` line set to the version installed in this Python.

    A local label of the pin (torch's `+cpu`: the CPU wheel of the same release, from the extra
    index) is kept; other lines (options, comments, ranges) are left as they are."""
    from importlib import metadata

    lines = []
    for line in requirements.splitlines():
        found = PIN.match(line.strip())
        if found:
            try:
                installed = metadata.version(found["name"])
            except metadata.PackageNotFoundError:
                raise SystemExit(f"error: {where} pins {found['name']}, which is not installed here, so its "
                                 "version cannot be the tested one; install the project first (make setup)") from None
            label = found["version"].partition("+")[2]
            line = f"{found['name']}=={installed.partition('+')[0]}" + (f"+{label}" if label else "")
        elif "==" in line and not line.lstrip().startswith("#"):  # an extra or a marker: not pinned silently
            raise SystemExit(f"error: {where}: cannot pin {line.strip()!r}; write it as name==version")
        lines.append(line)
    return "\n".join(lines) + "\n"


def space_models(space: str, org: str | None = None) -> list[str]:
    """The model repos a Space's README lists under `models:`; with `org`, as ORG/<lesson>."""
    from huggingface_hub import SpaceCard

    models = SpaceCard.load(space_folder(space) / "README.md").data.models or []
    return models if org is None else for_org(models, org)


def for_org(models: list[str], org: str) -> list[str]:
    """`models:` entries (`owner/lesson[@revision]`) as ORG's repos of the same lessons."""
    if not ORG_NAME.match(org):
        raise SystemExit(f"error: --weights-org {org!r} is not a Hub user or organisation name")
    return [f"{org}/{ref.split('@')[0].split('/')[1]}" for ref in models]


def point_at(readme: Path, org: str, preload: set[str]) -> None:
    """Rewrite a Space README's `models:` to ORG/<lesson>; preload at build time those in `preload`."""
    from huggingface_hub import SpaceCard

    card = SpaceCard.load(readme)
    card.data.models = for_org(card.data.models or [], org)
    card.data.preload_from_hub = [repo for repo in card.data.models if repo in preload] or None
    card.save(readme)


class ReadTokenNeeded(SystemExit):
    """Spaces would read private model repos and no read token was given for their secret."""

    def __init__(self, spaces: str, private: list[str], kept: str):
        self.private = private
        super().__init__(f"error: {', '.join(private)} {'is' if len(private) == 1 else 'are'} private, so {spaces} "
                         f"needs a read token as its HF_TOKEN secret to load them; {kept}. Create a read token at "
                         f"https://huggingface.co/settings/tokens and run again with it in ${READ_TOKEN_VAR}")


def check_read_token(api, token: str) -> None:
    """Refuse a write token for a Space secret: a Space never holds one (fine-grained tokens pass)."""
    role = (api.whoami(token=token).get("auth") or {}).get("accessToken", {}).get("role")
    if role == "write":
        raise SystemExit(f"error: ${READ_TOKEN_VAR} is a write token; a Space's secret must be a read token "
                         "(https://huggingface.co/settings/tokens)")


def upload(space: str, repo_id: str, private: bool | None = None, weights_org: str | None = None,
           read_token: str | None = None) -> str:
    """Stage `space` and upload it to the Space repo `repo_id` as one commit; returns the commit URL.

    `private=None` leaves a new repo's visibility to the account's default. With `weights_org`,
    the Hub is asked which of ORG's repos exist (preloaded if public); if any is private,
    `read_token` becomes the Space's HF_TOKEN secret, and without one nothing is uploaded."""
    import huggingface_hub

    api = huggingface_hub.HfApi()
    found = [repo for repo in (space_models(space, weights_org) if weights_org else [])
             if api.repo_exists(repo, repo_type="model")]
    private_models = [repo for repo in found if api.repo_info(repo, repo_type="model").private]
    if private_models:
        if not read_token:
            raise ReadTokenNeeded(f"the Space {repo_id}", private_models, f"{repo_id} was not uploaded")
        check_read_token(api, read_token)
    with tempfile.TemporaryDirectory(prefix=f"space-{space}-") as tmp:
        folder = stage(space, Path(tmp) / space, weights_org, preload=set(found) - set(private_models))
        api.create_repo(repo_id, repo_type="space", space_sdk="gradio", private=private, exist_ok=True)
        if private_models:  # before the upload, so the build it starts has the secret
            api.add_space_secret(repo_id, "HF_TOKEN", read_token,
                                 description=f"read token for {', '.join(private_models)} (spaces/deploy.py)")
        # "*" with every file of the folder uploaded: the repo ends up holding exactly the folder
        # (upload_folder never deletes .gitattributes, which holds the Hub's LFS rules). One commit:
        # a staged Space is about 50 small files; upload_folder splits into several commits only past
        # about 250 (huggingface_hub's batches with hf_xet installed).
        info = api.upload_folder(repo_id=repo_id, folder_path=folder, repo_type="space", delete_patterns="*",
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


def publish(org: str, checkpoints: Path, private: bool | None = None, read_token: str | None = None) -> dict[str, str]:
    """Push every finished checkpoint to ORG/<lesson>, then every Space to ORG/<space> wired to them.

    With `private`, the model repos are private, so every Space needs `read_token` for its
    HF_TOKEN secret: without one, nothing is pushed."""
    from training.hub import check_can_publish
    from training.hub import publish as push_checkpoint

    folders = finished_checkpoints(checkpoints)
    if not folders:
        raise SystemExit(f"error: no finished checkpoint under {checkpoints}/; train first (make train-all)")
    check_can_publish(f"{org}/{folders[0].name}")  # no token: stop before anything is uploaded
    if private and not read_token:
        raise ReadTokenNeeded(f"each Space of {org}", [f"{org}/{folder.name}" for folder in folders],
                              "nothing was uploaded")
    if read_token:  # a write token is refused now, not after every model was pushed
        import huggingface_hub

        check_read_token(huggingface_hub.HfApi(), read_token)
    urls = {}
    for folder in folders:
        urls[f"{org}/{folder.name}"] = push_checkpoint(folder, f"{org}/{folder.name}", private=private)
        print(f"[publish] model {org}/{folder.name}: {urls[f'{org}/{folder.name}']}", flush=True)
    for space in list_spaces():
        urls[f"spaces/{org}/{space}"] = upload(space, f"{org}/{space}", private=private, weights_org=org,
                                               read_token=read_token)
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
    try:
        return run_command(args)
    except ReadTokenNeeded as refused:
        # The one command that does it: this one again, with a read token in the environment.
        again = shlex.join(["python", "spaces/deploy.py", *(sys.argv[1:] if argv is None else argv)])
        raise SystemExit(f"{refused.code}:\n    {READ_TOKEN_VAR}=<your read token> {again}") from None


def run_command(args) -> int:
    read_token = os.environ.get(READ_TOKEN_VAR) or None
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
        url = upload(args.space, args.repo_id, args.private, args.weights_org, read_token)
        print(f"[spaces] uploaded {args.space}: {url}")
    elif args.command == "publish":
        if not ORG_NAME.match(args.org):
            raise SystemExit(f"error: {args.org!r} is not a Hub user or organisation name (e.g. your-org)")
        publish(args.org, args.checkpoints, args.private, read_token)
    return 0


if __name__ == "__main__":
    sys.exit(main())
