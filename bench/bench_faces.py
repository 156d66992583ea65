"""The GAN face generator Space: 16 faces in-process and over HTTP, 32 concurrent clients,
start-up time and memory.

    python bench/bench_faces.py [--requests 50] [--clients 32] [--per-client 3] [--random-weights]
    make bench                   # every bench, this one included

Weights are resolved as the app does ($ZTG_WEIGHTS_*, checkpoints/, the Hub cache); a generator
not found gets untrained weights at the course's full width (the slowest case; latency does not
depend on the values), as with --random-weights.

Over HTTP the client (gradio_client) and the server share this machine's cores, and a no-op
request alone costs a few hundred milliseconds here, so HTTP latency is quoted as the increment
of /generate over the app's own no-op endpoint (/clear), both measured in the same run,
interleaved. A /generate request returns the grid PNG and a ZIP of the 16 PNGs, which the
client downloads.

Targets (2-core machine): 16 faces in-process p50 <= 200 ms, 32 concurrent clients without errors.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import torch
from space_bench import Report, arguments, percentiles, timed, weights_env

from harness.spaces import client, import_app, serve

ROOT = Path(__file__).resolve().parents[1]
APP = ROOT / "spaces" / "faces" / "app.py"
MODEL_SIZES = {"anime-dcgan": {}, "mnist-gan": {}}  # untrained: the course sizes
FACES = 16




def main() -> None:
    args = arguments(__doc__, requests=50, per_client=3)

    report = Report()
    row, verdict = report.row, report.verdict

    tmp = Path(tempfile.mkdtemp(prefix="bench-faces-"))
    env, origin = weights_env(APP, MODEL_SIZES, args.random_weights, tmp / "weights")

    # ---- in-process: what one request computes ----
    app = import_app(APP, env)
    torch.set_num_threads(int(os.environ.get("ZTG_TORCH_THREADS", 1)))  # as the served app does
    for name in MODEL_SIZES:
        seeds = iter(range(10**6))  # a new seed every call: nothing is cached
        p50, p95 = percentiles(timed(lambda n=name, s=seeds: app.faces(n, next(s), FACES), args.requests))
        row(f"in-process {FACES} {'faces' if name == 'anime-dcgan' else 'digits'} ({name}): grid PNG + ZIP",
            f"{p50:.1f} ms", f"{p95:.1f} ms", verdict(p50, 200) if name == "anime-dcgan" else "")
        latent = app.latents(1, app.LOADED[name].model.latent_dim)[:FACES]
        p50, p95 = percentiles(timed(lambda n=name, z=latent: app.render(n, z), args.requests))
        row("  of which the generator", f"{p50:.1f} ms", f"{p95:.1f} ms")
    p50, p95 = percentiles(timed(lambda: app.interpolate("anime-dcgan", 1, 2, 24), max(5, args.requests // 5)))
    row("in-process interpolation, 24 steps (GIF of 46 frames)", f"{p50:.0f} ms", f"{p95:.0f} ms")

    # ---- over HTTP ----
    with serve(APP, env) as server:
        row("start-up to ready (process start -> API answers)", f"{server.startup_seconds:.1f} s")
        api = client(server.url, tmp / "downloads")
        for seed in range(3):
            api.predict(api_name="/clear")
            api.predict("anime-dcgan", seed, FACES, api_name="/generate")
        noop, generate = [], []
        for seed in range(args.requests):  # interleaved, so both see the same background load
            start = time.perf_counter()
            api.predict(api_name="/clear")
            noop.append(time.perf_counter() - start)
            start = time.perf_counter()
            api.predict("anime-dcgan", 1000 + seed, FACES, api_name="/generate")
            generate.append(time.perf_counter() - start)
        noop_p50, noop_p95 = percentiles(noop)
        generate_p50, generate_p95 = percentiles(generate)
        row("HTTP no-op (/clear)", f"{noop_p50:.0f} ms", f"{noop_p95:.0f} ms")
        row(f"HTTP /generate, {FACES} faces (and download grid + ZIP)", f"{generate_p50:.0f} ms", f"{generate_p95:.0f} ms")
        row("HTTP increment over the no-op", f"{generate_p50 - noop_p50:.0f} ms")
        rss, _ = server.rss_mb()

        # ---- concurrent clients ----
        clients = [client(server.url, tmp / "downloads") for _ in range(args.clients)]

        def request(own, index, k):
            grid, archive, _ = own.predict("anime-dcgan", index * 100 + k, FACES, api_name="/generate")
            assert Path(grid).stat().st_size > 0 and Path(archive).stat().st_size > 0

        report.concurrent(clients, request, args.per_client, server, rss)
        alive = server.alive()

    report.show('GAN face generator', origin, alive)


if __name__ == "__main__":
    main()
