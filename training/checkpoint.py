"""The checkpoint folder: a valid Hub model repo, written atomically, resumable, publishable.

    <out-dir>/<lesson>/
        config.json, model.safetensors    the published model (PyTorchModelHubMixin)
        <name>/                           other modules, e.g. a GAN's discriminator
        README.md                         model card; metrics as model-index results
        metrics.json, history.json        final metrics; one row per epoch
        training_config.json              the lesson's hyperparameters
        curves.png, ...                   plots and images the lesson adds
        resume/state.pt                   optimizer, scheduler and RNG state for --resume

Every save builds the folder under a temporary name and swaps it in with renames, so a
crash leaves either the previous checkpoint or the new one, never half of one.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import platform
import shutil
import time
from pathlib import Path

import torch

RESUME_FILE = "resume/state.pt"
CURVES_EVERY_SECONDS = 30  # drawing curves costs ~0.2 s: not after every one of 100 tiny epochs


def _old(folder: Path) -> Path:
    return folder.with_name(f".{folder.name}.old")


def existing(folder: Path) -> Path | None:
    """The checkpoint to resume from: the folder, or the previous one if a swap was cut short."""
    for candidate in (folder, _old(folder)):
        if (candidate / RESUME_FILE).is_file():
            return candidate
    return None


def load_resume_state(folder: Path) -> dict:
    found = existing(folder)
    if found is None:
        raise FileNotFoundError(f"--resume: no checkpoint in {folder}; run without --resume to start")
    return torch.load(found / RESUME_FILE, map_location="cpu", weights_only=True)


def load_weights(module: torch.nn.Module, folder: Path, name: str, first: bool) -> None:
    import safetensors.torch

    found = existing(folder)
    path = found / "model.safetensors" if first else found / name / "model.safetensors"
    safetensors.torch.load_model(module, str(path), strict=True)


def restore_rng(rng: dict) -> None:
    torch.set_rng_state(rng["cpu"])
    if torch.cuda.is_available() and rng.get("cuda"):
        torch.cuda.set_rng_state_all(rng["cuda"])


def environment(accelerator) -> dict:
    import accelerate
    import huggingface_hub
    import torchvision

    device = accelerator.device
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else _cpu_name()
    return {
        "device": f"{device.type}: {name}",
        "num_processes": accelerator.num_processes,
        "mixed_precision": accelerator.mixed_precision,
        "versions": {"python": platform.python_version(), "torch": torch.__version__,
                     "torchvision": torchvision.__version__, "accelerate": accelerate.__version__,
                     "huggingface_hub": huggingface_hub.__version__},
    }


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return f"{line.split(':', 1)[1].strip()}, {os.cpu_count()} cores"
    except OSError:
        pass
    return platform.processor() or platform.machine()


def save(run, complete: bool, metrics: dict | None, start_from_existing: bool) -> None:
    """Write the whole checkpoint folder for `run` (main process only)."""
    folder = run.folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    for stale in folder.parent.glob(f".{folder.name}.tmp-*"):
        shutil.rmtree(stale, ignore_errors=True)
    tmp = folder.with_name(f".{folder.name}.tmp-{run.epoch}-{run.step}")
    previous = existing(folder) if start_from_existing else None
    if previous is not None:  # carry forward earlier epochs' images (GAN sample grids, ...)
        shutil.copytree(previous, tmp)
    else:
        tmp.mkdir()
    write_contents(run, tmp, complete, metrics)
    swap_in(tmp, folder)


def write_contents(run, tmp: Path, complete: bool, metrics: dict | None) -> None:
    unwrap = run.accelerator.unwrap_model
    for i, (name, module) in enumerate(run.models.items()):
        target = tmp if i == 0 else tmp / name
        (target / "README.md").unlink(missing_ok=True)  # else the mixin keeps the old card
        unwrap(module).save_pretrained(target)
        (target / "README.md").unlink()  # ours is written below, from the metrics
    (tmp / "resume").mkdir(exist_ok=True)
    torch.save({
        "epoch": run.epoch, "step": run.step, "history": run.history,
        "train_seconds": run.train_seconds, "samples_seen": run.samples_seen,
        "states": {name: obj.state_dict() for name, obj in {**run.optimizers, **run.schedulers}.items()},
        "rng": {"cpu": torch.get_rng_state(),
                "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []},
    }, tmp / RESUME_FILE)
    _write_json(tmp / "training_config.json", {"lesson": run.lesson, "profile": run.profile,
                                                "config": dataclasses.asdict(run.config)})
    _write_json(tmp / "history.json", run.history)
    status = {"complete": complete, "epochs_completed": run.epoch, "step_in_epoch": run.step}
    if metrics is None and (tmp / "metrics.json").exists():
        metrics = {k: v for k, v in json.loads((tmp / "metrics.json").read_text()).items()
                   if k not in status}
    _write_json(tmp / "metrics.json", {**(metrics or {}), **status})
    if run.history and (complete or time.monotonic() - run.curves_drawn_at > CURVES_EVERY_SECONDS):
        from training.plots import plot_curves

        run.pending_files.setdefault("curves.png", plot_curves(run.history, run.lesson))
        run.curves_drawn_at = time.monotonic()
    for name, content in run.pending_files.items():
        write_file(tmp / name, content)
    from training.card import model_card

    model_card(run, metrics or {}, complete).save(tmp / "README.md")


def swap_in(tmp: Path, folder: Path) -> None:
    old = _old(folder)
    if old.exists():
        shutil.rmtree(old)
    if folder.exists():
        folder.rename(old)
    # A crash here leaves only `old`: `existing()` then resumes from it.
    tmp.rename(folder)
    shutil.rmtree(old, ignore_errors=True)


def write_file(path: Path, content) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif isinstance(content, str):
        path.write_text(content)
    elif hasattr(content, "savefig"):  # a matplotlib figure
        import matplotlib.pyplot as plt

        content.savefig(path, dpi=100, bbox_inches="tight")
        plt.close(content)
    elif hasattr(content, "save"):  # a PIL image
        buffer = io.BytesIO()
        content.save(buffer, format=path.suffix.lstrip(".").upper().replace("JPG", "JPEG"),
                     **({"save_all": True} if getattr(content, "n_frames", 1) > 1 else {}))
        path.write_bytes(buffer.getvalue())
    else:
        raise TypeError(f"cannot write {type(content).__name__} to {path}")


def _write_json(path: Path, value) -> None:
    path.write_text(json.dumps(value, indent=2) + "\n")


def push_to_hub(folder: Path, repo_id: str, private: bool = False) -> str:
    """Upload the checkpoint folder as one commit. The token comes from HF_TOKEN or `hf auth login`."""
    from huggingface_hub import HfApi

    api = HfApi()
    api.create_repo(repo_id, repo_type="model", private=private, exist_ok=True)
    info = api.upload_folder(repo_id=repo_id, folder_path=folder, repo_type="model",
                             commit_message=f"Upload {folder.name} from zero-to-gans",
                             ignore_patterns=["resume/*", "resume/**"])
    return info.commit_url
