"""The small pieces every lesson's loop is made of: one `Run` per training run.

A lesson builds its models and optimizers, hands them to `run.prepare`, and writes its
own loop over `run.epochs()` and `run.batches(...)`. The Run owns what is the same in
every lesson: the Accelerator, seeding, progress, NaN checks, per-epoch checkpoints,
stopping on SIGINT/SIGTERM, and `--resume`.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import math
import signal
import sys
import time
from collections import defaultdict
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from tqdm.auto import tqdm

from training import checkpoint
from training.data import TensorData


class TrainingStopped(Exception):
    """Raised after a checkpoint was saved because SIGINT or SIGTERM asked the run to stop."""


class NonFiniteLoss(RuntimeError):
    """A loss became NaN or infinite: the run stops and publishes nothing."""


def make_accelerator(mixed_precision: str | None, tracker: str | None, out_dir: Path) -> Accelerator:
    # None leaves the choice to `accelerate launch` / `accelerate config`; on a GPU we default to bf16.
    if mixed_precision is None and torch.cuda.is_available() and torch.cuda.is_bf16_supported():
        import os

        if "ACCELERATE_MIXED_PRECISION" not in os.environ:
            mixed_precision = "bf16"
    if mixed_precision == "fp16" and not torch.cuda.is_available():
        raise ValueError("--mixed-precision fp16 needs a CUDA GPU; on a CPU use bf16 or no")
    if tracker is not None and importlib.util.find_spec(tracker) is None:
        # Accelerate would drop an unavailable tracker with only a warning.
        raise ValueError(f"--tracker {tracker} needs the {tracker} package: pip install -e '.[tracking]'")
    # Tracker logs go beside the checkpoint folders, not into them: those are replaced every epoch.
    return Accelerator(mixed_precision=mixed_precision, log_with=tracker, project_dir=str(Path(out_dir) / "logs"))


class Run:
    def __init__(self, lesson: str, task: dict, config, profile: str, data_dir: Path,
                 out_dir: Path, accelerator: Accelerator, resume: bool = False):
        self.lesson, self.task, self.config, self.profile = lesson, task, config, profile
        self.data_dir, self.accelerator = Path(data_dir), accelerator
        self.folder = Path(out_dir) / lesson
        self.seed = getattr(config, "seed", 0)
        self.history: list[dict] = []
        self.epoch, self.step = 0, 0  # epochs completed; batches done in the current epoch
        self.train_seconds, self.samples_seen = 0.0, 0
        self.models, self.optimizers, self.schedulers = {}, {}, {}
        self.pending_files: dict[str, object] = {}
        self.curves_drawn_at = float("-inf")
        self._sums: dict[str, torch.Tensor] = defaultdict(lambda: torch.zeros((), device=self.device))
        self._count = 0
        self._stop_requested = False
        self._resume_state = checkpoint.load_resume_state(self.folder) if resume else None
        self._have_checkpoint = self._resume_state is not None
        set_seed(self.seed)
        if self._resume_state is not None:
            self.history = self._resume_state["history"]
            self.epoch, self.step = self._resume_state["epoch"], self._resume_state["step"]
            self.train_seconds = self._resume_state["train_seconds"]
            self.samples_seen = self._resume_state["samples_seen"]
        if accelerator.log_with:  # hparams must be scalars for TensorBoard: lists become strings
            hparams = {k: v if isinstance(v, (int, float, str, bool)) else str(v)
                       for k, v in dataclasses.asdict(config).items()}
            accelerator.init_trackers(lesson, config=hparams | {"profile": profile})
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self._request_stop)

    # ---- setup -------------------------------------------------------------------------

    @property
    def device(self) -> torch.device:
        return self.accelerator.device

    @property
    def is_main(self) -> bool:
        return self.accelerator.is_main_process

    def print(self, *args) -> None:
        self.accelerator.print(*args)

    def to_device(self, data: TensorData) -> TensorData:
        return data.to(self.device)

    def prepare(self, **objects):
        """Hand models and optimizers to Accelerate, keep schedulers, and restore them on --resume.

        Order and names matter: the first module prepared is the published weights (the root of
        the checkpoint folder); later modules go to subfolders named after their keywords.
        """
        prepared = []
        for name, obj in objects.items():
            if isinstance(obj, torch.nn.Module):
                if self._resume_state is not None:
                    checkpoint.load_weights(obj, self.folder, name, first=not self.models)
                obj = self.accelerator.prepare(obj)
                self.models[name] = obj
            elif isinstance(obj, torch.optim.Optimizer):
                obj = self.accelerator.prepare(obj)
                self.optimizers[name] = obj
            else:  # LR schedulers step once per batch of this process; Accelerate must not rescale them.
                self.schedulers[name] = obj
            if self._resume_state is not None and name in self._resume_state["states"]:
                obj.load_state_dict(self._resume_state["states"][name])
            prepared.append(obj)
        if self._resume_state is not None:
            checkpoint.restore_rng(self._resume_state["rng"])
        return prepared[0] if len(prepared) == 1 else prepared

    # ---- the loop ----------------------------------------------------------------------

    def epochs(self):
        """Yield the epochs still to run (1-based), after any restored by --resume."""
        while self.epoch < self.config.epochs:
            self._epoch_start = time.perf_counter()
            self._epoch_train_seconds, self._epoch_samples = 0.0, 0
            yield self.epoch + 1
            self.step = 0

    def steps_per_epoch(self, data: TensorData, batch_size: int, drop_last: bool = True) -> int:
        per_process = len(data) // self.accelerator.num_processes
        return per_process // batch_size if drop_last else math.ceil(per_process / batch_size)

    def batches(self, data, batch_size: int | None = None, shuffle: bool = True, drop_last: bool = True):
        """This process's share of one epoch, as (inputs, labels) batches on the device.

        `data` is a TensorData (indexed in a seeded order that depends only on the seed and
        the epoch, so a resumed run sees the same batches and skips those already trained
        on) or a DataLoader prepared by Accelerate (iterated as it is).
        """
        world = self.accelerator.num_processes
        if isinstance(data, TensorData):
            steps = self.steps_per_epoch(data, batch_size, drop_last)
            source = self._tensor_batches(data, batch_size, shuffle, steps)
        else:
            steps, source = len(data), iter(data)
            self.step = 0  # a DataLoader restarts its epoch on resume
        epoch = self.epoch + 1
        bar = tqdm(total=steps, initial=self.step, unit="batch", desc=f"epoch {epoch}/{self.config.epochs}",
                   disable=not (self.is_main and sys.stderr.isatty()), leave=False, dynamic_ncols=True)
        start = time.perf_counter()
        try:
            for inputs, labels in source:
                yield inputs, labels
                self.step += 1
                self._epoch_samples += len(inputs) * world
                bar.update()
                if self._count and self.step % 50 == 0:
                    means = self._means()
                    self._check_finite(means)
                    bar.set_postfix(means | {"img/s": round(self._epoch_samples / (time.perf_counter() - start))},
                                    refresh=False)
                if self._stop_agreed():
                    self._epoch_train_seconds += time.perf_counter() - start
                    self._save(complete=False)
                    raise TrainingStopped(f"stopped in epoch {epoch} after {self.step} batches")
        finally:
            bar.close()
        self._epoch_train_seconds += time.perf_counter() - start

    def _tensor_batches(self, data: TensorData, batch_size: int, shuffle: bool, steps: int):
        world, rank = self.accelerator.num_processes, self.accelerator.process_index
        if shuffle:
            seed = self.seed * 10_007 + self.epoch + 1
            order = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed))
        else:
            order = torch.arange(len(data))
        order = order[: len(order) // world * world][rank::world].to(data.inputs.device)
        for step in range(self.step, steps):
            index = order[step * batch_size:(step + 1) * batch_size]
            yield data.inputs[index], data.labels[index]

    def log_step(self, **scalars: torch.Tensor) -> None:
        """Accumulate per-batch scalars (losses, D(x), ...) on the device: no sync per step."""
        for key, value in scalars.items():
            self._sums[key] += value.detach().float()
        self._count += 1

    def end_epoch(self, **metrics) -> dict:
        """Close an epoch: average the logged scalars over processes, print, log and checkpoint."""
        means = self._means()
        self._check_finite(means | metrics)
        self.train_seconds += self._epoch_train_seconds
        self.samples_seen += self._epoch_samples
        self.epoch += 1
        row = {"epoch": self.epoch, **{f"train_{k}": v for k, v in means.items()}, **metrics,
               "epoch_seconds": round(time.perf_counter() - self._epoch_start, 3),
               "samples_per_second": round(self._epoch_samples / max(self._epoch_train_seconds, 1e-9), 1)}
        self.history.append(row)
        self._sums.clear()
        self._count = 0
        shown = "  ".join(f"{k} {_fmt(v)}" for k, v in row.items() if k != "epoch")
        self.print(f"[{self.lesson}] epoch {self.epoch}/{self.config.epochs}  {shown}")
        self.accelerator.log(row, step=self.epoch)
        self._save(complete=False)
        return row

    def finish(self, **final_metrics) -> dict:
        """Write the final checkpoint (weights, card, metrics, curves) and return the metrics."""
        self._check_finite(final_metrics)
        metrics = {
            **final_metrics,
            "epochs": self.epoch,
            "train_seconds": round(self.train_seconds, 2),
            "samples_per_second": round(self.samples_seen / max(self.train_seconds, 1e-9), 1),
            **checkpoint.environment(self.accelerator),
            "profile": self.profile,
            "seed": self.seed,
        }
        self._save(complete=True, metrics=metrics)
        for tracker in self.accelerator.trackers:  # not end_training(): `all` goes on to the next lesson
            tracker.finish()
        return metrics

    def add_file(self, name: str, content) -> None:
        """Write a PIL image, a matplotlib figure, bytes or text into the next checkpoint."""
        self.pending_files[name] = content

    # ---- internals ---------------------------------------------------------------------

    def _means(self) -> dict[str, float]:
        if not self._count:
            return {}
        keys = sorted(self._sums)
        stacked = torch.stack([self._sums[k] for k in keys] + [torch.tensor(float(self._count), device=self.device)])
        total = self.accelerator.reduce(stacked, reduction="sum")
        return {k: (total[i] / total[-1]).item() for i, k in enumerate(keys)}

    def _check_finite(self, values: dict) -> None:
        bad = {k: v for k, v in values.items() if isinstance(v, float) and not math.isfinite(v)}
        if bad:
            raise NonFiniteLoss(
                f"{self.lesson}: non-finite values {bad} in epoch {self.epoch + 1}; training stopped "
                "and nothing was saved or published. Lower the learning rate (--lr=...) or check the data.")

    def _request_stop(self, signum, frame) -> None:
        if self._stop_requested:  # a second Ctrl-C means: stop now, without a checkpoint
            raise KeyboardInterrupt
        self._stop_requested = True
        self.print(f"\n[{self.lesson}] {signal.Signals(signum).name}: saving a checkpoint after this batch")

    def _stop_agreed(self) -> bool:
        if self.accelerator.num_processes == 1:
            return self._stop_requested
        # Every process must stop at the same batch, or the others would hang in the next all-reduce.
        flag = torch.tensor(float(self._stop_requested), device=self.device)
        return bool(self.accelerator.reduce(flag, reduction="sum").item() > 0)

    def _save(self, complete: bool, metrics: dict | None = None) -> None:
        self._check_finite(self._means())
        self.accelerator.wait_for_everyone()
        if self.is_main:
            checkpoint.save(self, complete=complete, metrics=metrics, start_from_existing=self._have_checkpoint)
        self._have_checkpoint = True
        self.pending_files = {}
        self.accelerator.wait_for_everyone()


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)
