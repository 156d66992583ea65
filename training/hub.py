"""Publish a finished checkpoint folder to a Hub model repo: the repo mirrors the folder, in one commit.

    python -m training <lesson> --push-to-hub ORG/NAME [--private]   train, then publish
    python -m training.hub checkpoints/<lesson> ORG/NAME [--private]  publish a folder already trained
    python -m training.hub checkpoints/<lesson> ORG/NAME --allow-unfinished   ... or a stopped one

Uploaded: every file of the folder except `resume/` (optimizer and RNG state for --resume)
and hidden files, with README.md's "Load it" snippet naming ORG/NAME; TensorBoard's event
files (`runs/`, with --tracker tensorboard) included, which the Hub shows as Metrics. Deleted in the same
commit: every file of the repo that the folder does not have (say `samples/epoch_012.png`
of a longer earlier run), except `.gitattributes`. One `create_commit`, so the repo goes
from its old state to the new one at once.

Visibility: `--private` creates the repo private, and refuses to upload into an existing
public repo; without it the repo gets the account's or organisation's default (public
unless the organisation says private), and an existing repo keeps its visibility.

Unfinished runs (stopped by Ctrl-C, SIGTERM or the playground's Stop) are refused unless the
caller asks for them (`allow_unfinished=True`, `--allow-unfinished`): a visitor of the
playground may want the model they stopped. Such a repo says what it is: its card opens with
where the run stopped out of how many epochs (training.card), its metrics.json has
`"complete": false` with `epochs_completed`, `step_in_epoch` and `epochs_planned`, and the
commit message says where it stopped.

The token comes from HF_TOKEN or `hf auth login`, read by huggingface_hub only. Nothing
here prints it: every error is reported as its type and first line with any token
masked. A text file that holds a path of this machine (the home, the working or the
output folder) is not published.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import sys
from pathlib import Path

from huggingface_hub import CommitOperationAdd, CommitOperationDelete, HfApi, get_token
from huggingface_hub.utils import validate_repo_id

from training.card import for_repo, stopped_at

KEEP_ON_HUB = {".gitattributes"}  # the Hub's LFS rules: never deleted
NOT_UPLOADED = ("resume/",)
TEXT_SUFFIXES = {".json", ".md", ".txt", ".yaml", ".yml", ".csv"}
REQUIRED = ("config.json", "model.safetensors", "README.md", "metrics.json")
_TOKEN_LIKE = re.compile(r"hf_[A-Za-z0-9]{8,}")


class PublishError(RuntimeError):
    """The checkpoint was not published; the message says why (never with the token)."""


def check_can_publish(repo_id: str, token: str | None = None) -> None:
    """Fail before training when publishing cannot work: a bad repo id or no token at all.

    `token`: a token to use instead of the environment's (the playground Space passes its
    visitor's OAuth token)."""
    try:
        validate_repo_id(repo_id)
    except ValueError as error:
        raise PublishError(f"{repo_id!r} is not a Hub repo id ORG/NAME ({error})") from None
    if "/" not in repo_id:
        raise PublishError(f"{repo_id!r} is not a Hub repo id ORG/NAME (the owner is missing)")
    if not (token or _token()):
        raise PublishError("publishing needs a Hugging Face token with write access: "
                           "run `hf auth login` or set HF_TOKEN")


def files_to_upload(folder: Path) -> list[str]:
    """Paths (relative, '/'-separated) of what a checkpoint folder publishes."""
    names = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    return [n for n in names if not n.startswith(NOT_UPLOADED)
            and not any(part.startswith(".") for part in n.split("/"))]


def commit_operations(folder: Path, remote: list[str], repo_id: str) -> list:
    """What one commit does to make the repo mirror the folder: adds, then deletes."""
    local = files_to_upload(folder)
    adds = [CommitOperationAdd(path_in_repo=name, path_or_fileobj=(
                for_repo((folder / name).read_text(), repo_id).encode() if name == "README.md" else folder / name))
            for name in local]
    deletes = [CommitOperationDelete(path_in_repo=name)
               for name in sorted(set(remote) - set(local) - KEEP_ON_HUB)]
    return adds + deletes


