"""Serve, stage and deploy the Gradio Spaces in spaces/<name>/.

    python spaces/deploy.py list                              # the Spaces that exist
    python spaces/deploy.py serve digits [--port 7860]        # = python spaces/digits/app.py
    python spaces/deploy.py serve-all [--port 7860]           # every Space, on consecutive ports
    python spaces/deploy.py stage digits build/spaces/digits  # a self-contained Space folder
    python spaces/deploy.py upload digits your-org/digit-sketchpad [--private]

A staged folder is what a Space repo holds: the app folder (app.py, README.md with the Spaces
front matter, requirements.txt) plus a copy of the `shared/` package next to app.py, which the
app puts first on its import path. `upload` stages into a temporary folder and uploads it as one
commit; the token comes from HF_TOKEN or `hf auth login` and is never printed. A Space itself
needs no token: it only reads public model repos.
"""

from __future__ import annotations

import argparse
import os
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


def stage(space: str, dest: Path) -> Path:
    """Copy spaces/<space>/ and shared/ (Python files only) into `dest`, which must be new or empty."""
    source = space_folder(space)
    dest = Path(dest)
    if dest.exists() and any(dest.iterdir()):
        raise SystemExit(f"error: {dest} is not empty; stage into a new folder")
    shutil.copytree(source, dest, ignore=IGNORE, dirs_exist_ok=True)

    def only_python(folder, names):
        return {n for n in names if (Path(folder) / n).is_file() and not n.endswith(".py")} | set(IGNORE(folder, names))

    shutil.copytree(ROOT / "shared", dest / "shared", ignore=only_python)
    return dest


def upload(space: str, repo_id: str, private: bool = False) -> str:
    """Stage `space` and upload it to the Space repo `repo_id` as one commit; returns the commit URL."""
    from huggingface_hub import HfApi

    api = HfApi()
    with tempfile.TemporaryDirectory(prefix=f"space-{space}-") as tmp:
        folder = stage(space, Path(tmp) / space)
        api.create_repo(repo_id, repo_type="space", space_sdk="gradio", private=private, exist_ok=True)
        info = api.upload_folder(
            repo_id=repo_id, repo_type="space", folder_path=folder,
            commit_message=f"Deploy the {space} Space from zero-to-gans",
            delete_patterns=["*.py"],  # Python files removed since the last deploy go too
        )
    return info.commit_url


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
    uploading = commands.add_parser("upload", help="stage and upload to a Hub Space repo in one commit")
    uploading.add_argument("space")
    uploading.add_argument("repo_id", metavar="ORG/NAME")
    uploading.add_argument("--private", action="store_true")
    args = p.parse_args(argv)

    if args.command == "list":
        print("\n".join(list_spaces()))
    elif args.command == "serve":
        return serve(args.space, args.port)
    elif args.command == "serve-all":
        return serve_all(args.port)
    elif args.command == "stage":
        print(stage(args.space, args.dest))
    elif args.command == "upload":
        if args.repo_id.count("/") != 1:
            raise SystemExit("error: the Space repo is ORG/NAME, e.g. your-org/digit-sketchpad")
        print(f"[spaces] uploaded {args.space}: {upload(args.space, args.repo_id, args.private)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
