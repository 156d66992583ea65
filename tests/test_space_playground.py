"""The training playground Space: its real HTTP API through gradio_client (bounds, a streamed run,
Stop, one run at a time, the ZIP), a server without MNIST, mnist-cnn end to end, the push path with
the visitor's token (a stopped run too, signed in through Gradio's own session cookie), and a real
browser (a run watched and stopped; the canvas after its trash button and Clear; a phone's touch
screen).

Runs are short on purpose (1-2 epochs of mnist-logistic on real MNIST): those tests need the
dataset cache and are skipped without it. The server without MNIST and the mnist-cnn run (on the
smoke profile's synthetic digits) need neither the cache nor a network.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import threading
import time
import urllib.error
import urllib.request
import warnings
import zipfile
from pathlib import Path
from types import SimpleNamespace
from unittest import mock

import gradio as gr
import pytest
import torch
from conftest import train
from gradio_client.exceptions import AppError
from gradio_client.utils import Status
from huggingface_hub import HfApi

from harness.drawings import draw_on_canvas, draw_with_finger, drawing, ink, wait_for_sketchpad
from harness.spaces import (
    ARTIFACTS,
    ROOT,
    assert_fits_the_width,
    client,
    editor_value,
    free_port,
    import_app,
    serve,
    staged_space,
    worker_lives,
)
from shared.preprocessing import sketch_to_mnist
from shared.weights import env_var

APP = ROOT / "spaces" / "playground" / "app.py"
VISITOR_TOKEN = "hf_VISITORtoken0123456789abcdefghij"
# lesson, lr, epochs, batch_size, hidden_sizes, optimizer, augment
QUICK = ("mnist-logistic", 1e-3, 1, 256, "32", "Adam", True)
QUICK_SMOKE = ("mnist-logistic", 1e-3, 2, 64, "32", "Adam", True)  # on the smoke profile's tiny digits
SLOW = ("mnist-mlp", 2e-3, 5, 16, "256,128", "AdamW", True)  # far longer than any test waits


@pytest.fixture(scope="module")
def server(datasets):
    with serve(APP, {"ZTG_DATA_DIR": str(datasets), "ZTG_PLAYGROUND_MAX_SECONDS": "60"}) as running:
        yield running


@pytest.fixture
def api(server, tmp_path):
    return client(server.url, tmp_path / "downloads")


def outputs_of(job, timeout: float = 120) -> list:
    deadline = time.monotonic() + timeout
    while not job.done():
        assert time.monotonic() < deadline, "the run did not end in time"
        time.sleep(0.1)
    return job.outputs()


def wait_until_training(job, timeout: float = 120) -> None:
    """Until the run's process streams progress (it first starts: an interpreter, torch, the data)."""
    deadline = time.monotonic() + timeout
    while not any(status.startswith("Training:") for _, status, _ in job.outputs()):
        assert time.monotonic() < deadline and not job.done(), job.outputs()[-1:]
        time.sleep(0.05)


def test_every_endpoint_is_named(server):
    with urllib.request.urlopen(server.url + "gradio_api/info") as response:
        info = json.load(response)
    assert {"/train", "/stop", "/predict", "/generate", "/download", "/push"} <= set(info["named_endpoints"])
    assert not info["unnamed_endpoints"]


@pytest.mark.parametrize("settings, message", [
    (("mnist-logistic", 1e-6, 1, 128, "32", "Adam", True), "Learning rate must be a number from 1e-05 to 1"),
    (("mnist-logistic", 5.0, 1, 128, "32", "Adam", True), "greater than maximum value 1"),  # the widget's own
    (("mnist-logistic", 1e-3, 50, 128, "32", "Adam", True), "Epochs must be a whole number from 1 to 5"),
    (("mnist-logistic", 1e-3, 1, 8, "32", "Adam", True), "Batch size must be a whole number from 16 to 1024"),
    (("mnist-logistic", 1e-3, 1, 4096, "32", "Adam", True), "greater than maximum value 1024"),  # the slider's own
    (("mnist-mlp", 1e-3, 1, 128, "64,abc", "Adam", True), "Hidden sizes: 1 to 3 layers"),
    (("mnist-mlp", 1e-3, 1, 128, "100000", "Adam", True), "Hidden sizes: 1 to 3 layers"),
    (("mnist-logistic", 1e-3, 1, 128, "32", "Lion", True), "not in the list of choices: \\[.Adam., .SGD., .AdamW.\\]"),
    (("mnist-mlp", 1e-3, 1, 128, "32", "Adam", True), "Optimizer must be one of AdamW, SGD"),  # the lesson's own
    (("mnist-resnet", 1e-3, 1, 128, "32", "Adam", True), "not in the list of choices"),  # the dropdown's own
])
def test_settings_out_of_bounds_get_a_clear_message(api, server, settings, message):
    with pytest.raises(AppError, match=message) as error:
        api.predict(*settings, api_name="/train")
    assert str(ROOT) not in str(error.value) and "Traceback" not in str(error.value)
    assert server.alive()


