"""The small pieces every lesson's loop is made of: one `Run` per training run.

A lesson builds its models and optimizers, hands them to `run.prepare`, and writes its own
loop over `run.epochs()` and `run.batches(...)`. Checkpoints are written where the lesson says
so: `run.save_checkpoint()` after each `run.end_epoch(...)`, and `run.finish(...)` at the end;
the one write without a call of its own is a stop's (SIGINT, SIGTERM, `request_stop()`), which
`batches` honours after the current batch by saving and raising `TrainingStopped`, since a stop
arrives from outside the loop and must not wait for the epoch's end. What each call does
besides what its name says, in one place:

- `prepare(publish=NAME, **objects)`: hands models and optimizers to Accelerate (an optimizer
  comes back as Accelerate's wrapper, without its per-step Python where it has nothing to do:
  `PlainStepOptimizer`) and keeps LR
  schedulers (anything else is a TypeError naming it); on --resume restores each one's
  weights or state (looked up by its keyword name) and the RNG state.
  The module named by `publish` is the checkpoint's root (what the Hub and the Spaces load);
  every other module goes to a subfolder named after its keyword. One model: no `publish`.
- `keep(**modules)`: modules the lesson updates itself, never by a gradient (moving averages
  of the weights): moved to the device, saved and restored by name like prepared ones, but
  not handed to Accelerate, so no DDP wrapper, gradient hooks or broadcasts in a multi-process
  run. Call it before `prepare`, whose `publish` may then name one of them.
- `epochs()`: yields the epoch numbers still to run, after those a resumed run already did.
- `batches(data, batch_size)`: this process's share of the epoch. `batch_size` is the global
  batch, split over the processes (so 1 or N processes train the same recipe). `data` is a
  TensorData, or a DataLoader prepared by Accelerate (shuffled in an order seeded by the seed
  and the epoch, so a resumed epoch skips the batches it already trained on with
  `skip_first_batches`). Besides batching it counts `run.step` (in the epoch) and
  `run.global_step` (in the run), and every `CHECK_EVERY` batches it checks the logged means
  for NaN, logs them to the tracker and, in a multi-process run, asks whether any process was
  asked to stop: all three wait for the device, so not every step. Where stderr is a terminal
  a tqdm bar shows the epoch; elsewhere (a log file, CI, `nohup`, a notebook's `!python`) the
  main process prints a line every `progress_every` seconds (30 by default): the batch, the
  running means, img/s, and the time left in the epoch, the run and, under `all`, the job. On
  SIGINT/SIGTERM (or `request_stop()`) it saves a mid-epoch checkpoint and raises
  `TrainingStopped`: after the current batch with one process, at the next multiple of
  `CHECK_EVERY` batches with several (they must agree on the batch), or, when none of those
  comes before the epoch's end, in `save_checkpoint`.
- `micro_batches(model, inputs, labels, size)`: a batch in parts of `size` for forward and
  backward passes whose gradients add up to the batch's (each part's loss times its share);
  in a multi-process run the gradients are all-reduced once, after the last part.
- `log_step(**scalars)`: adds per-batch scalars on the device (no sync).
- `end_epoch(**metrics)`: averages the logged scalars over processes, stops on a non-finite
  value, appends a history row, prints it and logs it to a tracker; it writes nothing. Tracker
  rows (the checks' running means under `step/`, the epoch rows under their names) share one
  x-axis, `global_step`.
- `save_checkpoint()`: writes the checkpoint the next epoch starts from (or resumes from),
  then raises `TrainingStopped` if a stop was asked for since the last check, so a run only
  ever stops right after a write. `epochs()` refuses to start another epoch before the last
  one was ended and saved. With `--tracker tensorboard` the event files are copied into the
  checkpoint's `runs/` at every save (the Hub shows them in its Metrics tab).
- `finish(**metrics)`: writes the final checkpoint with the metrics and returns them.

Watching a run from outside (the training playground Space): `Run(..., on_progress=f)` calls
`f(row)` from `batches` once `ROW_EVERY` seconds have passed since the last row
(`row["kind"] == "step"`: the epoch's running means, a fractional `epoch`, samples/s; a clock
read per batch and one wait for the device per row, not per step; with several processes, at
the `CHECK_EVERY` checks instead), and from `save_checkpoint` after every epoch's write
(`"epoch"`: the history row); `run.request_stop()` stops it like a SIGTERM, from any thread.
`run.published_model` is the module the checkpoint's root holds.

The checkpoint itself is written by `training.checkpoint` from a `Snapshot` the Run hands it;
besides the modules, optimizers, schedulers and RNG it holds Accelerate's loss scaler
(`accelerator.scaler`, fp16 on a GPU), so a resumed fp16 run keeps its loss scale.

Randomness: each process seeds its global RNG with `seed + process index` (augmentation and
dropout differ across processes; DDP copies rank 0's initial weights to all), and every
process's RNG state is saved, so a resumed multi-process run equals an uninterrupted one.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import math
import os
import re
import shutil
import signal
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.optimizer import AcceleratedOptimizer
from accelerate.utils import DataLoaderConfiguration, DistributedType, gather_object, set_seed
from tqdm.auto import tqdm

from training import checkpoint
from training.data import TensorData
from training.report import JobPlace, duration, human

CHECK_EVERY = 50  # batches between NaN and multi-process stop checks (each one waits for the device)
# Seconds between on_progress rows at most, whatever the batch size: at batch 1024 an MNIST epoch
# is 48 batches, fewer than one CHECK_EVERY, and a slow step may take a second.
ROW_EVERY = 1.0
CURVES_EVERY_SECONDS = 30  # drawing curves costs ~0.2 s: not after every one of 100 tiny epochs
PROGRESS_EVERY = 30  # seconds between progress lines where stderr is no terminal


class TrainingStopped(Exception):
    """Raised after a checkpoint was saved because SIGINT or SIGTERM asked the run to stop."""


class NonFiniteLoss(RuntimeError):
    """A loss became NaN or infinite: the run stops and publishes nothing."""


def make_accelerator(mixed_precision: str | None, tracker: str | None, out_dir: Path, seed: int = 0) -> Accelerator:
    """The Accelerator of a run. Precision: --mixed-precision, else what `accelerate launch` says
    (its --mixed_precision, else its config file), else bf16 on a GPU that has it. A shuffled
    DataLoader it prepares draws its order from `seed` + the epoch, the same in every process."""
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
    # Tracker logs are written beside the checkpoint folders (those are replaced every epoch) and
    # copied into them at every save (Run._tensorboard_files).
    return Accelerator(mixed_precision=mixed_precision, log_with=tracker, project_dir=str(Path(out_dir) / "logs"),
                       dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True, data_seed=seed))


class PlainStepOptimizer(AcceleratedOptimizer):
    """Accelerate's optimizer wrapper for a run where it only passes the calls on: no loss scaler
    (fp16), no XLA. `step` and `zero_grad` do what Accelerate's do in that case (the wrapped
    optimizer's, only when `sync_gradients`; `zero_grad` sets to None unless told not to) without
    the Python around them: two package lookups for the LOMO optimizers in every `step`, an
    `inspect.signature` in every `zero_grad`. That was about 0.2 ms a step, a fifth of
    mnist-mlp's whole step on a 2-core CPU (1.27x faster without; the README's MNIST bench)."""

    def step(self, closure=None):
        if self.gradient_state.sync_gradients:
            self.optimizer.step(closure)

    def zero_grad(self, set_to_none=None):
        if self.gradient_state.sync_gradients:
            self.optimizer.zero_grad(set_to_none=set_to_none is not False)


def plain_step(optimizer, accelerator: Accelerator):
    """`optimizer` (prepared by `accelerator`) as a PlainStepOptimizer where it has nothing else to do."""
    lomo = type(optimizer.optimizer).__module__.startswith("lomo_optim")  # Accelerate's step skips those
    if (type(optimizer) is AcceleratedOptimizer and optimizer.scaler is None and not lomo
            and accelerator.distributed_type != DistributedType.XLA):
        optimizer.__class__ = PlainStepOptimizer  # the same object: Accelerate's own list keeps it
    return optimizer


class Run:
    def __init__(self, lesson: str, task: dict, config, profile: str, data_dir: Path,
                 out_dir: Path, accelerator: Accelerator, saved: checkpoint.Saved | None = None,
                 on_progress: Callable[[dict], None] | None = None, progress_every: float = PROGRESS_EVERY,
                 job: JobPlace | None = None):
        """`saved`: the checkpoint to continue from (`checkpoint.load`), for --resume;
        `on_progress`: called with each progress row (see the module docstring);
        `progress_every`: seconds between progress lines without a terminal; `job`: the lesson's
        place in `python -m training all`, for those lines."""
        self._started = time.perf_counter()  # the lesson's wall clock (wall_seconds) starts here
        self.lesson, self.task, self.config, self.profile = lesson, task, config, profile
        self.data_dir, self.accelerator = Path(data_dir), accelerator
        self.folder = Path(out_dir) / lesson
        self.seed = getattr(config, "seed", 0)
        self.progress = saved.progress if saved is not None else checkpoint.Progress()
        self.models, self.optimizers, self.schedulers = {}, {}, {}
        self.published: str | None = None
        self.pending_files: dict[str, object] = {}
        self._saved = saved
        # A resumed run's earlier sessions (a checkpoint from before wall_seconds existed: at least its training).
        self._wall_before = max(self.progress.wall_seconds, self.progress.train_seconds)
        self._on_progress = on_progress
        self.progress_every, self.job = progress_every, job
        self._have_checkpoint = saved is not None
        self._unsaved_row: dict | None = None  # end_epoch's row until save_checkpoint writes it
        self._curves_drawn_at = float("-inf")
        self._reported_at = time.monotonic()  # when the last progress row went out
        self._sums: dict[str, torch.Tensor] = defaultdict(lambda: torch.zeros((), device=self.device))
        self._count = 0
        self._stop_requested = False
        self._batch_sizes: dict[str, int] = {}
        set_seed(self.seed, device_specific=True)  # seed + process index: each process its own stream
        if saved is not None and saved.scaler and accelerator.scaler is not None:
            accelerator.scaler.load_state_dict(saved.scaler)
        if saved is None and self.is_main and "tensorboard" in {str(t) for t in accelerator.log_with}:
            # A fresh run's event files only: a resumed run adds its own to those it continues.
            shutil.rmtree(Path(out_dir) / "logs" / lesson, ignore_errors=True)
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
        """Hand models and optimizers to Accelerate, keep LR schedulers, and restore all three on --resume.

        Returns the objects in the order given (None passes through, for optional modules).
        `publish` names the module the checkpoint's root holds; it may be given in any call.
        """
        prepared = []
        for name, obj in objects.items():
            if obj is None:
                prepared.append(None)
                continue
            if isinstance(obj, torch.nn.Module):
                self._restore_weights(name, obj)
                obj = self.models[name] = self.accelerator.prepare(obj)
            elif isinstance(obj, torch.optim.Optimizer):
                obj = self.optimizers[name] = plain_step(self.accelerator.prepare(obj), self.accelerator)
            elif isinstance(obj, torch.optim.lr_scheduler.LRScheduler):
                # They step once per batch of this process; Accelerate must not rescale them.
                self.schedulers[name] = obj
            else:
                raise TypeError(f"run.prepare({name}=...) got a {type(obj).__name__}; it takes models "
                                "(torch.nn.Module), optimizers (torch.optim.Optimizer) and LR schedulers "
                                "(torch.optim.lr_scheduler.LRScheduler)")
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

    def keep(self, **modules):
        """Modules the lesson updates itself (a moving average of the weights): on the device, saved
        and restored by name, never handed to Accelerate. Returns them in the order given (None
        passes through)."""
        kept = []
        for name, module in modules.items():
            if module is not None:
                self._restore_weights(name, module)
                module = self.models[name] = module.to(self.device).requires_grad_(False)
            kept.append(module)
        return kept[0] if len(kept) == 1 else kept

    def _restore_weights(self, name: str, module: torch.nn.Module) -> None:
        if self._saved is not None:
            self._saved.load_weights(module, name)

    # ---- the loop ----------------------------------------------------------------------

    def epochs(self):
        """Yield the epochs still to run (1-based), after any restored by --resume; each must close
        with `end_epoch(...)` and `save_checkpoint()` before the next one starts."""
        while self.epoch < self.config.epochs:
            self._epoch_start = time.perf_counter()
            self._epoch_train_seconds, self._epoch_samples = 0.0, 0
            started = self.epoch
            yield self.epoch + 1
            if self.epoch == started or self._unsaved_row is not None:
                raise RuntimeError(f"{self.lesson}: epoch {started + 1} did not end with run.end_epoch(...) "
                                   "and run.save_checkpoint(); a resumed run starts from that checkpoint")

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
        on) or a DataLoader prepared by Accelerate (its sampler set to the epoch, so its
        order is seeded the same way, and on --resume the trained batches skipped by
        `skip_first_batches`). See the module docstring for the NaN checks, the progress lines
        and the checkpoint on a stop request.
        """
        world, progress = self.accelerator.num_processes, self.progress
        if isinstance(data, TensorData):
            steps = self.steps_per_epoch(data, batch_size, drop_last)
            source = self._tensor_batches(data, self.local_batch(batch_size), shuffle, steps)
        else:
            data.set_epoch(self.epoch)  # the seedable sampler's order: seed + epoch (make_accelerator)
            steps = len(data)
            source = self.accelerator.skip_first_batches(data, progress.step) if progress.step else data
        epoch = self.epoch + 1
        bar = tqdm(total=steps, initial=progress.step, unit="batch", desc=f"epoch {epoch}/{self.config.epochs}",
                   disable=not (self.is_main and sys.stderr.isatty()), leave=False, dynamic_ncols=True)
        lines = self.is_main and not sys.stderr.isatty()
        start = time.perf_counter()
        next_line, first_step = time.monotonic() + self.progress_every, progress.step
        try:
            for inputs, labels in source:
                yield inputs, labels
                progress.step += 1
                progress.global_step += 1
                self._epoch_samples += len(inputs) * world
                bar.update()
                now = time.monotonic()  # one clock read per batch: no device wait
                if lines and now >= next_line:
                    self._progress_line(epoch, steps, progress.step - first_step, time.perf_counter() - start)
                    next_line = now + self.progress_every
                check_due = progress.step % CHECK_EVERY == 0
                # By the clock with one process only: several must all-reduce their means at the same batch.
                report_due = world == 1 and self._on_progress is not None and now - self._reported_at >= ROW_EVERY
                if (check_due or report_due) and self._count:
                    means = self._means()
                    self._check_finite(means)
                    speed = self._epoch_samples / (time.perf_counter() - start)
                    bar.set_postfix(means | {"img/s": round(speed)}, refresh=False)
                    self.accelerator.log({**{f"step/train_{k}": v for k, v in means.items()},
                                          "step/samples_per_second": speed}, step=progress.global_step)
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

    def _progress_line(self, epoch: int, steps: int, batches: int, seconds: float) -> None:
        """One line on stderr: where the epoch is, this process's running means, and the time left."""
        per_batch = seconds / max(batches, 1)
        epoch_left = (steps - self.step) * per_batch
        run_left = epoch_left + (self.config.epochs - epoch) * self._epoch_seconds(steps * per_batch)
        running = {k: (v / self._count).item() for k, v in sorted(self._sums.items())} if self._count else {}
        parts = [f"[{self.lesson}] epoch {epoch}/{self.config.epochs}", f"batch {human(self.step)}/{human(steps)}",
                 *(f"{k} {human(v)}" for k, v in running.items()),
                 f"{human(round(self._epoch_samples / max(seconds, 1e-9)))} img/s",
                 f"epoch left {duration(epoch_left)}", f"run left {duration(run_left)}"]
        if self.job is not None:
            parts.append(self.job.progress(run_left))
        print("  ".join(parts), file=sys.stderr, flush=True)

    def _epoch_seconds(self, batches_only: float) -> float:
        """How long an epoch takes: as long as the last finished ones (evaluation and checkpoint
        included), else its batches at the current pace."""
        seconds = [row["epoch_seconds"] for row in self.history[-3:] if "epoch_seconds" in row]
        return sum(seconds) / len(seconds) if seconds else batches_only

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
            batch = data.subset(index)
            yield batch.inputs, batch.labels

    def micro_batches(self, model, inputs: torch.Tensor, labels: torch.Tensor, size: int):
        """Yield (inputs, labels, share) parts of one batch, `size` images each (0: the batch whole).

        Scale each part's mean loss by its share before `accelerator.backward`, and the gradients
        add up to the whole batch's mean loss's: the optimizer still steps once per batch. Batchnorm
        layers then normalise each part by its own statistics. Why: on a CPU a forward and backward pass over
        a few hundred images runs faster per image than one over thousands (1.9-2.0x for airbench's
        network at 250 against 2,000; the README's speedrun section).
        In a multi-process run the gradients are all-reduced after the last part only.
        """
        parts = list(zip(inputs.split(size or len(inputs)), labels.split(size or len(inputs)), strict=True))
        for number, (part, part_labels) in enumerate(parts, 1):
            with self.accelerator.no_sync(model) if number < len(parts) else contextlib.nullcontext():
                yield part, part_labels, len(part) / len(inputs)

    def log_step(self, **scalars: torch.Tensor) -> None:
        """Accumulate per-batch scalars (losses, D(x), ...) on the device: no sync per step."""
        for key, value in scalars.items():
            self._sums[key] += value.detach().float()
        self._count += 1

    def end_epoch(self, **metrics) -> dict:
        """Close an epoch: average the logged scalars over processes, print and log them; return the
        history row. Writes nothing: `save_checkpoint()` comes next."""
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
               "train_seconds": round(progress.train_seconds, 2),  # so far: time-to-accuracy curves
               "wall_seconds": round(self._wall(), 2)}  # the same, evaluation included
        progress.history.append(row)
        self._sums.clear()
        self._count = 0
        shown = "  ".join(f"{k} {human(v)}" for k, v in row.items() if k != "epoch")
        run_left = (self.config.epochs - self.epoch) * self._epoch_seconds(0.0)
        if self.epoch < self.config.epochs:
            shown += f"  run left {duration(run_left)}"
        if self.job is not None:
            shown += f"  ({self.job.progress(run_left)})"
        self.print(f"[{self.lesson}] epoch {self.epoch}/{self.config.epochs}  {shown}")
        self.accelerator.log(row, step=progress.global_step)
        self._unsaved_row = row
        return row

    def save_checkpoint(self) -> None:
        """Write the checkpoint a resumed run starts from (the state after `end_epoch`), tell
        `on_progress` the epoch's row, then stop here (`TrainingStopped`) if a stop was asked for."""
        self._save(complete=False)
        row, self._unsaved_row = self._unsaved_row, None
        if row is not None and self._on_progress is not None:
            self._reported_at = time.monotonic()
            self._on_progress({"kind": "epoch", **row})
        if self.epoch < self.config.epochs and self._stop_agreed():
            raise TrainingStopped(f"stopped after epoch {self.epoch}")

    def finish(self, **final_metrics) -> dict:
        """Write the final checkpoint (weights, card, metrics, curves) and return the metrics."""
        self._check_finite(final_metrics)
        progress = self.progress
        metrics = {
            **final_metrics,
            "epochs": self.epoch,
            "train_seconds": round(progress.train_seconds, 2),
            # Up to the final checkpoint's write (which itself is not counted): data, evaluation included.
            "wall_seconds": round(self._wall(), 2),
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
        scaler = self.accelerator.scaler
        return checkpoint.Snapshot(
            lesson=self.lesson, profile=self.profile, task=self.task, config=dataclasses.asdict(self.config),
            progress=dataclasses.replace(self.progress, history=list(self.history)),
            published=self.published or next(iter(self.models)),
            modules={name: unwrap(module) for name, module in self.models.items()},
            states=states, rng=rng, files=dict(self.pending_files),
            scaler=scaler.state_dict() if scaler is not None else None,
            complete=complete, metrics=metrics)

    def _wall(self) -> float:
        """Seconds of this lesson so far: since the Run was made, plus a resumed run's earlier sessions."""
        return self._wall_before + time.perf_counter() - self._started

    def _save(self, complete: bool, metrics: dict | None = None) -> None:
        self._check_finite(self._means())
        self.progress.wall_seconds = self._wall()
        rng = gather_object([checkpoint.rng_state()])  # every process's, in process order
        if self.is_main:
            if self.history and (complete or time.monotonic() - self._curves_drawn_at > CURVES_EVERY_SECONDS):
                from training.plots import plot_curves

                self.pending_files.setdefault("curves.png", plot_curves(self.history, self.lesson))
                self._curves_drawn_at = time.monotonic()
            self.pending_files.update(self._tensorboard_files())
            checkpoint.save(self.folder, self.snapshot(complete, rng, metrics), carry_over=self._have_checkpoint)
        self._have_checkpoint = True
        self.pending_files = {}
        self.accelerator.wait_for_everyone()

    def _tensorboard_files(self) -> dict[str, bytes]:
        """The TensorBoard event files so far, as the checkpoint's runs/ (the Hub's Metrics tab).

        The writer keeps its files open beside the checkpoint folder, which every save replaces,
        so each save copies them in; the machine's name leaves the file names."""
        if "tensorboard" not in {tracker.name for tracker in self.accelerator.trackers}:
            return {}
        tracker = self.accelerator.get_tracker("tensorboard")
        tracker.writer.flush()
        root = Path(tracker.logging_dir)
        return {"runs/" + re.sub(r"(tfevents\.\d+)\..+(\.\d+\.\d+)$", r"\1.host\2", p.relative_to(root).as_posix()):
                p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}
