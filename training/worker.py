"""A lesson run in a child process of its own: how the playground Space trains a visitor's settings.

    worker = Worker("mnist-logistic", ["--epochs=2"], profile="cpu", data_dir=..., out_dir=..., max_seconds=120)
    worker.start()                 # waits until the previous worker of this server has exited
    for kind, value, picture in worker.events(): ...   # ("row", row, picture data) ..., then the end
    worker.stop()                  # from any thread: "Stop", or the visitor left

The child is a fresh interpreter (multiprocessing `spawn`): nothing of the server is shared but
two one-way pipes, so a run that hangs, leaks memory or crashes takes only itself down, and its
memory goes back to the system when it exits. It builds the run with `training.cli.make_run`
exactly as `python -m training` does (the Run seeds it: `set_seed` in the child, not the
server), sets its own torch threads, and sends every progress row, with the lesson's picture
data after each epoch (`PLAYGROUND.picture.take`), then its end: ("done", metrics),
("stopped", None) or ("failed", a message for the visitor).

The standby. Starting that interpreter and importing torch, Accelerate and the lessons takes
seconds (most of the wait before a visitor's first curve point), so once `keep_standby()` was
called a child is started ahead of time: it imports all that and then waits, doing nothing,
for its run's job on its control pipe. `start()` hands the job to it (or to a fresh child
when there is none, or it died); when a run's child has exited, the next standby is started
(not sooner: its imports would take the cores from the run). A standby is only ever given a
job under the one-at-a-time lock, after the previous child has exited, so it never trains
beside another run; one that dies while it waits is replaced (after STANDBY_RETRY seconds,
doubling while they keep dying, so a broken install does not spin), and one whose server is
gone reads the end of its control pipe and exits.

The wall-clock cap is the server's: at `max_seconds` (or on `stop()`) the child is asked to
stop after its current batch (it saves a checkpoint and ends, as on SIGTERM at the command
line); still alive STOP_GRACE seconds later it gets SIGTERM, which ends it at once, and
KILL_GRACE seconds after that SIGKILL. A supervising thread does this whether or not anyone
reads the events, and joins the child before it reports the end, so a run never outlives its
cap plus the graces, and the next `start()` only returns once the previous child has exited.
A child that dies without saying why (killed by the system for memory, say) ends as "failed";
whatever checkpoint it had written by then stays on disk.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import multiprocessing.connection
import os
import queue
import re
import signal
import sys
import threading
import time
from pathlib import Path

# What the server's log says of each child (read back by the tests and the load bench).
LOG_LINE = re.compile(r"\[playground\] worker (\d+) \(([\w-]+)\) (started|exited with code -?\d+) at ([\d.]+)")
STOP_GRACE = 3.0  # seconds from the stop request to SIGTERM (a stop saves a checkpoint first)
KILL_GRACE = 1.0  # seconds from SIGTERM to SIGKILL
STANDBY_RETRY = 1.0  # seconds before replacing a standby that died while it waited (then 2, 4, ... 300)
ONE_AT_A_TIME = threading.Lock()  # held from a child's start until it has exited
_SPAWNING = threading.Lock()


class Worker:
    def __init__(self, lesson: str, overrides: list[str], *, profile: str, data_dir: Path, out_dir: Path,
                 max_seconds: float, threads: int | None = None):
        self.lesson, self.out_dir, self.max_seconds = lesson, Path(out_dir), max_seconds
        threads = threads or len(os.sched_getaffinity(0))  # one run at a time: it may use every core
        self._job = dict(lesson=lesson, overrides=list(overrides), profile=profile, data_dir=str(data_dir),
                         out_dir=str(out_dir), threads=threads)
        self._events: queue.Queue = queue.Queue()
        self.process = None
        self.started = self.ended = None  # time.time() of the child's start and of its exit (joined)
        self.stop_reason: str | None = None  # "Stop" (the visitor) or "the time limit"
        self.forced = False  # ended by a signal of ours: it did not stop when asked
        self._stop_sent = self._terminated = None
        self._finished = threading.Event()

    @property
    def checkpoint(self) -> Path:
        return self.out_dir / self.lesson

    @property
    def alive(self) -> bool:
        return self.process is not None and not self._finished.is_set()

    def start(self) -> None:
        """Hand the run to the standby (or a fresh child) once the previous child has exited (blocks
        until then)."""
        ONE_AT_A_TIME.acquire()
        try:
            child = STANDBY.take()
            try:
                child.control.send(self._job)
            except OSError:  # it died between the look and the send: the visitor never knows
                child.discard()
                child = _Child()
                child.control.send(self._job)
            self.process, self._rows, self._control = child.process, child.rows, child.control
        except BaseException:
            ONE_AT_A_TIME.release()
            raise
        self.started, self._clock = time.time(), time.monotonic()
        if self._stop_sent is not None:  # asked before it started (the visitor left while waiting)
            self._stop_sent = self._clock
            self._control.send("stop")
        print(f"[playground] worker {self.process.pid} ({self.lesson}) started at {self.started:.3f}",
              file=sys.stderr, flush=True)
        threading.Thread(target=self._supervise, name=f"supervise-{self.lesson}", daemon=True).start()

    def stop(self, reason: str = "Stop") -> None:
        """Ask the run to stop after its current batch (and, if it does not, end it)."""
        if self._stop_sent is not None:
            return
        self.stop_reason, self._stop_sent = reason, time.monotonic()
        if self.process is not None:  # else start() sends it
            with contextlib.suppress(OSError):  # the child is gone already
                self._control.send("stop")

    def events(self):
        """(kind, value, picture data) as the child sends them, then the end, once the child has
        exited: ("done", metrics, None), ("stopped", None, None) or ("failed", message, None)."""
        while True:
            event = self._events.get()
            yield event
            if event[0] != "row":
                return

    def wait(self, timeout: float | None = None) -> bool:
        return self._finished.wait(timeout)

    # ---- the supervising thread ----------------------------------------------------------

    def _supervise(self) -> None:
        end = None
        try:
            while True:
                self._enforce_cap()
                if not self._rows.poll(0.1):
                    continue
                try:
                    kind, value, picture = self._rows.recv()
                except (EOFError, OSError):  # the child exited (a message cut short by a kill too)
                    break
                if kind == "row":
                    self._events.put((kind, value, picture))
                else:
                    end = (kind, value)
            while self.process.is_alive():  # end of file came first: it is exiting, or wedged
                self._enforce_cap()
                self.process.join(0.1)
            self.process.join()
            self.ended = time.time()
            print(f"[playground] worker {self.process.pid} ({self.lesson}) exited with code "
                  f"{self.process.exitcode} at {self.ended:.3f}", file=sys.stderr, flush=True)
        finally:
            if self.process.is_alive():  # this thread failed: the guarantee holds all the same
                self.process.kill()
                self.process.join()
            self._rows.close()
            self._control.close()
            try:  # before the next run may start: it takes this standby
                STANDBY.replenish()
            except Exception as error:  # noqa: BLE001  (the next run starts a fresh child instead)
                print(f"[playground] no standby: {type(error).__name__}: {error}", file=sys.stderr, flush=True)
            ONE_AT_A_TIME.release()
            self._events.put((*self._outcome(end), None))
            self._finished.set()

    def _enforce_cap(self) -> None:
        now = time.monotonic()
        if self._stop_sent is None and now - self._clock > self.max_seconds:
            self.stop("the time limit")
        if self._stop_sent is not None and self._terminated is None and now - self._stop_sent > STOP_GRACE:
            self.forced, self._terminated = True, now
            self.process.terminate()
        if self._terminated is not None and now - self._terminated > KILL_GRACE:
            self.process.kill()

    def _outcome(self, end) -> tuple[str, object]:
        if end is not None:
            return end
        code = self.process.exitcode if self.process is not None else None
        if self.forced:
            return "stopped", None
        if code is not None and code < 0:
            return "failed", (f"The training process was killed ({signal.Signals(-code).name}), "
                              "perhaps because the server ran out of memory.")
        return "failed", "The training process ended without a result (the server's log says why)."


class _Child:
    """A spawned child (see `_child`), its two pipes: `rows` from it, `control` to it (the job, then
    "stop"). Until it is sent a job it only imports."""

    def __init__(self):
        context = multiprocessing.get_context("spawn")
        self.rows, rows_out = context.Pipe(duplex=False)
        control_in, self.control = context.Pipe(duplex=False)
        self.process = context.Process(target=_child, args=(rows_out, control_in), name="train", daemon=True)
        with _light_main():
            self.process.start()
        rows_out.close()  # the child holds the only writer: its exit is our end of file
        control_in.close()
        self.born = time.monotonic()

    def discard(self) -> None:
        """After it has died unused."""
        self.process.join()
        self.rows.close()
        self.control.close()


class _Standby:
    """At most one child kept ready for the next run (see the module docstring)."""

    def __init__(self):
        self.wanted, self.child, self.retry = False, None, STANDBY_RETRY
        self._lock = threading.Lock()

    def keep(self) -> None:
        self.wanted = True
        self.replenish()

    def take(self) -> _Child:
        """The standby if it lives, else a fresh child; either way no standby is left."""
        with self._lock:
            child, self.child = self.child, None
            if child is not None and child.process.is_alive():
                self.retry = STANDBY_RETRY  # it was healthy: a later death is retried quickly again
                return child
        if child is not None:  # it died a moment ago, before its watcher looked
            child.discard()
        return _Child()

    def replenish(self) -> None:
        with self._lock:
            if not self.wanted or self.child is not None:
                return
            self.child = child = _Child()
        print(f"[playground] standby {child.process.pid} started at {time.time():.3f}", file=sys.stderr, flush=True)
        threading.Thread(target=self._watch, args=(child,), name="standby", daemon=True).start()

    def _watch(self, child: _Child) -> None:
        multiprocessing.connection.wait([child.process.sentinel])  # readable once it has exited
        with self._lock:
            if self.child is not child:
                return  # taken: its Worker watches it now
            self.child = None
            if time.monotonic() - child.born > 300:
                self.retry = STANDBY_RETRY  # a long life: not a crash loop
            delay, self.retry = self.retry, min(2 * self.retry, 300)
        child.discard()
        print(f"[playground] standby {child.process.pid} exited with code {child.process.exitcode} before it was "
              f"used; another in {delay:g} s", file=sys.stderr, flush=True)
        time.sleep(delay)
        # Not while a run trains (its imports would take the run's cores): that run's end starts one.
        if ONE_AT_A_TIME.acquire(blocking=False):
            try:
                self.replenish()
            finally:
                ONE_AT_A_TIME.release()


STANDBY = _Standby()


def keep_standby() -> None:
    """From now on, keep a child ready for the next run (the server calls this once, at launch)."""
    STANDBY.keep()


@contextlib.contextmanager
def _light_main():
    """While a child starts: `spawn` runs the parent's __main__ again in the child before the
    target, which for `python app.py` would import Gradio and build the whole page. Naming this
    module as __main__ instead makes the child import only what the run needs."""
    with _SPAWNING:  # two at once would restore each other's substitute
        main = sys.modules["__main__"]
        sys.modules["__main__"] = sys.modules[__name__]
        try:
            yield
        finally:
            sys.modules["__main__"] = main


# ---- the child ----------------------------------------------------------------------------------


def _child(rows, control) -> None:
    """The child's whole life: import what every run needs (as the standby, this is where it
    waits), take its job from `control`, train, send rows and the end through `rows`."""
    began = time.monotonic()
    from training import keep_freed_memory, sleeping_openmp_waits

    sleeping_openmp_waits()  # this fresh interpreter has not loaded torch yet
    keep_freed_memory()
    import torch

    from training import playground
    from training.cli import lesson_module, make_run
    from training.data import DataNotFound
    from training.run import NonFiniteLoss, TrainingStopped

    playground.offered()  # imports every lesson offered, and with them what they use (matplotlib, ...)
    print(f"[playground] training process {os.getpid()} ready at {time.time():.3f} (imports took "
          f"{time.monotonic() - began:.1f} s)", file=sys.stderr, flush=True)
    try:
        job = control.recv()
    except (EOFError, OSError):
        return  # never used: the server is gone
    torch.set_num_threads(job["threads"])
    lesson = job["lesson"]
    settings = getattr(lesson_module(lesson), "PLAYGROUND", None)
    picture = settings.picture if settings is not None else None
    asked, current = threading.Event(), {}

    def listen():  # "stop" from the server, or the end of its pipe (the server is gone): stop either way
        with contextlib.suppress(EOFError, OSError):
            control.recv()
        asked.set()
        if "run" in current:
            current["run"].request_stop()

    threading.Thread(target=listen, daemon=True).start()

    def on_progress(row: dict) -> None:
        data = None
        if row["kind"] == "epoch" and picture is not None:
            try:
                data = picture.take(current["run"], int(row["epoch"]))
            except Exception as error:  # noqa: BLE001  (a picture is never worth ending the run)
                print(f"[playground] picture of {lesson} failed: {type(error).__name__}: {error}", file=sys.stderr)
        rows.send(("row", row, data))

    try:
        module, run = make_run(lesson, job["overrides"], profile=job["profile"], data_dir=Path(job["data_dir"]),
                               out_dir=Path(job["out_dir"]), on_progress=on_progress)
        current["run"] = run
        if asked.is_set():
            run.request_stop()
        # The Run made SIGTERM a stop request; here the request comes by pipe, and SIGTERM (the server's
        # second step, when a stop was not honoured) ends the process at once.
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        end = ("done", module.train(run))
    except TrainingStopped:
        end = ("stopped", None)
    except NonFiniteLoss:
        end = ("failed", "The loss became NaN or infinite: lower the learning rate.")
    except DataNotFound as error:
        print(f"[playground] {lesson}: {error}", file=sys.stderr)  # the log may name the folder; the page not
        end = ("failed", "The lesson's data could not be read on this server (its log says why).")
    except (BrokenPipeError, ConnectionResetError):
        return  # the server is gone: nobody to tell
    except Exception as error:  # noqa: BLE001  (reported to the visitor in words, logged in full here)
        import traceback

        traceback.print_exc()
        end = ("failed", f"The run failed on the server ({type(error).__name__}); try other settings.")
    with contextlib.suppress(OSError):
        rows.send((*end, None))
