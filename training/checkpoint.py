"""The checkpoint folder: a valid Hub model repo, written atomically, resumable, publishable.

    <out-dir>/<lesson>/
        config.json, model.safetensors    the published model (PyTorchModelHubMixin)
        <name>/                           every other module, under the name it was prepared with
        README.md                         model card (training.card); model-index only on a Hub dataset
        metrics.json, history.json        final metrics and where the run stands (complete,
                                          epochs_completed of epochs_planned); one row per epoch
        training_config.json              the lesson's hyperparameters
        curves.png, ...                   plots and images the lesson adds
        runs/                             TensorBoard event files, with --tracker tensorboard
        resume/state.pt                   progress, optimizer, scheduler, loss-scaler and RNG
                                          state for --resume

Data flows one way: `Run` hands `save` a `Snapshot` of plain values; `load` reads a folder
back as a `Saved` that the command line hands to the next `Run`. Nothing here reaches into
a Run. Every save builds the folder under a temporary name and swaps it in with renames, so
a crash leaves either the previous checkpoint or the new one, never half of one.
Publishing the folder to the Hub is `training.hub`'s job.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import platform
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import torch

RESUME_FILE = "resume/state.pt"


@dataclass
class Progress:
    """Where a run stands: what a resumed run starts from."""

    epoch: int = 0  # epochs completed
    step: int = 0  # batches done in the epoch in progress (0 at an epoch's end)
    global_step: int = 0  # batches done since the run started, over every epoch
    train_seconds: float = 0.0
    wall_seconds: float = 0.0  # the lesson's time so far, from its Run's creation: data, evaluation, checkpoints
    samples_seen: int = 0
    history: list[dict] = field(default_factory=list)  # one row per completed epoch


@dataclass
class Snapshot:
    """Everything one checkpoint holds, as plain values (modules unwrapped from Accelerate)."""

    lesson: str
    profile: str
    task: dict
    config: dict
    progress: Progress
    published: str  # the module written at the root of the folder; the others go to <name>/
    modules: dict[str, torch.nn.Module]
    states: dict[str, dict]  # optimizers' and schedulers' state_dicts, by name
    rng: list[dict]  # one per process, in process order
    files: dict[str, object]  # images, figures, bytes or text the lesson added since the last save
    complete: bool = False
    metrics: dict | None = None  # final metrics (complete), else carried over from the last save
    scaler: dict | None = None  # Accelerate's loss scaler (fp16 on a GPU), else None


@dataclass
class Saved:
    """A checkpoint read back for --resume."""

    folder: Path
    lesson: str
    profile: str
    config: dict
    progress: Progress
    published: str
    states: dict[str, dict]
    rng: list[dict]
    scaler: dict | None = None

    def load_weights(self, module: torch.nn.Module, name: str) -> None:
        """Restore the weights `module` had when it was saved under `name` (strict, safetensors)."""
        import safetensors.torch

        path = self.folder / ("" if name == self.published else name) / "model.safetensors"
        if not path.is_file():
            raise FileNotFoundError(f"--resume: {path} is missing; the checkpoint in {self.folder} holds "
                                    "other modules than this run prepares")
        safetensors.torch.load_model(module, str(path), strict=True)


def _old(folder: Path) -> Path:
    return folder.with_name(f".{folder.name}.old")


def existing(folder: Path) -> Path | None:
    """The checkpoint to resume from: the folder, or the previous one if a swap was cut short."""
    for candidate in (folder, _old(folder)):
        if (candidate / RESUME_FILE).is_file():
            return candidate
    return None


def _resumable(folder: Path) -> Path:
    found = existing(folder)
    if found is None:
        raise FileNotFoundError(f"--resume: no checkpoint in {folder}; run without --resume to start")
    return found


def settings(folder: Path) -> dict:
    """The lesson, profile and config a run left in `folder`, without reading its weights and states."""
    return json.loads((_resumable(folder) / "training_config.json").read_text())


def load(folder: Path) -> Saved:
    """Read the checkpoint a run left in `folder` (or its previous copy) for --resume."""
    found = _resumable(folder)
    saved = json.loads((found / "training_config.json").read_text())
    state = torch.load(found / RESUME_FILE, map_location="cpu", weights_only=True)
    return Saved(folder=found, lesson=saved["lesson"], profile=saved["profile"], config=saved["config"],
                 progress=Progress(**state["progress"]), published=state["published"],
                 states=state["states"], rng=state["rng"], scaler=state.get("scaler"))


def save(folder: Path, snapshot: Snapshot, carry_over: bool) -> None:
    """Write the whole checkpoint folder (main process only).

    With `carry_over`, files of the previous checkpoint that this snapshot does not replace
    (earlier epochs' sample grids, figures) are kept.
    """
    folder.parent.mkdir(parents=True, exist_ok=True)
    for stale in folder.parent.glob(f".{folder.name}.tmp-*"):
        shutil.rmtree(stale, ignore_errors=True)
    progress = snapshot.progress
    tmp = folder.with_name(f".{folder.name}.tmp-{progress.epoch}-{progress.step}")
    previous = existing(folder) if carry_over else None
    if previous is not None:
        shutil.copytree(previous, tmp)
    else:
        tmp.mkdir()
    write_contents(tmp, snapshot)
    swap_in(tmp, folder)


def write_contents(tmp: Path, snapshot: Snapshot) -> None:
    for name, module in snapshot.modules.items():
        target = tmp if name == snapshot.published else tmp / name
        (target / "README.md").unlink(missing_ok=True)  # else the mixin keeps the old card
        module.save_pretrained(target)
        (target / "README.md").unlink()  # ours is written below, from the metrics
    (tmp / "resume").mkdir(exist_ok=True)
    torch.save({"progress": dataclasses.asdict(snapshot.progress), "published": snapshot.published,
                "states": snapshot.states, "rng": snapshot.rng, "scaler": snapshot.scaler}, tmp / RESUME_FILE)
    _write_json(tmp / "training_config.json", {"lesson": snapshot.lesson, "profile": snapshot.profile,
                                                "config": snapshot.config})
    _write_json(tmp / "history.json", snapshot.progress.history)
    # Where the run stands, beside the metrics: a stopped run's folder (which can be published on
    # purpose) says how far it got out of how far it was meant to go.
    status = {"complete": snapshot.complete, "epochs_completed": snapshot.progress.epoch,
              "step_in_epoch": snapshot.progress.step, "epochs_planned": snapshot.config.get("epochs")}
    metrics = snapshot.metrics
    if metrics is None and (tmp / "metrics.json").exists():
        metrics = {k: v for k, v in json.loads((tmp / "metrics.json").read_text()).items() if k not in status}
    _write_json(tmp / "metrics.json", {**(metrics or {}), **status})
    for name, content in snapshot.files.items():
        write_file(tmp / name, content)
    from training.card import model_card

    model_card(snapshot, metrics or {}).save(tmp / "README.md")


def swap_in(tmp: Path, folder: Path) -> None:
    old = _old(folder)
    if old.exists():
        shutil.rmtree(old)
    if folder.exists():
        folder.rename(old)
    # A crash here leaves only `old`: `existing()` then resumes from it.
    tmp.rename(folder)
    shutil.rmtree(old, ignore_errors=True)


def rng_state() -> dict:
    """This process's random state (CPU and every GPU)."""
    return {"cpu": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}


def restore_rng(rngs: list[dict], process_index: int) -> None:
    """Restore this process's state from the list saved by every process (cycled if there were fewer)."""
    rng = rngs[process_index % len(rngs)]
    torch.set_rng_state(rng["cpu"])
    if torch.cuda.is_available() and rng.get("cuda"):
        torch.cuda.set_rng_state_all(rng["cuda"])


def environment(accelerator) -> dict:
    import accelerate
    import huggingface_hub
    import torchvision

    device = accelerator.device
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_name()
    return {
        "device": f"{device.type}: {name}",
        "num_processes": accelerator.num_processes,
        "mixed_precision": accelerator.mixed_precision,
        "versions": {"python": platform.python_version(), "torch": torch.__version__,
                     "torchvision": torchvision.__version__, "accelerate": accelerate.__version__,
                     "huggingface_hub": huggingface_hub.__version__},
    }


def cpu_name() -> str:
    """The CPU's model and cores, its bf16 units (whether --mixed-precision bf16 pays: 2.1-2.6x
    with AMX) and PyTorch's threads: what a time measured on it depends on."""
    try:
        info = dict(line.split(":", 1) for line in Path("/proc/cpuinfo").read_text().splitlines() if ":" in line)
        info = {key.strip(): value.strip() for key, value in info.items()}
    except OSError:
        info = {}
    if "model name" not in info:
        return platform.processor() or platform.machine()
    flags = set(info.get("flags", "").split())
    bf16 = "AMX bf16" if "amx_bf16" in flags else "AVX-512 bf16" if "avx512_bf16" in flags else "no bf16 units"
    return f"{info['model name']}, {os.cpu_count()} cores, {bf16}, {torch.get_num_threads()} threads"


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

