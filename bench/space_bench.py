"""What the Space benchmarks share: options, weights, timing, a concurrent-clients run, the report."""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import threading
import time
from pathlib import Path


def arguments(doc: str, requests: int, per_client: int) -> argparse.Namespace:
    """The options every Space benchmark takes; also makes Hub lookups offline unless told otherwise."""
    p = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    p.add_argument("--requests", type=int, default=requests, help="timed requests per measurement")
    p.add_argument("--clients", type=int, default=32)
    p.add_argument("--per-client", type=int, default=per_client, help="requests per concurrent client")
    p.add_argument("--random-weights", action="store_true", help="untrained weights for every model")
    p.add_argument("--data-dir", help="unused (accepted so that `make bench` can pass it to every bench)")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    return p.parse_args()


def weights_env(app: Path, models: dict[str, dict], random: bool, folder: Path) -> tuple[dict, dict]:
    """(ZTG_WEIGHTS_* that make every model of the Space at `app` loadable, {model: where its weights
    come from}): the trained weights the Space would find, else untrained ones built from `models[name]`."""
    from shared.models import build_model
    from shared.weights import WeightsError, default_repos, env_var, load_model

    repos, _ = default_repos(app.parent / "README.md", list(models))
    env, origin = {}, {}
    for name, shape in models.items():
        if not random:
            try:
                loaded = load_model(name, repos.get(name))
                origin[name] = f"{loaded.source} ({sum(p.numel() for p in loaded.model.parameters()):,} parameters)"
                continue
            except WeightsError:
                pass
        build_model(name, **shape).save_pretrained(folder / name)
        env[env_var(name)] = str(folder / name)
        origin[name] = f"untrained weights {shape or '(default size)'}"
    return env, origin


def percentiles(seconds: list[float]) -> tuple[float, float]:
    """(p50, p95) in milliseconds."""
    ms = sorted(s * 1000 for s in seconds)
    return statistics.median(ms), ms[min(len(ms) - 1, round(0.95 * (len(ms) - 1)))]


def timed(fn, repeat: int, warmup: int = 5) -> list[float]:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


class Report:
    """Rows of (measure, p50, p95 or more, target verdict), printed as one table at the end."""

    def __init__(self):
        self.rows: list[tuple[str, str, str, str]] = []
        self.errors: list[str] = []

    def row(self, name, p50, p95="", target=""):
        self.rows.append((name, p50, p95, target))

    @staticmethod
    def verdict(value: float, limit: float) -> str:
        return f"<= {limit:g}: {'ok' if value <= limit else 'MISSED'}"

    def concurrent(self, clients, request, per_client: int, server, idle_rss: float) -> None:
        """All clients at once, each making `per_client` calls of request(client, index, k).

        `request` raises (or fails an assert) when an answer is wrong; that counts as an error.
        """
        latencies, lock = [], threading.Lock()
        barrier = threading.Barrier(len(clients) + 1)

        def user(index, own):
            barrier.wait()
            for k in range(per_client):
                start = time.perf_counter()
                try:
                    request(own, index, k)
                    with lock:
                        latencies.append(time.perf_counter() - start)
                except Exception as error:  # noqa: BLE001
                    with lock:
                        self.errors.append(repr(error)[:200])

        threads = [threading.Thread(target=user, args=(i, c)) for i, c in enumerate(clients)]
        for thread in threads:
            thread.start()
        barrier.wait()
        start = time.perf_counter()
        for thread in threads:
            thread.join()
        wall = time.perf_counter() - start
        n, total = len(clients), len(clients) * per_client
        c50, c95 = percentiles(latencies) if latencies else (float("nan"), float("nan"))
        self.row(f"{n} concurrent clients x {per_client}: errors", f"{len(self.errors)} / {total}", "",
                 f"= 0: {'ok' if not self.errors else 'MISSED'}")
        self.row(f"{n} concurrent clients: latency", f"{c50:.0f} ms", f"{c95:.0f} ms")
        self.row(f"{n} concurrent clients: throughput", f"{len(latencies) / wall:.1f} req/s")
        after, peak = server.rss_mb()
        self.row("server memory (RSS): idle / after load / peak", f"{idle_rss:.0f} MiB",
                 f"{after:.0f} / {peak:.0f} MiB")

    def show(self, title: str, origin: dict, alive: bool, load: str = "") -> None:
        import gradio
        import torch

        cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                    if line.startswith("model name")), platform.processor())
        print(f"\n{title} benchmark: {cpu}, {os.cpu_count()} cores, torch {torch.__version__}, "
              f"gradio {gradio.__version__}, {torch.get_num_threads()} torch threads, load average "
              f"{load or f'{os.getloadavg()[0]:.1f}'}")
        print("weights: " + ", ".join(f"{n} from {o}" for n, o in origin.items()))
        width = max(len(r[0]) for r in self.rows) + 2
        print(f"\n{'measure':{width}s}{'p50 / value':>14s}{'p95 / more':>20s}   target")
        for name, p50, p95, target in self.rows:
            print(f"{name:{width}s}{p50:>14s}{p95:>20s}   {target}")
        if self.errors:
            print("\nfirst errors:", *self.errors[:3], sep="\n  ")
        print(f"\nserver still serving after the run: {'yes' if alive else 'NO'}")