def test_a_run_streams_its_curve_and_its_checkpoint_loads(api, tmp_path):
    """mnist-logistic, 2 epochs: several streamed updates, a final status, a ZIP that loads strictly,
    and a drawing read by the new model."""
    from shared.models import MODELS

    job = api.submit("mnist-logistic", 1e-3, 2, 64, "32", "Adam", True, api_name="/train")
    updates = outputs_of(job)
    curves = [curve["plot"] for curve, _, _ in updates if curve and curve.get("plot")]
    assert len(updates) >= 3 and len(curves) >= 3, [status for _, status, _ in updates]
    assert len(set(curves)) >= 3 and curves[0].startswith("data:image/png")  # redrawn as it grew
    _, status, picture = updates[-1]
    assert status.startswith("**Done**") and "test accuracy" in status
    assert picture and Path(picture).is_file()

    archive = Path(api.predict(api_name="/download"))
    with zipfile.ZipFile(archive) as zipped:
        names = zipped.namelist()
        zipped.extractall(tmp_path / "unzipped")
    assert "mnist-logistic/model.safetensors" in names and not [n for n in names if "resume/" in n]
    folder = tmp_path / "unzipped" / "mnist-logistic"
    model = MODELS["mnist-logistic"].from_pretrained(folder)  # strict, safetensors only
    assert json.loads((folder / "metrics.json").read_text())["test_accuracy"] > 85
    assert model is not None

    canvas = tmp_path / "seven.png"
    drawing("7").save(canvas)
    mine, theirs, message = api.predict(editor_value(canvas), api_name="/predict")
    assert len(mine["confidences"]) == 3 and "Your mnist-logistic says" in message
    assert "published mnist-logistic is not available" in message  # offline test: no Hub weights


@pytest.mark.parametrize("settings", [
    ("linear-regression", 1e-5, 30, 5, "32", "SGD", True),
    ("mnist-mlp", 2e-3, 1, 512, "64,32", "SGD", False),
    ("mnist-gan", 5e-4, 1, 512, "32", "Adam", True),  # about 15 s; mnist-cnn (a minute) is left out
])
def test_the_other_lessons_finish_with_their_picture(api, settings):
    updates = outputs_of(api.submit(*settings, api_name="/train"))
    _, status, picture = updates[-1]
    assert status.startswith("**Done**") and picture and Path(picture).is_file(), status
    if settings[0] == "mnist-gan":
        assert Path(api.predict(7, api_name="/generate")).is_file()
        with pytest.raises(AppError, match="Seed must be a whole number"):
            api.predict(-1, api_name="/generate")
    else:
        with pytest.raises(AppError, match="Train mnist-gan first"):
            api.predict(7, api_name="/generate")


def test_stop_ends_the_run_within_a_second_and_keeps_the_model(api):
    job = api.submit(*SLOW, api_name="/train")
    wait_until_training(job)
    asked = time.monotonic()
    assert "Stopping" in api.predict(api_name="/stop")
    updates = outputs_of(job, 30)
    assert time.monotonic() - asked < 3  # a second to stop, plus the last update on a busy machine
    assert updates[-1][1].startswith("**Stopped** by Stop")
    assert Path(api.predict(api_name="/download")).is_file()


def test_a_second_train_waits_for_the_first(server, tmp_path):
    first, second = client(server.url, tmp_path / "a"), client(server.url, tmp_path / "b")
    ends = {}
    job1 = first.submit("mnist-logistic", 1e-3, 2, 64, "32", "Adam", True, api_name="/train")
    while not job1.outputs():
        time.sleep(0.05)
    job2 = second.submit(*QUICK, api_name="/train")
    time.sleep(1.0)
    assert not job2.outputs() and not job1.done()
    waiting = job2.status()
    assert waiting.code == Status.IN_QUEUE and waiting.rank == 0, waiting  # first in line, and told so
    watcher = threading.Thread(target=lambda: ends.setdefault("first", (outputs_of(job1), time.monotonic())))
    watcher.start()
    second_updates = outputs_of(job2)
    watcher.join()
    assert ends["first"][0][-1][1].startswith("**Done**") and second_updates[-1][1].startswith("**Done**")


# ---- without MNIST, and the smoke profile ------------------------------------------------------

