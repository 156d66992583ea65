"""Every Space under load and faults, as a real server on 127.0.0.1 driven by real clients.

    python bench/bench_spaces_load.py [--requests 1000] [--clients 16] [--checkpoints 8]
                                      [--only digits,cifar10,faces,playground]

- digits, cifar10, faces: `--requests` requests from `--clients` concurrent gradio_client clients,
  each request a different input where the Space allows it (digits drawn at other places, photos
  of other colours, faces of other seeds), so the output folders fill as a busy day's would.
  Reported: errors (target 0), p50/p95 latency, the server's resident memory after a warm-up and
  after the load (target: growth <= 50 MiB) and at `--checkpoints` points on the way (a plateau
  shows apart from a leak; more `--requests` show where it levels), and the size of the Space's
  output folder (bounded by `OutputFiles`) and of Gradio's cache (bounded by `prune_gradio_files`:
  `--gradio-files-mb` sets the bound, $ZTG_GRADIO_FILES_MB) at the same points and at the end.
- playground (the smoke profile's data, or MNIST with --data-dir): `--visitors` visitors press
  Train at the same moment with a run longer than the cap (`--cap` seconds). Reported: the places
  in the queue they were shown, overlapping runs (from the worker processes' start and exit times
  in the server's log: target 0), the longest run (target: within cap + 5 s), and the server's
  memory after the first and the last run (target: within 100 MiB). Then three faults, each
  followed by a normal run: a worker killed with SIGKILL mid-run, a visitor closing the stream
  (the tab) mid-run, and a run that raises (MNIST files on disk that are not MNIST).

Weights are what the Spaces would load ($ZTG_WEIGHTS_*, checkpoints/, the Hub cache), else
untrained ones (latency and memory do not depend on the values). Client and server share this
machine's cores, so a latency here is the latency of a loaded 2-core server, not of the model.
Every loop is bounded in count and time and talks only to the servers this script started.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import math
import os
import signal
import tempfile
import threading
import time
from pathlib import Path

from gradio_client import handle_file
from space_bench import Report, weights_env

from harness.drawings import drawing
from harness.spaces import client, editor_value, serve, worker_lives

ROOT = Path(__file__).resolve().parents[1]

SPACES = ROOT / "spaces"
PLAYGROUND = SPACES / "playground" / "app.py"
RSS_GROWTH_MIB = 50
PLAYGROUND_RSS_MIB = 100
# lesson, lr, epochs, batch_size, hidden_sizes, optimizer, augment: 500 epochs of single-row batches,
# about 10 s of training on free cores, longer than the default cap even for a run whose process
# was ready (the standby); and a run that finishes in seconds.
LONG = ("linear-regression", 1e-5, 500, 1, "32", "SGD", True)
SHORT = ("linear-regression", 1e-5, 20, 5, "32", "SGD", True)
WARMUP = 20  # requests before the "before" memory reading: imports and first allocations are not growth


def folder_mib(folder: Path) -> tuple[float, int]:
    """(MiB, files) under `folder`, which a serving Space changes as this walks it (a file written
    under a temporary name and renamed is gone when its size is asked): those are left out."""
    sizes = []
    for parent, _, names in os.walk(folder):  # os.walk skips a folder that went
        for name in names:
            with contextlib.suppress(FileNotFoundError):
                sizes.append(os.stat(os.path.join(parent, name)).st_size)
    return sum(sizes) / 2**20, len(sizes)


def digits_requests(tmp: Path):
    """Drawings of five digits at ten places each: 50 different canvases."""
    uploads = []
    for i in range(50):
        path = tmp / f"digit-{i}.png"
        digit = "17402"[i % 5]
        drawing(digit, box=(0.1 + 0.03 * (i // 5), 0.1 + 0.02 * (i // 5), 0.55, 0.65)).save(path)
        uploads.append(editor_value(path))

    def request(api, index, k):
        label, _, _ = api.predict(uploads[(index * 7 + k) % len(uploads)], "mnist-cnn", api_name="/predict_sketch")
        assert label and label.get("label") is not None, "no prediction"
    return request


def cifar10_requests(tmp: Path):
    """640x480 JPEG photos in 32 colours."""
    from PIL import Image

    uploads = []
    for i in range(32):
        path = tmp / f"photo-{i}.jpg"
        Image.new("RGB", (640, 480), (8 * i, 255 - 8 * i, (97 * i) % 256)).save(path, quality=90)
        uploads.append(handle_file(str(path)))

    def request(api, index, k):
        label, preview, heat, _ = api.predict(uploads[(index + k) % len(uploads)], "cifar10-resnet9",
                                              api_name="/predict")
        assert label and label.get("label") and Path(preview).stat().st_size and Path(heat).stat().st_size
    return request


def faces_requests(tmp: Path):
    """Sixteen faces of a new seed every request."""
    def request(api, index, k):
        grid, archive, _ = api.predict("anime-dcgan", index * 1000 + k, 16, api_name="/generate")
        assert Path(grid).stat().st_size and Path(archive).stat().st_size
    return request


# Space -> (its models with the shape untrained weights get, the request factory)
SPACE_LOADS = {
    "digits": ({"mnist-cnn": {}, "mnist-mlp": {}, "mnist-logistic": {}}, digits_requests),
    "cifar10": ({"cifar10-resnet9": dict(width=16), "cifar10-cnn": dict(width=16), "cifar10-mlp": {},
                 "image-folder": dict(width=16, image_size=64, class_names=["airplane", "cat", "dog"])},
                cifar10_requests),
    "faces": ({"anime-dcgan": dict(width=48), "mnist-gan": {}}, faces_requests),
}


def space_load(name: str, args, tmp: Path) -> None:
    models, factory = SPACE_LOADS[name]
    app = SPACES / name / "app.py"
    work = tmp / name
    env, origin = weights_env(app, models, args.random_weights, work / "weights")
    # The server's temporary files (its output folder) and Gradio's cache go where they can be measured.
    (work / "tmp").mkdir(parents=True)
    env |= {"TMPDIR": str(work / "tmp"), "GRADIO_TEMP_DIR": str(work / "gradio")}
    if args.gradio_files_mb is not None:
        env["ZTG_GRADIO_FILES_MB"] = str(args.gradio_files_mb)
    request = factory(work)
    per_client = math.ceil(args.requests / args.clients)
    step = max(1, per_client * args.clients // args.checkpoints)
    readings, done, lock = [], itertools.count(1), threading.Lock()  # (requests answered, RSS MiB, Gradio's MiB)

    def counted(api, index, k):  # the server's memory after every `step` answers: a plateau or a climb
        try:
            request(api, index, k)
        finally:
            with lock:
                answered = next(done)
                if answered % step == 0:
                    readings.append((answered, server.rss_mb()[0], folder_mib(work / "gradio")[0]))

    report = Report()
    with serve(app, env) as server:
        clients = [client(server.url, work / "downloads") for _ in range(args.clients)]
        for k in range(WARMUP):
            request(clients[k % len(clients)], k, 0)
        before, _ = server.rss_mb()
        start = time.perf_counter()
        report.concurrent(clients, counted, per_client, server, before)
        report.row("wall time of the load", f"{time.perf_counter() - start:.0f} s")
        after, _ = server.rss_mb()
        alive = server.alive()
        cache = folder_mib(work / "gradio")  # while it serves: what a Space's disk holds
    report.row(f"RSS growth over the load (after {WARMUP} warm-up requests)", f"{after - before:+.0f} MiB",
               f"{before:.0f} -> {after:.0f} MiB", report.verdict(after - before, RSS_GROWTH_MIB))
    report.row("RSS growth after N requests (N: MiB)", "", "  ".join(f"{n}: {rss - before:+.0f}" for n, rss, _ in readings))
    report.row("Gradio's cache after N requests (N: MiB)", "", "  ".join(f"{n}: {mib:.0f}" for n, _, mib in readings))
    outputs = folder_mib(next((work / "tmp").glob(f"zero-to-gans-{name}-*"), work / "tmp" / "none"))
    report.row("output folder after (MiB, files)", f"{outputs[0]:.1f} MiB", f"{outputs[1]} files")
    report.row("Gradio's cache after (MiB, files)", f"{cache[0]:.1f} MiB", f"{cache[1]} files")
    report.show(f"{name} Space under load", origin, alive)


def wait_for(job, timeout: float) -> list:
    deadline = time.monotonic() + timeout
    while not job.done():
        if time.monotonic() > deadline:
            raise TimeoutError("the run did not end in time")
        time.sleep(0.05)
    return job.outputs()


def playground_load(args, tmp: Path) -> None:
    """`--visitors` visitors press Train at once; see the module docstring for what is measured."""
    env = {"ZTG_PLAYGROUND_MAX_SECONDS": str(args.cap)}
    env |= {"ZTG_DATA_DIR": args.data_dir} if args.data_dir else {"ZTG_PLAYGROUND_PROFILE": "smoke"}
    report = Report()
    with serve(PLAYGROUND, env) as server:
        clients = [client(server.url, tmp / "downloads") for _ in range(args.visitors)]
        places, statuses, rss_after, lock = {}, {}, [], threading.Lock()
        barrier = threading.Barrier(args.visitors)

        def visitor(index, own):
            barrier.wait()
            job = own.submit(*LONG, api_name="/train")
            while not job.done():
                rank = job.status().rank
                if rank is not None:
                    places[index] = max(places.get(index, 0), rank + 1)
                time.sleep(0.1)
            with lock:  # the memory as this run ended, in the order runs end
                rss_after.append(server.rss_mb()[0])
            statuses[index] = job.outputs()[-1][1] if job.outputs() else ""

        start = time.perf_counter()
        threads = [threading.Thread(target=visitor, args=(i, c)) for i, c in enumerate(clients)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(args.visitors * (args.cap + 30))
        wall = time.perf_counter() - start
        lives = worker_lives(server.log())
        alive = server.alive()
    ends = [(end if end is not None else float("inf")) for _, _, end in lives]
    overlaps = sum(start < previous_end for (_, start, _), previous_end in zip(lives[1:], ends, strict=False))
    longest = max(end - begin for _, begin, end in lives) if lives and None not in ends else float("inf")
    stopped = sum(status.startswith("**Stopped** by the time limit") for status in statuses.values())
    report.row(f"{args.visitors} visitors at once: runs, stopped by the cap", f"{len(lives)}",
               f"{stopped} stopped by the cap", f"= {args.visitors}: {'ok' if stopped == args.visitors else 'MISSED'}")
    for index, status in sorted(statuses.items()):
        if not status.startswith("**Stopped** by the time limit"):
            report.errors.append(f"visitor {index}: {status[:160]!r}")
    report.row("places in the queue shown (visitor: highest place)", f"{len(places)} visitors",
               " ".join(f"{places[i]}" for i in sorted(places)) or "none")
    report.row("overlapping runs (worker processes' start and exit)", f"{overlaps}", "", f"= 0: {'ok' if not overlaps else 'MISSED'}")
    report.row("longest run, process start to exit", f"{longest:.1f} s", f"cap {args.cap:g} s",
               report.verdict(longest, args.cap + 5))
    growth = rss_after[-1] - rss_after[0] if rss_after else float("nan")
    report.row("server RSS after run 1 / after the last", f"{growth:+.0f} MiB",
               f"{rss_after[0]:.0f} -> {rss_after[-1]:.0f} MiB" if rss_after else "", report.verdict(abs(growth), PLAYGROUND_RSS_MIB))
    report.row("wall time of the load", f"{wall:.0f} s")
    report.show("playground Space under load", {"runs": f"{LONG[0]}, {LONG[2]} epochs of batch {LONG[3]}"}, alive)
    playground_faults(args, tmp, env)


def playground_faults(args, tmp: Path, env: dict) -> None:
    """A worker killed mid-run, a stream closed mid-run, a run that raises: each followed by a normal run."""
    report = Report()

    def then_a_normal_run(api, name):
        status = wait_for(api.submit(*SHORT, api_name="/train"), 120)[-1][1]
        report.row(f"{name}: the next run", status.split(" ")[0], "", "ok" if status.startswith("**Done**") else "MISSED")

    def first_epoch(job):
        deadline = time.monotonic() + 60
        while not any(picture for _, _, picture in job.outputs()):  # an epoch ended: a checkpoint exists
            if time.monotonic() > deadline or job.done():
                raise TimeoutError("no epoch ended")
            time.sleep(0.05)

    with serve(PLAYGROUND, env | {"ZTG_PLAYGROUND_MAX_SECONDS": "60"}) as server:
        api = client(server.url, tmp / "downloads")
        job = api.submit(*LONG, api_name="/train")
        first_epoch(job)
        pid = worker_lives(server.log())[-1][0]
        os.kill(pid, signal.SIGKILL)
        status = wait_for(job, 30)[-1][1]
        report.row("worker SIGKILLed mid-run: the page says", status[:60], "",
                   "ok" if status.startswith("**Error:**") and "killed" in status else "MISSED")
        then_a_normal_run(api, "after SIGKILL")

        job = api.submit(*LONG, api_name="/train")
        first_epoch(job)
        closed = time.time()
        job.cancel()  # what closing the tab does to the stream
        deadline = time.monotonic() + 30
        while worker_lives(server.log())[-1][2] is None and time.monotonic() < deadline:
            time.sleep(0.1)
        end = worker_lives(server.log())[-1][2]
        report.row("stream closed mid-run: its worker exited after", f"{end - closed:.1f} s" if end else "never",
                   "", report.verdict(end - closed if end else float("inf"), 5))
        then_a_normal_run(api, "after the closed stream")
        killed_alive = server.alive()

    broken = tmp / "broken-mnist" / "MNIST" / "raw"
    broken.mkdir(parents=True)
    for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        (broken / name).write_bytes(b"not an IDX file")
    with serve(PLAYGROUND, {"ZTG_DATA_DIR": str(broken.parents[1]), "ZTG_PLAYGROUND_MAX_SECONDS": "60"}) as server:
        api = client(server.url, tmp / "downloads")
        status = wait_for(api.submit("mnist-logistic", 1e-3, 1, 128, "32", "Adam", True, api_name="/train"), 120)[-1][1]
        report.row("a run that raises: the page says", status[:60], "",
                   "ok" if status.startswith("**Error:**") and "Traceback" not in status else "MISSED")
        then_a_normal_run(api, "after the run that raised")
        alive = server.alive() and killed_alive
    report.show("playground Space faults", {}, alive)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--requests", type=int, default=1000, help="requests per Space (digits, cifar10, faces)")
    p.add_argument("--clients", type=int, default=16)
    p.add_argument("--checkpoints", type=int, default=8,
                   help="readings of the server's memory during the load (a plateau shows as equal ones)")
    p.add_argument("--only", default="digits,cifar10,faces,playground")
    p.add_argument("--random-weights", action="store_true", help="untrained weights for every model")
    p.add_argument("--gradio-files-mb", type=float, default=None,
                   help="the bound on Gradio's cache (ZTG_GRADIO_FILES_MB; default: the Spaces' own, 2048)")
    p.add_argument("--visitors", type=int, default=10, help="playground visitors pressing Train at once")
    p.add_argument("--cap", type=float, default=6, help="the playground's wall-clock cap per run, seconds")
    p.add_argument("--data-dir", help="MNIST for the playground's runs (default: the smoke profile's data)")
    args = p.parse_args()
    wanted = args.only.split(",")
    unknown = set(wanted) - {*SPACE_LOADS, "playground"}
    if unknown:
        raise SystemExit(f"--only: unknown Space {', '.join(sorted(unknown))}")
    with tempfile.TemporaryDirectory(prefix="bench-spaces-load-") as tmp:  # weights, uploads, downloads
        for name in wanted:
            print(f"== {name}", flush=True)
            if name in SPACE_LOADS:
                space_load(name, args, Path(tmp))
            else:
                playground_load(args, Path(tmp))


if __name__ == "__main__":
    main()
