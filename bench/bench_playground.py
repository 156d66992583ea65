"""The training playground Space: time from Train to the first curve point, mnist-logistic with the
playground's defaults (accuracy and time), and the server's memory over consecutive runs.

    ZTG_DATA_DIR=../shared/datasets python bench/bench_playground.py [--runs 5]
    ZTG_DATA_DIR=../shared/datasets python bench/bench_playground.py --first-point [--runs 5]

`--first-point` measures only the time from Train to the first curve point, on two servers at
once, taking turns run by run: one with the standby training process (the default: a process
that has imported torch and the lessons waits for the next run) and one without
(ZTG_PLAYGROUND_STANDBY=0: a fresh interpreter per run). Before each Train the standby has
finished its imports (its "ready" line in the server's log), as for a visitor who comes to an
idle server; each run is stopped at its first point. Reported: both medians and their ratio.

Everything goes through the real HTTP API (gradio_client, client and server on the same cores),
with MNIST already on disk. Memory is the server process's resident set, sampled every 0.2 s (each
run trains in a process of its own, which exits with its memory: not counted here). The first
curve point includes starting that process (a Python interpreter importing torch).

Targets (issue 13): first curve point <= 3 s after Train with the data cached; mnist-logistic
with the defaults >= 90% test accuracy in <= 30 s; no memory growth over five runs.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import sys
import threading
import time
from pathlib import Path

from harness.datasets import find_datasets
from harness.spaces import client, serve

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the app imported here for its defaults: no Hub lookups

APP = ROOT / "spaces" / "playground" / "app.py"


def defaults() -> tuple:
    """mnist-logistic as the page first shows it: the lesson's own PLAYGROUND defaults."""
    from training.lessons.mnist_logistic import PLAYGROUND as spec

    return ("mnist-logistic", spec.lr.default, spec.epochs.default, spec.batch_size.default, "32",
            spec.optimizer.initial, True)


def one_run(api, settings) -> dict:
    start = time.perf_counter()
    job = api.submit(*settings, api_name="/train")
    first = None  # the first progress row on the page (before it: "Starting the training process…")
    while not job.done():
        if first is None and any(status.startswith("Training:") for _, status, _ in job.outputs()):
            first = time.perf_counter() - start
        time.sleep(0.02)
    outputs = job.outputs()
    if first is None and any(status.startswith("Training:") for _, status, _ in outputs):  # ended between polls
        first = time.perf_counter() - start
    status = outputs[-1][1]
    accuracy = re.search(r"test accuracy ([0-9]+(?:\.[0-9]+)?)", status)
    return {"first_point_s": first, "total_s": time.perf_counter() - start, "status": status,
            "test_accuracy": float(accuracy[1]) if accuracy else None}


def standby_ready(app) -> bool:
    """Whether the server's latest standby has finished its imports (training/worker.py's log lines)."""
    log = app.log()
    started = re.findall(r"\[playground\] standby (\d+) started", log)
    return bool(started) and f"training process {started[-1]} ready" in log


def first_point_only(api, settings) -> float:
    """Seconds from Train to the first curve point; then Stop, and wait for the run's end."""
    start = time.perf_counter()
    job = api.submit(*settings, api_name="/train")
    while not any(status.startswith("Training:") for _, status, _ in job.outputs()):
        if job.done():
            raise RuntimeError(f"the run ended before its first curve point: {job.outputs()[-1:]}")
        time.sleep(0.02)
    first = time.perf_counter() - start
    api.predict(api_name="/stop")
    while not job.done():
        time.sleep(0.1)
    return first


def compare_first_points(datasets: Path, settings: tuple, runs: int) -> None:
    env = {"ZTG_DATA_DIR": str(datasets), "ZTG_PLAYGROUND_MAX_SECONDS": "120"}
    firsts = {"standby": [], "fresh": []}
    with serve(APP, env) as standby, serve(APP, env | {"ZTG_PLAYGROUND_STANDBY": "0"}) as fresh:
        servers = {"standby": (standby, client(standby.url)), "fresh": (fresh, client(fresh.url))}
        for index in range(runs):
            for name, (app, api) in servers.items():
                deadline = time.monotonic() + 180
                while name == "standby" and not standby_ready(app):
                    if time.monotonic() > deadline:
                        raise TimeoutError("the standby never became ready")
                    time.sleep(0.2)
                time.sleep(1.0)  # the previous run's end settles on both alike
                firsts[name].append(first_point_only(api, settings))
                print(f"run {index + 1}, {name}: first curve point {firsts[name][-1]:.2f} s", flush=True)
    median = {name: statistics.median(times) for name, times in firsts.items()}
    print(f"first curve point, median of {runs}: fresh process per run {median['fresh']:.2f} s, standby "
          f"{median['standby']:.2f} s: {median['fresh'] / median['standby']:.1f}x sooner")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--first-point", action="store_true",
                   help="only the first curve point, with the standby process and without (see above)")
    p.add_argument("--data-dir", type=Path, help="MNIST's folder (default: $ZTG_DATA_DIR or ../shared/datasets)")
    args = p.parse_args()
    datasets = args.data_dir.resolve() if args.data_dir else find_datasets()  # the servers run elsewhere
    if datasets is None:
        sys.exit("MNIST not found: set ZTG_DATA_DIR to a folder with MNIST/raw/")
    settings = defaults()
    print(f"settings: {settings}; {os.cpu_count()} cores (shared with whatever else runs)")
    if args.first_point:
        compare_first_points(datasets, settings, args.runs)
        return
    with serve(APP, {"ZTG_DATA_DIR": str(datasets), "ZTG_PLAYGROUND_MAX_SECONDS": "120"}) as app:
        api = client(app.url)
        peak, stop = [0.0], threading.Event()

        def sample():
            while not stop.is_set() and app.alive():
                try:
                    peak[0] = max(peak[0], app.rss_mb()[0])
                except (OSError, KeyError):  # the server exited: nothing left to sample
                    return
                time.sleep(0.2)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        idle = app.rss_mb()[0]
        print(f"server ready in {app.startup_seconds:.1f} s, RSS idle {idle:.0f} MiB")
        after = []
        try:
            runs = [run_and_report(api, app, settings, index, after, peak) for index in range(args.runs)]
        finally:
            stop.set()
        firsts = sorted(r["first_point_s"] for r in runs if r["first_point_s"] is not None)
        print(f"first curve point: median {firsts[len(firsts) // 2]:.2f} s over {len(firsts)} runs; "
              f"mnist-logistic defaults: {min(r['test_accuracy'] or 0 for r in runs)}% or better, "
              f"{max(r['total_s'] for r in runs):.1f} s at most from Train to done")
        print(f"RSS after run 1 {after[0]:.0f} MiB, after run {args.runs} {after[-1]:.0f} MiB "
              f"(growth {after[-1] - after[0]:+.0f} MiB); peak during the runs {peak[0]:.0f} MiB")


def run_and_report(api, app, settings, index: int, after: list, peak: list) -> dict:
    result = one_run(api, settings)
    time.sleep(1.0)  # let the server drop the run's buffers
    after.append(app.rss_mb()[0])
    print(f"run {index + 1}: first curve point {result['first_point_s']:.2f} s, done in "
          f"{result['total_s']:.1f} s, test accuracy {result['test_accuracy']}%, RSS after {after[-1]:.0f} MiB, "
          f"peak so far {peak[0]:.0f} MiB", flush=True)
    return result


if __name__ == "__main__":
    main()