# A server with no way out: every download goes to a proxy on a closed port and is refused at once,
# whether or not the machine running the tests is online.
NO_NETWORK = {name: "http://127.0.0.1:9" for name in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY")} | \
    {"no_proxy": "127.0.0.1,localhost", "NO_PROXY": "127.0.0.1,localhost"}


def test_without_mnist_train_says_where_it_goes_and_the_server_keeps_serving(tmp_path):
    """An empty data folder and no network: the server starts at once, the page and Train name the
    folder (as the page may: no path of the server) and what to do, and linear-regression still trains."""
    empty = tmp_path / "no-data"
    with serve(APP, {"ZTG_DATA_DIR": str(empty), **NO_NETWORK}) as running:
        assert running.startup_seconds < 60, running.log()[-2000:]
        with urllib.request.urlopen(running.url + "config") as response:
            page = response.read().decode()
        assert "MNIST is not on this server" in page
        api = client(running.url, tmp_path / "downloads")
        for lesson in ("mnist-logistic", "mnist-cnn"):
            with pytest.raises(AppError) as error:
                api.predict(lesson, 1e-3, 1, 128, "32", "Adam", True, api_name="/train")
            message = str(error.value)
            for text in ("MNIST is not on this server", "MNIST/raw/ in the folder $ZTG_DATA_DIR names",
                         "train-images-idx3-ubyte", "restart it", "only linear-regression"):
                assert text in message, message
            assert str(tmp_path) not in message and "Traceback" not in message
        assert running.alive()
        updates = outputs_of(api.submit("linear-regression", 1e-5, 30, 5, "32", "SGD", True, api_name="/train"), 60)
        assert updates[-1][1].startswith("**Done**")
        assert "MNIST not found in" in running.log()  # the server's log says which folder and why


def test_mnist_cnn_trains_end_to_end_and_then_reads_a_drawn_digit(smoke_server, tmp_path):
    """mnist-cnn through the HTTP API on the smoke profile (tiny synthetic digits: seconds, and no
    dataset or network needed): 2 epochs finish with a test accuracy and the picture, the ZIP loads
    strictly, and a drawn 7 gets the top-3 of exactly that model."""
    from shared.images import editor_image
    from shared.models import MODELS

    api = client(smoke_server.url, tmp_path / "downloads")
    updates = outputs_of(api.submit("mnist-cnn", 4e-3, 2, 64, "32", "Adam", True, api_name="/train"), 60)
    _, status, picture = updates[-1]
    assert status.startswith("**Done**") and "test accuracy" in status, status
    assert picture and Path(picture).is_file()

    with zipfile.ZipFile(api.predict(api_name="/download")) as zipped:
        zipped.extractall(tmp_path / "unzipped")
    folder = tmp_path / "unzipped" / "mnist-cnn"
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["complete"] and metrics["epochs"] == 2 and metrics["profile"] == "smoke"
    model = MODELS["mnist-cnn"].from_pretrained(folder)  # strict, safetensors only, eval() mode

    canvas = tmp_path / "seven.png"
    drawing("7").save(canvas)
    mine, _, message = api.predict(editor_value(canvas), api_name="/predict")
    assert "Your mnist-cnn says" in message and smoke_server.alive()
    with torch.inference_mode():
        expected = model(sketch_to_mnist(editor_image({"composite": str(canvas)})).tensor).softmax(1)[0]
    top3 = expected.topk(3)
    assert [c["label"] for c in mine["confidences"]] == [str(i) for i in top3.indices.tolist()]
    assert [c["confidence"] for c in mine["confidences"]] == pytest.approx(top3.values.tolist(), abs=1e-5)


# ---- the worker process: its cap, its faults, one at a time (smoke profile: no MNIST needed) -----------

LONG = ("linear-regression", 1e-5, 500, 1, "32", "SGD", True)  # 7,500 steps and 500 checkpoints: about 10 s on free cores
CAP = 10  # seconds: a run's process starts in 2-6 s on 2 busy cores, and a short run must still finish


@pytest.fixture(scope="module")
def smoke_server(tmp_path_factory):
    env = {"ZTG_PLAYGROUND_PROFILE": "smoke", "ZTG_DATA_DIR": str(tmp_path_factory.mktemp("no-data")), **NO_NETWORK}
    with serve(APP, env) as running:
        yield running


@pytest.fixture(scope="module")
def capped_mnist_server(datasets):
    """Real MNIST and a CAP s cap, which a SLOW run is far over (LONG, on free cores, is not)."""
    with serve(APP, {"ZTG_DATA_DIR": str(datasets), "ZTG_PLAYGROUND_MAX_SECONDS": str(CAP)}) as running:
        yield running


@pytest.fixture(scope="module")
def capped_server(tmp_path_factory):
    """The cpu profile with a CAP s cap, offline, and MNIST files on disk that are not MNIST (a
    half-copied dataset, say): the server starts (the files are there), a run that reads them raises."""
    data = tmp_path_factory.mktemp("broken-mnist")
    (data / "MNIST" / "raw").mkdir(parents=True)
    for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
                 "t10k-labels-idx1-ubyte"):
        (data / "MNIST" / "raw" / name).write_bytes(b"not an IDX file")
    with serve(APP, {"ZTG_DATA_DIR": str(data), "ZTG_PLAYGROUND_MAX_SECONDS": str(CAP), **NO_NETWORK}) as running:
        yield running


class WorkerWatch:
    """Samples the server's child processes every 20 ms (from /proc): the training processes
    (multiprocessing spawn children: runs, and the standby waiting for the next one) alive when."""

    def __init__(self, server_pid: int):
        self.server_pid, self.samples, self._done = server_pid, [], threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()

    def _watch(self):
        while not self._done.wait(0.02):
            at, alive = time.time(), set()  # the time before the look: see `most_training`
            for stat in Path("/proc").glob("[0-9]*/stat"):
                with contextlib.suppress(OSError, ValueError, IndexError):
                    if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == self.server_pid and \
                            b"spawn_main" in (stat.parent / "cmdline").read_bytes():
                        alive.add(int(stat.parent.name))
            self.samples.append((at, alive))

    @property
    def seen(self) -> set[int]:
        return set().union(*(alive for _, alive in self.samples))

    @property
    def most(self) -> int:
        return max(len(alive) for _, alive in self.samples)

    def most_training(self, lives) -> int:
        """The most processes alive at once that had been handed a run (`worker_lives`) by then."""
        started = {pid: start for pid, start, _ in lives}
        return max(sum(pid in started and started[pid] <= at for pid in alive) for at, alive in self.samples)

    def close(self):
        self._done.set()
        self._thread.join()


def test_the_cap_stops_a_run_and_the_next_starts_after_its_process_exited(capped_mnist_server, tmp_path):
    """Two visitors press Train on runs far over the CAP s cap: each is stopped by the server within
    cap + 5 s of its start, the second waits its turn, its process starts after the first one's has
    exited (the server's log, and /proc: never two training processes at once), and each run's
    model so far is kept."""
    first, second = client(capped_mnist_server.url, tmp_path / "a"), client(capped_mnist_server.url, tmp_path / "b")
    watch = WorkerWatch(capped_mnist_server.process.pid)
    try:
        submitted = time.monotonic()
        job1 = first.submit(*SLOW, api_name="/train")
        wait_until_training(job1, 60)
        job2 = second.submit(*SLOW, api_name="/train")
        updates1 = outputs_of(job1, 60)
        first_done = time.monotonic()
        updates2 = outputs_of(job2, 60)
        second_done = time.monotonic()
    finally:
        watch.close()
    for updates in (updates1, updates2):
        assert updates[-1][1].startswith("**Stopped** by the time limit") and "model so far is kept" in updates[-1][1]
    assert first_done - submitted < CAP + 5 and second_done - first_done < CAP + 5
    lives = worker_lives(capped_mnist_server.log())[-2:]
    assert len(lives) == 2 and all(end is not None for _, _, end in lives), capped_mnist_server.log()[-3000:]
    (pid1, start1, end1), (pid2, start2, end2) = lives
    assert end1 - start1 < CAP + 5 and end2 - start2 < CAP + 5
    assert start2 >= end1, lives  # the first process had exited (joined) before the second started
    # Never two runs' processes at once; at most one more, the standby that waits for the next run.
    assert watch.most_training(lives) == 1 and watch.most <= 2 and {pid1, pid2} <= watch.seen
    assert Path(second.predict(api_name="/download")).is_file()


