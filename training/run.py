"""The small pieces every lesson's loop is made of: one `Run` per training run.

A lesson builds its models and optimizers, hands them to `run.prepare`, and writes its own
loop over `run.epochs()` and `run.batches(...)`. What each call does besides what its name
says, in one place:

- `prepare(publish=NAME, **objects)`: hands models and optimizers to Accelerate; on --resume
  restores each one's weights or state (looked up by its keyword name) and the RNG state.
  The module named by `publish` is the checkpoint's root (what the Hub and the Spaces load);
  every other module goes to a subfolder named after its keyword. One model: no `publish`.
- `epochs()`: yields the epoch numbers still to run, after those a resumed run already did.
- `batches(data, batch_size)`: this process's share of the epoch. `batch_size` is the global
  batch, split over the processes (so 1 or N processes train the same recipe). Besides
  batching it counts `run.step` (in the epoch) and `run.global_step` (in the run), and every
  `CHECK_EVERY` batches it checks the logged means for NaN and, in a multi-process run,
  whether any process was asked to stop: both wait for the device, so not every step. On
  SIGINT/SIGTERM (or `request_stop()`) it saves a mid-epoch checkpoint and raises
  `TrainingStopped`: after the current batch with one process, at the next multiple of
  `CHECK_EVERY` batches with several (they must agree on the batch), or at the epoch's end.
- `log_step(**scalars)`: adds per-batch scalars on the device (no sync).
- `end_epoch(**metrics)`: averages the logged scalars over processes, stops on a non-finite
  value, appends a history row, prints it, logs it to a tracker, and writes a checkpoint;
  then raises `TrainingStopped` if a stop was asked for since the last check.
- `finish(**metrics)`: writes the final checkpoint with the metrics and returns them.

Watching a run from outside (the training playground Space): `Run(..., on_progress=f)` calls
`f(row)` from `batches` once `PROGRESS_EVERY_SECONDS` have passed since the last row
(`row["kind"] == "step"`: the epoch's running means, a fractional `epoch`, samples/s; a clock
read per batch, and one wait for the device per row, not per step; with several processes, at
the `CHECK_EVERY` checks), and after every epoch's
checkpoint (`"epoch"`: the history row); `run.request_stop()` stops it like a SIGTERM, from
any thread. `run.published_model` is the module the checkpoint's root holds.

The checkpoint itself is written by `training.checkpoint` from a `Snapshot` the Run hands it.

Randomness: each process seeds its global RNG with `seed + process index` (augmentation and
dropout differ across processes; DDP copies rank 0's initial weights to all), and every
process's RNG state is saved, so a resumed multi-process run equals an uninterrupted one.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import math
import os
import signal
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.utils import gather_object, set_seed
from tqdm.auto import tqdm

from training import checkpoint
from training.data import TensorData

CHECK_EVERY = 50  # batches between NaN and multi-process stop checks (each one waits for the device)
# A progress row at least this often, whatever the batch size: at batch 1024 an MNIST epoch is
# 48 batches, fewer than one CHECK_EVERY, and a slow step may take a second.
PROGRESS_EVERY_SECONDS = 1.0
CURVES_EVERY_SECONDS = 30  # drawing curves costs ~0.2 s: not after every one of 100 tiny epochs


class TrainingStopped(Exception):
    """Raised after a checkpoint was saved because SIGINT or SIGTERM asked the run to stop."""


class NonFiniteLoss(RuntimeError):
    """A loss became NaN or infinite: the run stops and publishes nothing."""


def make_accelerator(mixed_precision: str | None, tracker: str | None, out_dir: Path) -> Accelerator:
    """The Accelerator of a run. Precision: --mixed-precision, else what `accelerate launch` says
    (its --mixed_precision, else its config file), else bf16 on a GPU that has it."""
    launched = os.environ.get("ACCELERATE_MIXED_PRECISION")  # `accelerate launch` always sets it
    bf16_gpu = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if mixed_precision is None and launched is None and bf16_gpu:
        mixed_precision = "bf16"
    if mixed_precision is None and launched == "no" and bf16_gpu:
        print("note: training in full precision because `accelerate launch` was given no precision; "
              "use --config_file configs/accelerate/one_gpu.yaml (bf16) or --mixed_precision bf16", file=sys.stderr)
    if mixed_precision == "fp16" and not torch.cuda.is_available():
        raise ValueError("--mixed-precision fp16 needs a CUDA GPU; on a CPU use bf16 or no")
    if tracker is not None and importlib.util.find_spec(tracker) is None:
        # Accelerate would drop an unavailable tracker with only a warning.
        raise ValueError(f"--tracker {tracker} needs the {tracker} package: pip install -e '.[tracking]'")
    # Tracker logs go beside the checkpoint folders, not into them: those are replaced every epoch.
    return Accelerator(mixed_precision=mixed_precision, log_with=tracker, project_dir=str(Path(out_dir) / "logs"))


class Run:
    def __init__(self, lesson: str, task: dict, config, profile: str, data_dir: Path,
                 out_dir: Path, accelerator: Accelerator, saved: checkpoint.Saved | None = None,
                 on_progress: Callable[[dict], None] | None = None):
        """`saved`: the checkpoint to continue from (`checkpoint.load`), for --resume;
        `on_progress`: called with each progress row (see the module docstring)."""
        self.lesson, self.task, self.config, self.profile = lesson, task, config, profile
        self.data_dir, self.accelerator = Path(data_dir), accelerator
        self.folder = Path(out_dir) / lesson
        self.seed = getattr(config, "seed", 0)
        self.progress = saved.progress if saved is not None else checkpoint.Progress()
        self.models, self.optimizers, self.schedulers = {}, {}, {}
        self.published: str | None = None
        self.pending_files: dict[str, object] = {}
        self._saved = saved
        self._on_progress = on_progress
        self._have_checkpoint = saved is not None
        self._curves_drawn_at = float("-inf")
        self._reported_at = time.monotonic()  # when the last progress row went out
        self._sums: dict[str, torch.Tensor] = defaultdict(lambda: torch.zeros((), device=self.device))
        self._count = 0
        self._stop_requested = False
        self._batch_sizes: dict[str, int] = {}
        set_seed(self.seed, device_specific=True)  # seed + process index: each process its own stream
        if accelerator.log_with:  # hparams must be scalars for TensorBoard: lists become strings
            hparams = {k: v if isinstance(v, (int, float, str, bool)) else str(v)
                       for k, v in dataclasses.asdict(config).items()}
            accelerator.init_trackers(lesson, config=hparams | {"profile": profile})
        if threading.current_thread() is threading.main_thread():  # a thread (a Space) stops by request_stop
            for sig in (signal.SIGINT, signal.SIGTERM):
                signal.signal(sig, self._on_signal)

    # ---- setup -------------------------------------------------------------------------

    @property
    def device(self) -> torch.device:
        return self.accelerator.device

    @property
    def is_main(self) -> bool:
        return self.accelerator.is_main_process

    @property
    def epoch(self) -> int:
        """Epochs completed."""
        return self.progress.epoch

    @property
    def step(self) -> int:
        """Batches done in the epoch in progress."""
        return self.progress.step

    @property
    def global_step(self) -> int:
        """Batches done since the run started: inside a batch, the 0-based index of that batch."""
        return self.progress.global_step

    @property
    def history(self) -> list[dict]:
        return self.progress.history

    @property
    def published_model(self) -> torch.nn.Module:
        """The unwrapped module the checkpoint's root holds: `prepare(publish=...)`'s, or the only model."""
        return self.accelerator.unwrap_model(self.models[self.published or next(iter(self.models))])

    def print(self, *args) -> None:
        self.accelerator.print(*args)

    def to_device(self, data: TensorData) -> TensorData:
        return data.to(self.device)

    def prepare(self, publish: str | None = None, **objects):
        """Hand models and optimizers to Accelerate, keep schedulers, and restore all three on --resume.

        Returns the objects in the order given (None passes through, for optional modules).
        `publish` names the module the checkpoint's root holds; it may be given in any call.
        """
        prepared = []
        for name, obj in objects.items():
            if obj is None:
                prepared.append(None)
                continue
            if isinstance(obj, torch.nn.Module):
                if self._saved is not None:
                    self._saved.load_weights(obj, name)
                obj = self.models[name] = self.accelerator.prepare(obj)
            elif isinstance(obj, torch.optim.Optimizer):
                obj = self.optimizers[name] = self.accelerator.prepare(obj)
            else:  # LR schedulers step once per batch of this process; Accelerate must not rescale them.
                self.schedulers[name] = obj
            if self._saved is not None and name in self._saved.states:
                obj.load_state_dict(self._saved.states[name])
            prepared.append(obj)
        if publish is not None:
            if publish not in self.models:
                raise ValueError(f"publish={publish!r} names no prepared model; models: {', '.join(self.models)}")
            self.published = publish
        if self._saved is not None:
            checkpoint.restore_rng(self._saved.rng, self.accelerator.process_index)
        return prepared[0] if len(prepared) == 1 else prepared

    # ---- the loop ----------------------------------------------------------------------

    def epochs(self):
        """Yield the epochs still to run (1-based), after any restored by --resume."""
        while self.epoch < self.config.epochs:
            self._epoch_start = time.perf_counter()
            self._epoch_train_seconds, self._epoch_samples = 0.0, 0
            yield self.epoch + 1

    def local_batch(self, batch_size: int) -> int:
        """This process's part of a global batch of `batch_size` (a clear error if it does not divide)."""
        world = self.accelerator.num_processes
        if batch_size % world:
            raise ValueError(f"--batch_size={batch_size} is the global batch and must divide evenly over "
                             f"{world} processes; use a multiple of {world}")
        self._batch_sizes = {"batch_size": batch_size, "batch_size_per_process": batch_size // world}
        return batch_size // world

    def steps_per_epoch(self, data: TensorData, batch_size: int, drop_last: bool = True) -> int:
        """Optimizer steps in one epoch over `data` at a global batch of `batch_size`."""
        per_process, local = len(data) // self.accelerator.num_processes, self.local_batch(batch_size)
        return per_process // local if drop_last else math.ceil(per_process / local)

    def batches(self, data, batch_size: int | None = None, shuffle: bool = True, drop_last: bool = True):
        """This process's share of one epoch, as (inputs, labels) batches on the device.

        `data` is a TensorData (indexed in a seeded order that depends only on the seed and
        the epoch, so a resumed run sees the same batches and skips those already trained
        on) or a DataLoader prepared by Accelerate (iterated as it is). See the module
        docstring for the NaN checks and the checkpoint on a stop request.
        """
        world, progress = self.accelerator.num_processes, self.progress
        if isinstance(data, TensorData):
            steps = self.steps_per_epoch(data, batch_size, drop_last)
            source = self._tensor_batches(data, self.local_batch(batch_size), shuffle, steps)
        else:  # a DataLoader cannot skip ahead: a resumed epoch restarts from its first batch
            steps, source = len(data), iter(data)
            progress.global_step -= progress.step
            progress.step = 0
        epoch = self.epoch + 1
        bar = tqdm(total=steps, initial=progress.step, unit="batch", desc=f"epoch {epoch}/{self.config.epochs}",
                   disable=not (self.is_main and sys.stderr.isatty()), leave=False, dynamic_ncols=True)
        start = time.perf_counter()
        try:
            for inputs, labels in source:
                yield inputs, labels
                progress.step += 1
                progress.global_step += 1
                self._epoch_samples += len(inputs) * world
                bar.update()
                check_due = progress.step % CHECK_EVERY == 0
                # By the clock with one process only: several must all-reduce their means at the same batch.
                report_due = world == 1 and self._on_progress is not None and \
                    time.monotonic() - self._reported_at >= PROGRESS_EVERY_SECONDS
                if (check_due or report_due) and self._count:
                    means = self._means()
                    self._check_finite(means)
                    speed = self._epoch_samples / (time.perf_counter() - start)
                    bar.set_postfix(means | {"img/s": round(speed)}, refresh=False)
                    if self._on_progress is not None:
                        self._reported_at = time.monotonic()
                        self._on_progress({"kind": "step", "epoch": epoch - 1 + progress.step / steps,
                                           **{f"train_{k}": v for k, v in means.items()},
                                           "samples_per_second": speed})
                if (check_due or world == 1) and self._stop_agreed():
                    self._epoch_train_seconds += time.perf_counter() - start
                    progress.train_seconds += self._epoch_train_seconds
                    progress.samples_seen += self._epoch_samples
                    self._save(complete=False)
                    raise TrainingStopped(f"stopped in epoch {epoch} after {progress.step} batches")
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
        progress = self.progress
        progress.train_seconds += self._epoch_train_seconds
        progress.samples_seen += self._epoch_samples
        # The checkpoint holds the state the next epoch starts from: epoch done, no batch of the next.
        progress.epoch += 1
        progress.step = 0
        row = {"epoch": self.epoch, **{f"train_{k}": v for k, v in means.items()}, **metrics,
               "epoch_seconds": round(time.perf_counter() - self._epoch_start, 3),
               "samples_per_second": round(self._epoch_samples / max(self._epoch_train_seconds, 1e-9), 1),
               "train_seconds": round(progress.train_seconds, 2)}  # so far: time-to-accuracy curves
        progress.history.append(row)
        self._sums.clear()
        self._count = 0
        shown = "  ".join(f"{k} {_fmt(v)}" for k, v in row.items() if k != "epoch")
        self.print(f"[{self.lesson}] epoch {self.epoch}/{self.config.epochs}  {shown}")
        self.accelerator.log(row, step=self.epoch)
        self._save(complete=False)
        if self._on_progress is not None:
            self._reported_at = time.monotonic()
            self._on_progress({"kind": "epoch", **row})
        if self.epoch < self.config.epochs and self._stop_agreed():
            raise TrainingStopped(f"stopped after epoch {self.epoch}")
        return row

    def finish(self, **final_metrics) -> dict:
        """Write the final checkpoint (weights, card, metrics, curves) and return the metrics."""
        self._check_finite(final_metrics)
        progress = self.progress
        metrics = {
            **final_metrics,
            "epochs": self.epoch,
            "train_seconds": round(progress.train_seconds, 2),
            "samples_per_second": round(progress.samples_seen / max(progress.train_seconds, 1e-9), 1),
            **checkpoint.environment(self.accelerator),
            **self._batch_sizes,
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

    def request_stop(self) -> None:
        """Ask the run to save a checkpoint and stop after the current batch (as SIGTERM does)."""
        self._stop_requested = True

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

    def _on_signal(self, signum, frame) -> None:
        # A second Ctrl-C means: stop now, without a checkpoint. A SIGTERM never does: a launcher
        # (torchrun, accelerate launch) forwards one after the user's Ctrl-C reached its workers.
        if self._stop_requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.request_stop()
        self.print(f"\n[{self.lesson}] {signal.Signals(signum).name}: saving a checkpoint after this batch")

    def _stop_agreed(self) -> bool:
        if self.accelerator.num_processes == 1:
            return self._stop_requested
        # Every process must stop at the same batch, or the others would hang in the next all-reduce.
        flag = torch.tensor(float(self._stop_requested), device=self.device)
        return bool(self.accelerator.reduce(flag, reduction="sum").item() > 0)

    def snapshot(self, complete: bool, rng: list[dict], metrics: dict | None = None) -> checkpoint.Snapshot:
        """This run's state as plain values, for `checkpoint.save`; `rng`: every process's RNG state."""
        if self.published is None and len(self.models) > 1:
            raise ValueError(f"{self.lesson}: several models prepared ({', '.join(self.models)}); "
                             "name the published one with run.prepare(..., publish=NAME)")
        unwrap = self.accelerator.unwrap_model
        states = {name: obj.state_dict() for name, obj in {**self.optimizers, **self.schedulers}.items()}
        return checkpoint.Snapshot(
            lesson=self.lesson, profile=self.profile, task=self.task, config=dataclasses.asdict(self.config),
            progress=dataclasses.replace(self.progress, history=list(self.history)),
            published=self.published or next(iter(self.models)),
            modules={name: unwrap(module) for name, module in self.models.items()},
            states=states, rng=rng, files=dict(self.pending_files),
            complete=complete, metrics=metrics)

    def _save(self, complete: bool, metrics: dict | None = None) -> None:
        self._check_finite(self._means())
        rng = gather_object([checkpoint.rng_state()])  # every process's, in process order
        if self.is_main:
            if self.history and (complete or time.monotonic() - self._curves_drawn_at > CURVES_EVERY_SECONDS):
                from training.plots import plot_curves

                self.pending_files.setdefault("curves.png", plot_curves(self.history, self.lesson))
                self._curves_drawn_at = time.monotonic()
            checkpoint.save(self.folder, self.snapshot(complete, rng, metrics), carry_over=self._have_checkpoint)
        self._have_checkpoint = True
        self.pending_files = {}
        self.accelerator.wait_for_everyone()


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)