def check_folder(folder: Path, allow_unfinished: bool = False) -> None:
    """A finished checkpoint (or, with `allow_unfinished`, a stopped one), with no path of this
    machine in any text file it publishes."""
    missing = [name for name in REQUIRED if not (folder / name).is_file()]
    if missing:
        raise PublishError(f"{folder} is not a checkpoint folder ({', '.join(missing)} missing)")
    if not allow_unfinished and not json.loads((folder / "metrics.json").read_text()).get("complete"):
        raise PublishError(f"{folder} holds an unfinished run ({run_summary(folder)}); finish it with --resume "
                           "before publishing, or publish it as it is with --allow-unfinished")
    paths = {str(p) for p in (Path.home(), Path.cwd(), folder.resolve().parent) if len(p.parts) > 1}
    local_path = re.compile("|".join(re.escape(p) + r"(?![\w.-])" for p in sorted(paths, key=len, reverse=True)))
    for name in files_to_upload(folder):
        if Path(name).suffix in TEXT_SUFFIXES:
            found = local_path.search((folder / name).read_text(errors="replace"))
            if found:
                raise PublishError(f"{name} holds a path of this machine ({found[0]}); "
                                   "remove it or retrain with this version before publishing")


def stopped(folder: Path) -> str | None:
    """Where the run of an unfinished checkpoint stopped ("stopped after epoch 1 of 3"); None when
    it finished."""
    metrics = json.loads((folder / "metrics.json").read_text())
    if metrics.get("complete"):
        return None
    return "stopped " + stopped_at(metrics.get("epochs_completed", 0), metrics.get("step_in_epoch", 0),
                                   metrics.get("epochs_planned"))


def run_summary(folder: Path) -> str:
    """The run a checkpoint folder holds, for a commit message: "cpu profile" for a finished one,
    "cpu profile, stopped 12 batches into epoch 2 of 3" for a stopped one."""
    metrics = json.loads((folder / "metrics.json").read_text())
    with contextlib.suppress(OSError, ValueError, KeyError):  # a finished run's metrics name it anyway
        metrics.setdefault("profile", json.loads((folder / "training_config.json").read_text())["profile"])
    where = stopped(folder)
    return f"{metrics.get('profile', 'unknown')} profile" + (f", {where}" if where else "")


def publish(folder: Path, repo_id: str, private: bool | None = None, token: str | None = None,
            allow_unfinished: bool = False) -> str:
    """Mirror `folder` into the Hub model repo `repo_id` in one commit; the commit's URL.

    `token`: used instead of the environment's token, handed only to `HfApi(token=...)`;
    `allow_unfinished`: publish a stopped run too (see the module docstring)."""
    folder = Path(folder)
    check_can_publish(repo_id, token)
    check_folder(folder, allow_unfinished)
    api = HfApi(token=token)
    try:
        api.create_repo(repo_id, repo_type="model", private=private, exist_ok=True)
        if private and not api.repo_info(repo_id, repo_type="model").private:
            raise PublishError(f"{repo_id} exists and is public, so --private would not keep this upload "
                               "private; nothing was uploaded. Make the repo private on the Hub, or push "
                               "to another name")
        remote = api.list_repo_files(repo_id, repo_type="model")
        info = api.create_commit(repo_id, commit_operations(folder, remote, repo_id), repo_type="model",
                                 commit_message=f"Upload {folder.name} ({run_summary(folder)}) with zero-to-gans")
    except PublishError:
        raise
    except Exception as error:  # network, permissions, a bad token: say which, never the token
        first = str(error).strip().splitlines()[0] if str(error).strip() else ""
        raise PublishError(f"publishing to {repo_id} failed ({type(error).__name__}: {scrub(first, token)})") from None
    return info.commit_url


def scrub(text: str, token: str | None = None) -> str:
    """`text` with the token in use (`token`, and the environment's), and anything shaped like a
    Hub token, masked."""
    for secret in (token, _token()):
        if secret:
            text = text.replace(secret, "hf_***")
    return _TOKEN_LIKE.sub("hf_***", text)


def _token() -> str | None:
    try:
        return get_token()
    except Exception:  # an OIDC exchange that failed: as good as no token
        return None


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m training.hub", description=__doc__.split("\n\n")[0])
    p.add_argument("folder", type=Path, help="a finished checkpoint folder, e.g. checkpoints/mnist-cnn")
    p.add_argument("repo_id", metavar="ORG/NAME", help="the Hub model repo (created if missing)")
    p.add_argument("--private", action="store_true", help="create the repo private (default: the account's default)")
    p.add_argument("--allow-unfinished", action="store_true",
                   help="publish a run that was stopped before its last epoch (its card and metrics.json say "
                        "where it stopped); without it such a folder is refused")
    args = p.parse_args(argv)
    try:
        url = publish(args.folder, args.repo_id, args.private or None, allow_unfinished=args.allow_unfinished)
        print(f"published {args.folder.name} to {url}")
    except PublishError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(3)


if __name__ == "__main__":
    main()