def test_a_run_that_raises_gets_a_plain_message_and_the_next_one_trains(capped_server, tmp_path):
    api = client(capped_server.url, tmp_path)
    updates = outputs_of(api.submit("mnist-logistic", 1e-3, 1, 128, "32", "Adam", True, api_name="/train"), 60)
    status = updates[-1][1]
    assert status.startswith("**Error:** The lesson's data could not be read on this server"), status
    assert "Nothing of it was saved" in status and "Traceback" not in status and str(tmp_path) not in status
    with pytest.raises(AppError, match="Train a model first"):
        api.predict(api_name="/download")
    assert capped_server.alive()
    updates = outputs_of(api.submit("linear-regression", 1e-5, 5, 5, "32", "SGD", True, api_name="/train"), 60)
    assert updates[-1][1].startswith("**Done**"), updates[-1][1]


def test_a_worker_killed_mid_run_gets_a_plain_message_and_the_next_one_trains(smoke_server, tmp_path):
    """SIGKILL (what the system's out-of-memory killer sends) to the training process mid-run: the
    visitor reads what happened, the checkpoint its last epoch saved is still offered, and the next
    run trains normally."""
    api = client(smoke_server.url, tmp_path)
    job = api.submit(*LONG, api_name="/train")
    deadline = time.monotonic() + 60
    while not any(picture for _, _, picture in job.outputs()):  # an epoch ended: a checkpoint is on disk
        assert time.monotonic() < deadline and not job.done()
        time.sleep(0.05)
    pid, _, end = worker_lives(smoke_server.log())[-1]
    assert end is None
    os.kill(pid, signal.SIGKILL)
    status = outputs_of(job, 30)[-1][1]
    assert status.startswith("**Error:** The training process was killed (SIGKILL)"), status
    assert "The checkpoint it saved last is kept" in status and smoke_server.alive()
    with zipfile.ZipFile(api.predict(api_name="/download")) as zipped:
        assert "linear-regression/model.safetensors" in zipped.namelist()
    updates = outputs_of(api.submit(*QUICK_SMOKE, api_name="/train"), 60)
    assert updates[-1][1].startswith("**Done**"), updates[-1][1]


def standbys(server) -> list[tuple[int, float]]:
    """(pid, start) of every standby training process the server started, from its log."""
    return [(int(pid), float(at)) for pid, at in
            re.findall(r"\[playground\] standby (\d+) started at ([\d.]+)", server.log())]


def test_a_run_takes_the_waiting_standby_and_a_killed_standby_is_replaced(smoke_server, tmp_path):
    """A training process waits, torch imported, before anyone presses Train (the standby). Killed
    while it waits, it is replaced; the next run is given the replacement, a process that was alive
    before Train was pressed, and trains normally; once that run's process has exited, a new
    standby waits."""
    until(lambda: standbys(smoke_server), "a standby from the server's launch", 60)
    killed, _ = standbys(smoke_server)[-1]
    os.kill(killed, signal.SIGKILL)
    until(lambda: standbys(smoke_server)[-1][0] != killed, "the killed standby replaced", 30)
    assert f"standby {killed} exited with code -9 before it was used" in smoke_server.log()
    replacement, born = standbys(smoke_server)[-1]
    pressed = time.time()
    updates = outputs_of(client(smoke_server.url, tmp_path).submit(*QUICK_SMOKE, api_name="/train"), 60)
    assert updates[-1][1].startswith("**Done**"), updates[-1][1]
    pid, start, end = worker_lives(smoke_server.log())[-1]
    assert pid == replacement and born < pressed <= start, (pid, replacement, born, pressed, start)
    until(lambda: standbys(smoke_server)[-1][0] not in (killed, replacement), "a new standby after the run", 30)
    assert standbys(smoke_server)[-1][1] >= end  # started once the run's process had exited


def test_a_killed_server_leaves_no_training_process_behind(tmp_path):
    """The server SIGKILLed, with no chance to clean up: its standby, waiting for a run, reads the
    end of its control pipe and exits (a run's process does the same: see training/worker.py)."""
    env = {"ZTG_PLAYGROUND_PROFILE": "smoke", "ZTG_DATA_DIR": str(tmp_path), **NO_NETWORK}

    def running(pid: int) -> bool:  # a zombie has exited (whoever adopted it may never reap it)
        try:
            return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
        except FileNotFoundError:
            return False

    with serve(APP, env) as server:
        until(lambda: standbys(server), "a standby from the server's launch", 60)
        standby, _ = standbys(server)[-1]
        os.kill(server.process.pid, signal.SIGKILL)
        try:
            until(lambda: not running(standby), "the standby exits with its server", 60)
        finally:
            with contextlib.suppress(ProcessLookupError):  # whatever is left of the group, if the test failed
                os.killpg(server.process.pid, signal.SIGKILL)


def test_progress_rows_come_by_the_clock_not_the_batch_count(tmp_path):
    """A Run whose batches take 0.4 s, 6 to the epoch (far fewer than CHECK_EVERY, as 48 batches of
    1024 are): rows come mid-epoch, never more than 2 s apart."""
    from shared.models import build_model
    from training.cli import make_run
    from training.data import TensorData

    rows = []
    _, run = make_run("mnist-logistic", ["--epochs=1"], profile="smoke", data_dir=tmp_path, out_dir=tmp_path,
                      on_progress=lambda row: rows.append((time.monotonic(), row)))
    model = run.prepare(model=build_model("mnist-logistic"))
    start = time.monotonic()
    for _ in run.epochs():
        for inputs, _ in run.batches(TensorData(torch.zeros(12, 28, 28), torch.zeros(12)), 2):
            time.sleep(0.4)  # a slow batch
            run.log_step(loss=model(inputs).sum())
        run.end_epoch()
        run.save_checkpoint()
    times = [start] + [at for at, _ in rows]
    assert [row["kind"] for _, row in rows].count("step") >= 2
    assert max(b - a for a, b in zip(times, times[1:], strict=False)) <= 2.0


def test_curve_points_arrive_every_two_seconds_at_batch_1024(api):
    """mnist-mlp at batch 1024 (48 batches an epoch) with the widest layers the page allows: an epoch
    takes several seconds here, and the curve still moves at least every 2 s, mid-epoch too."""
    job = api.submit("mnist-mlp", 2e-3, 5, 1024, "512,512,512", "AdamW", True, api_name="/train")
    wait_until_training(job)
    seen, arrivals = len(job.outputs()), [time.monotonic()]
    while time.monotonic() - arrivals[0] < 8 and not job.done():
        if len(job.outputs()) > seen:
            seen = len(job.outputs())
            arrivals.append(time.monotonic())
        time.sleep(0.02)
    epochs = [float(re.search(r"epoch ([\d.]+) /", status)[1]) for _, status, _ in job.outputs()
              if status.startswith("Training:")]
    api.predict(api_name="/stop")
    outputs_of(job, 30)
    # 48 batches an epoch, fewer than CHECK_EVERY: a point between epoch ends can only come by the clock
    # (how many epochs fit in the 8 s depends on the machine; on free cores an epoch takes about 1.5 s).
    assert any(e != int(e) for e in epochs), epochs
    assert max(b - a for a, b in zip(arrivals, arrivals[1:], strict=False)) <= 2.0, arrivals


# ---- inputs follow the lesson ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def smoke_app(tmp_path_factory):
    return import_app(APP, {"ZTG_PLAYGROUND_PROFILE": "smoke", **no_published_models(tmp_path_factory)})


def test_every_widget_takes_the_lessons_own_bounds_and_choices(smoke_app):
    """For every lesson offered, the widgets the page shows take exactly what the server accepts
    (the lesson's PLAYGROUND declaration): the value at each bound trains, one step beyond is refused."""
    from training.playground import Refused, overrides

    assert list(smoke_app.OFFERED) == ["linear-regression", "mnist-logistic", "mnist-mlp", "mnist-cnn", "mnist-gan"]
    for lesson, settings in smoke_app.OFFERED.items():
        lr, epochs, batch, hidden, optimizer, augment, generator = smoke_app.lesson_settings(lesson)
        for update, number in ((lr, settings.lr), (epochs, settings.epochs), (batch, settings.batch_size)):
            assert (update["minimum"], update["maximum"], update["value"]) == (number.low, number.high, number.default)
        assert hidden["visible"] == (settings.hidden_sizes is not None)
        assert optimizer["visible"] == (settings.optimizer is not None)
        if settings.optimizer:
            assert optimizer["choices"] == list(settings.optimizer.choices)
        assert augment["visible"] == (settings.augment is not None)
        assert generator["visible"] == (settings.tried_with == "seed") == (lesson == "mnist-gan")
        values = {"lr": settings.lr.default, "epochs": settings.epochs.default, "batch_size": settings.batch_size.default,
                  "hidden_sizes": "32", "optimizer": optimizer.get("value"), "augment": True}
        for name in ("lr", "epochs", "batch_size"):
            number = getattr(settings, name)
            for edge in (number.low, number.high):
                overrides(settings, values | {name: edge})
            for beyond in (number.low * 0.5 if name == "lr" else number.low - 1, number.high * 2):
                with pytest.raises(Refused):
                    overrides(settings, values | {name: beyond})
    logistic = smoke_app.lesson_settings("mnist-logistic")
    assert (logistic[1]["minimum"], logistic[1]["maximum"]) == (1, 5)  # not the 1-500 of linear-regression


@pytest.mark.browser
def test_the_page_shows_each_lessons_bounds(smoke_server, browser):
    """In Chromium: the Epochs slider is 1-5 on mnist-logistic (the page opens there) and 1-500 on
    linear-regression, and the seed box shows only for mnist-gan."""
    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    page.set_default_timeout(30_000)
    try:
        open_page(page, smoke_server.url)
        epochs = page.locator("#epochs input[type=range]")
        assert epochs.get_attribute("min") == "1" and epochs.get_attribute("max") == "5"
        page.get_by_role("tab", name="Try your model").click()
        assert not page.locator("#seed").is_visible()
        for lesson, most in (("linear-regression", "500"), ("mnist-gan", "3")):
            choose_lesson(page, lesson)
            page.wait_for_function(f"el => el.max === '{most}'", arg=epochs.element_handle())
        page.locator("#seed").wait_for(state="visible")
        choose_lesson(page, "mnist-cnn")
        page.locator("#seed").wait_for(state="hidden")
    finally:
        page.close()


def open_page(page, url: str) -> None:
    """The page, once its load event has given the widgets the first lesson's bounds (mnist-logistic:
    epochs 1-5); a lesson picked before that could be overwritten by it."""
    page.goto(url)
    page.wait_for_function("() => document.querySelector('#epochs input[type=range]')?.max === '5'")


def choose_lesson(page, lesson: str) -> None:
    page.locator("#lesson input").click()
    page.get_by_role("option", name=lesson, exact=True).click()


# ---- pushing with the visitor's token ----------------------------------------------------------


@pytest.fixture(scope="module")
def app(datasets, tmp_path_factory):
    """The app imported in this process; the published models pointed at a missing folder, so that
    start-up asks no Hub (this process may not be offline)."""
    return import_app(APP, {"ZTG_DATA_DIR": str(datasets), **no_published_models(tmp_path_factory)})


def no_published_models(tmp_path_factory) -> dict:
    missing = str(tmp_path_factory.mktemp("nothing") / "missing")
    return {env_var(name): missing for name in ("mnist-logistic", "mnist-mlp", "mnist-cnn")}


@pytest.fixture(scope="module")
def signed_in(datasets, tmp_path_factory):
    """(the app, its URL, a session cookie): the app as on a Space (SPACE_ID set: it has the Sign in
    with Hugging Face button) served by this process, so that its HfApi can be a double, and the
    cookie of a visitor who signed in.

    Off a Space, Gradio stands in for Spaces OAuth: its /login/callback puts the identity it was
    given when the app was built into the visitor's signed session cookie, where the real sign-in
    puts the visitor's profile and token on a Space; the app's OAuthProfile and OAuthToken
    arguments are read from that cookie either way."""
    pytest.importorskip("itsdangerous", reason="Gradio's sign-in (gradio[oauth]) needs it; `make setup` installs it")
    import gradio.oauth

    visitor = {"access_token": VISITOR_TOKEN, "token_type": "bearer", "scope": "openid profile contribute-repos",
               "expires_at": int(time.time()) + 3600,
               "userinfo": {"sub": "1", "name": "A Visitor", "preferred_username": "visitor",
                            "profile": "https://huggingface.co/visitor", "picture": "", "website": ""}}
    port = free_port()
    with pytest.MonkeyPatch.context() as patch, warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Gradio does not support OAuth features outside of a Space")
        patch.setattr(gradio.oauth, "_get_mocked_oauth_info", lambda: visitor)
        space = import_app(APP, {"ZTG_DATA_DIR": str(datasets), "SPACE_ID": "zero-to-gans/playground",
                                 "GRADIO_ANALYTICS_ENABLED": "False", **no_published_models(tmp_path_factory)})
        # As shared.serving.launch serves it, without its torch thread setting (this is the test process).
        space.demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=port, quiet=True,
                          max_file_size="10mb", show_error=False, enable_monitoring=False)
    url = f"http://127.0.0.1:{port}/"
    try:
        try:
            urllib.request.build_opener(NoRedirect).open(url + "login/callback")
            raise AssertionError("/login/callback should sign in and redirect")
        except urllib.error.HTTPError as redirect:
            cookie = redirect.headers["set-cookie"].split(";")[0]
        assert cookie.startswith("session=")
        yield space, url, cookie
    finally:
        space.demo.close()


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def test_old_visitor_files_are_pruned(app):
    old, new = app.WORK / "oldvisitor", app.WORK / "newvisitor"
    for folder in (old, new):
        (folder / "run-1").mkdir(parents=True, exist_ok=True)
    two_hours_ago = time.time() - 7200
    os.utime(old, (two_hours_ago, two_hours_ago))
    os.utime(new)  # touched now, as a run does: the folder may be left from an earlier test session
    app.prune()
    assert not old.exists() and new.exists()


def test_push_uses_the_visitors_token_and_nothing_else_sees_it(tmp_path, monkeypatch, capfd):
    from training import hub
    from training.playground import push_checkpoint

    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setattr(hub, "_token", lambda: None)  # no token on the server: only the visitor's
    train("mnist-logistic", tmp_path)
    folder = tmp_path / "mnist-logistic"
    api_class = mock.create_autospec(HfApi)
    api = api_class.return_value
    api.list_repo_files.return_value = [".gitattributes"]
    api.create_commit.return_value = SimpleNamespace(commit_url="https://huggingface.co/visitor/mine/commit/1")
    monkeypatch.setattr(hub, "HfApi", api_class)

    profile = SimpleNamespace(username="visitor")
    token = gr.OAuthToken(token=VISITOR_TOKEN, scope="openid profile contribute-repos", expires_at=int(time.time()) + 600)
    message = push_checkpoint(folder, "mine", profile, token)

    assert message.startswith("Pushed to https://huggingface.co/visitor/mine")
    api_class.assert_called_once_with(token=VISITOR_TOKEN)
    assert api_class.mock_calls[:2] == [  # the repo is created by the client holding the visitor's token
        mock.call(token=VISITOR_TOKEN),
        mock.call().create_repo("visitor/mine", repo_type="model", private=None, exist_ok=True)]
    api.create_commit.assert_called_once()
    assert api.create_commit.call_args.args[0] == "visitor/mine"
    assert VISITOR_TOKEN not in message
    out, err = capfd.readouterr()
    assert VISITOR_TOKEN not in out + err
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert VISITOR_TOKEN.encode() not in path.read_bytes(), path

    api.create_commit.side_effect = RuntimeError(f"401 Unauthorized for token {VISITOR_TOKEN}")
    failed = push_checkpoint(folder, "mine", profile, token)
    assert failed.startswith("Not pushed") and VISITOR_TOKEN not in failed
    assert "Sign in with Hugging Face first" in push_checkpoint(folder, "mine", None, None)


def test_a_stopped_run_is_pushed_with_the_visitors_token_and_the_token_goes_nowhere_else(
        signed_in, tmp_path, monkeypatch, capfd):
    """Through the served app and its HTTP API, signed in with a known token: a run stopped mid-epoch
    cannot be taken home while it trains, then goes to the visitor's account in one commit, the repo
    created and the commit made with their token only, as a strictly loadable model repo whose card
    and metrics.json say where it stopped; the ZIP holds the same files. The token is then in no
    response, no log line (the server's and its worker's), no file under the Space's folders (its
    work folder, its output files, Gradio's cache) and not in the model card."""
    import gradio.utils

    started = time.time()
    from shared.models import MODELS
    from training import hub

    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setattr(hub, "_token", lambda: None)  # no token on the server: only the visitor's
    api_class = mock.create_autospec(HfApi)
    hub_api = api_class.return_value
    hub_api.list_repo_files.return_value = [".gitattributes"]
    hub_api.create_commit.return_value = SimpleNamespace(commit_url="https://huggingface.co/visitor/stopped/commit/1")
    monkeypatch.setattr(hub, "HfApi", api_class)
    space, url, cookie = signed_in
    visitor = client(url, tmp_path / "downloads", headers={"Cookie": cookie})

    job = visitor.submit("mnist-logistic", 1e-3, 5, 16, "32", "Adam", True, api_name="/train")  # minutes long
    wait_until_training(job, 60)
    for endpoint, args in (("/push", ("stopped",)), ("/download", ())):
        with pytest.raises(AppError, match="Your run is still training: press Stop"):
            visitor.predict(*args, api_name=endpoint)
    api_class.assert_not_called()
    visitor.predict(api_name="/stop")
    updates = outputs_of(job, 30)
    assert updates[-1][1].startswith("**Stopped** by Stop")

    message = visitor.predict("stopped", api_name="/push")
    assert message.startswith("Pushed to https://huggingface.co/visitor/stopped in one commit"), message
    assert "It holds a run stopped" in message and "into epoch 1 of 5, and its model card says so" in message
    api_class.assert_called_once_with(token=VISITOR_TOKEN)
    # The repo is created by the client made with the visitor's token (a first push to a new name).
    assert api_class.mock_calls[:2] == [
        mock.call(token=VISITOR_TOKEN),
        mock.call().create_repo("visitor/stopped", repo_type="model", private=None, exist_ok=True)]
    hub_api.create_repo.assert_called_once_with("visitor/stopped", repo_type="model", private=None, exist_ok=True)
    (commit,) = hub_api.create_commit.call_args_list
    assert commit.args[0] == "visitor/stopped" and "stopped" in commit.kwargs["commit_message"]
    pushed = tmp_path / "pushed"
    for operation in commit.args[1]:
        data = operation.path_or_fileobj
        (pushed / operation.path_in_repo).parent.mkdir(parents=True, exist_ok=True)
        (pushed / operation.path_in_repo).write_bytes(data if isinstance(data, bytes) else Path(data).read_bytes())
    card = (pushed / "README.md").read_text()
    assert "**Unfinished run: training stopped" in card and "into epoch 1 of 5.**" in card
    assert 'from_pretrained("visitor/stopped")' in card
    metrics = json.loads((pushed / "metrics.json").read_text())
    assert metrics["complete"] is False and metrics["epochs_completed"] == 0 and metrics["epochs_planned"] == 5
    MODELS["mnist-logistic"].from_pretrained(pushed)  # strict, safetensors: a valid Hub model repo

    archive = visitor.predict(api_name="/download")
    with zipfile.ZipFile(archive) as zipped:
        zipped.extractall(tmp_path / "unzipped")
    unzipped = tmp_path / "unzipped" / "mnist-logistic"
    assert sorted(p.relative_to(unzipped) for p in unzipped.rglob("*") if p.is_file()) == \
        sorted(p.relative_to(pushed) for p in pushed.rglob("*") if p.is_file())
    assert "**Unfinished run: training stopped" in (unzipped / "README.md").read_text()
    MODELS["mnist-logistic"].from_pretrained(unzipped)

    responses = json.dumps([updates, message, archive], default=str)
    out, err = capfd.readouterr()
    assert "worker" in err and VISITOR_TOKEN not in responses + out + err
    gradio_cache = [p for p in Path(gradio.utils.get_upload_folder()).rglob("*")
                    if p.is_file() and p.stat().st_mtime >= started - 1]
    files = [*space.WORK.rglob("*"), *space.OUTPUTS.folder.rglob("*"), *gradio_cache, *tmp_path.rglob("*")]
    assert card and any(p.name == "mnist-logistic.zip" for p in files)
    for path in files:
        if path.is_file():
            assert VISITOR_TOKEN.encode() not in path.read_bytes(), path
    assert VISITOR_TOKEN not in card


# ---- deployed: the staged copy, with training/ vendored ----------------------------------------


def test_stage_vendors_the_training_package(tmp_path):
    from spaces import deploy

    assert deploy.vendored("playground") == ["shared", "training"] and deploy.vendored("digits") == ["shared"]
    staged = deploy.stage("playground", tmp_path / "playground")
    assert (staged / "training" / "lessons" / "mnist_logistic.py").is_file()
    assert (staged / "shared" / "models" / "__init__.py").is_file()
    assert not [p for p in (staged / "training").rglob("*") if p.is_file() and p.suffix != ".py"]


def test_staged_playground_trains_on_its_own(datasets, tmp_path):
    """The staged folder (app + copies of shared/ and training/), served by a Python that cannot
    import this checkout: a run finishes and its checkpoint downloads."""
    with staged_space("playground", {"ZTG_DATA_DIR": str(datasets)}, tmp_path) as app:
        api = client(app.url, tmp_path / "downloads")
        updates = outputs_of(api.submit(*QUICK, api_name="/train"))
        assert updates[-1][1].startswith("**Done**"), updates[-1][1]
        assert Path(api.predict(api_name="/download")).is_file()


# ---- a real browser ----------------------------------------------------------------------------


@pytest.mark.browser
def test_train_watch_stop_and_try_in_a_browser(server, browser):
    """mnist-logistic: Train, the curve updates at least three times, Stop, then a drawn digit is
    read by the new model. The page is saved as docs/playground-space.png when that is missing."""
    page = browser.new_page(viewport={"width": 1280, "height": 1100})
    page.set_default_timeout(60_000)
    try:
        open_page(page, server.url)
        epochs = page.locator("#epochs input[type=number]")
        epochs.fill("5")
        epochs.press("Enter")
        batch = page.locator("#batch-size input[type=number]")
        batch.fill("16")  # 5 epochs of 3,125 steps: still training when Stop is pressed
        batch.press("Enter")
        page.locator("#train-button").click()
        seen = []
        deadline = time.monotonic() + 120
        while len(seen) < 3:
            assert time.monotonic() < deadline, seen
            text = page.locator("#status").inner_text()
            if text.startswith("Training:") and text not in seen:
                seen.append(text)
            time.sleep(0.1)
        assert page.locator("#curve img").count() > 0
        page.locator("#stop-button").click()
        page.wait_for_function("() => document.querySelector('#status').innerText.includes('Stopped')",
                               timeout=30_000)
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "playground-browser.png"), full_page=True)
        if not (ROOT / "docs" / "playground-space.png").exists():
            page.screenshot(path=str(ROOT / "docs" / "playground-space.png"), full_page=True)
        page.get_by_role("tab", name="Try your model").click()
        canvas = wait_for_sketchpad(page, "try-canvas")
        draw_on_canvas(page, canvas, "7")
        page.wait_for_function(
            "() => /^[0-9]$/.test((document.querySelector('#mine [data-testid=\"label-output-value\"]') || {}).textContent?.trim() || '')")
        assert "Your mnist-logistic says" in page.locator("#verdict").inner_text()
    finally:
        page.close()


@pytest.mark.browser
def test_closing_the_tab_stops_the_run(smoke_server, browser, tmp_path):
    """A visitor who leaves frees the trainer: a run of many minutes (linear-regression, 500 epochs at
    batch 1) started from a page that is then closed is stopped, its process exits, and the next
    visitor's run starts after that and trains normally."""
    page = browser.new_page()
    page.set_default_timeout(60_000)
    open_page(page, smoke_server.url)
    choose_lesson(page, "linear-regression")
    page.wait_for_function("() => document.querySelector('#epochs input[type=range]').max === '500'")
    for name, value in (("epochs", "500"), ("batch-size", "1")):
        field = page.locator(f"#{name} input[type=number]")
        field.fill(value)
        field.press("Enter")
    page.locator("#train-button").click()
    page.wait_for_function("() => document.querySelector('#status').innerText.startsWith('Training:')")
    page.close()
    start = time.monotonic()
    updates = outputs_of(client(smoke_server.url, tmp_path).submit(*QUICK_SMOKE, api_name="/train"), 60)
    assert updates[-1][1].startswith("**Done**") and time.monotonic() - start < 30
    (_, _, left_end), (_, next_start, _) = worker_lives(smoke_server.log())[-2:]
    assert left_end is not None and next_start >= left_end
    assert "[linear-regression] epoch 500/500" not in smoke_server.log()  # the left run never finished


# ---- the canvas, on the smoke profile (no dataset needed) --------------------------------------


MINE = '#mine [data-testid="label-output-value"]'  # the new model's top digit, when there is one


def until(condition, what: str, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.2)


@pytest.mark.browser
def test_the_canvas_draws_after_every_trash_and_every_clear(smoke_server, browser):
    """Issue 21: the canvas stopped drawing after its own trash button (the brush was picked once, on
    load). Five times each: draw (ink lands, with no click on the brush), empty the canvas with its
    trash button or with the page's Clear (no ink left)."""
    page = browser.new_page(viewport={"width": 1280, "height": 1100})
    page.set_default_timeout(60_000)
    try:
        page.goto(smoke_server.url)
        canvas = wait_for_sketchpad(page, "try-canvas")
        for button in ['#try-canvas button[aria-label="Clear canvas"]'] * 5 + ["#clear-button"] * 5:
            draw_on_canvas(page, canvas, "1", step_px=120)  # a few moves: each waits for a software render
            until(lambda: ink(canvas) > 0.01, f"no ink from the stroke drawn before pressing {button}")
            page.locator(button).click()
            until(lambda: ink(canvas) == 0, f"{button} left ink on the canvas")
        draw_on_canvas(page, canvas, "1", step_px=120)
        until(lambda: ink(canvas) > 0.01, "no ink after the last Clear")
    finally:
        page.close()


@pytest.mark.browser
def test_on_a_phone_train_then_a_digit_started_at_the_canvas_edge_is_read(smoke_server, phone):
    """At 390 x 844 with a touch screen: Train is within reach and trains; a finger put down on the
    canvas's last pixel row draws a digit from there, which the new model reads; Clear empties it."""
    phone.goto(smoke_server.url)
    assert_fits_the_width(phone, "#train-button", "#stop-button")
    phone.locator("#train-button").tap()
    phone.wait_for_function("() => document.querySelector('#status').innerText.startsWith('Done')")
    canvas = wait_for_sketchpad(phone, "try-canvas")
    canvas.scroll_into_view_if_needed()
    assert_fits_the_width(phone, "#try-canvas", "#clear-button")
    area = canvas.bounding_box()
    assert area["width"] > 300 and area["y"] >= 0 and area["y"] + area["height"] <= 844
    draw_with_finger(phone, canvas, [(0.5, 1 - 1.5 / area["height"]), (0.5, 0.1)])
    until(lambda: ink(canvas, region=(0.4, 0.95, 0.6, 1.0)) > 0.1, "no ink where the finger landed")
    phone.wait_for_selector(MINE)
    assert "Your mnist-logistic says" in phone.locator("#verdict").inner_text()
    phone.locator("#clear-button").tap()
    until(lambda: ink(canvas) == 0, "Clear left ink on the canvas")
    assert phone.locator(MINE).count() == 0
    ARTIFACTS.mkdir(exist_ok=True)
    phone.screenshot(path=str(ARTIFACTS / "playground-phone.png"), full_page=True)
