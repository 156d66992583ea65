"""Every Space under load and faults, as a real server on 127.0.0.1 driven by real clients.

    python bench/bench_spaces_load.py [--requests 1000] [--clients 16] [--only digits,cifar10,faces,playground]

- digits, cifar10, faces: `--requests` requests from `--clients` concurrent gradio_client clients,
  each request a different input where the Space allows it (digits drawn at other places, photos
  of other colours, faces of other seeds), so the output folders fill as a busy day's would.
  Reported: errors (target 0), p50/p95 latency, the server's resident memory after a warm-up and
  after the load (target: growth <= 50 MiB), and the size of the Space's output folder and of
  Gradio's cache afterwards (the output folder is pruned to `OutputFiles.max_entries` entries).
- playground: see `playground_load` and `playground_faults` below.

Weights are what the Spaces would load ($ZTG_WEIGHTS_*, checkpoints/, the Hub cache), else
untrained ones (latency and memory do not depend on the values). Client and server share this
machine's cores, so a latency here is the latency of a loaded 2-core server, not of the model.
Every loop is bounded in count and time and talks only to the servers this script started.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # no Hub lookups for weights (read at import time)
sys.path.insert(0, str(ROOT))  # shared/ and harness/, as in the repository

from gradio_client import handle_file  # noqa: E402
from space_bench import Report, weights_env  # noqa: E402

from harness.drawings import drawing  # noqa: E402
from harness.spaces import client, editor_value, serve  # noqa: E402

SPACES = ROOT / "spaces"
RSS_GROWTH_MIB = 50
WARMUP = 20  # requests before the "before" memory reading: imports and first allocations are not growth


def folder_mib(folder: Path) -> tuple[float, int]:
    """(MiB, files) under `folder`."""
    files = [p for p in folder.rglob("*") if p.is_file()] if folder.is_dir() else []
    return sum(p.stat().st_size for p in files) / 2**20, len(files)


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
LOADED = {
    "digits": ({"mnist-cnn": {}, "mnist-mlp": {}, "mnist-logistic": {}}, digits_requests),
    "cifar10": ({"cifar10-resnet9": dict(width=16), "cifar10-cnn": dict(width=16), "cifar10-mlp": {},
                 "image-folder": dict(width=16, image_size=64, class_names=["airplane", "cat", "dog"])},
                cifar10_requests),
    "faces": ({"anime-dcgan": dict(width=48), "mnist-gan": {}}, faces_requests),
}


def space_load(name: str, args, tmp: Path) -> None:
    models, factory = LOADED[name]
    app = SPACES / name / "app.py"
    work = tmp / name
    env, origin = weights_env(app, models, args.random_weights, work / "weights")
    # The server's temporary files (its output folder) and Gradio's cache go where they can be measured.
    (work / "tmp").mkdir(parents=True)
    env |= {"TMPDIR": str(work / "tmp"), "GRADIO_TEMP_DIR": str(work / "gradio")}
    request = factory(work)
    per_client = math.ceil(args.requests / args.clients)
    report = Report()
    with serve(app, env) as server:
        clients = [client(server.url, work / "downloads") for _ in range(args.clients)]
        for k in range(WARMUP):
            request(clients[k % len(clients)], k, 0)
        before, _ = server.rss_mb()
        start = time.perf_counter()
        report.concurrent(clients, request, per_client, server, before)
        report.row("wall time of the load", f"{time.perf_counter() - start:.0f} s")
        after, _ = server.rss_mb()
        alive = server.alive()
    report.row(f"RSS growth over the load (after {WARMUP} warm-up requests)", f"{after - before:+.0f} MiB",
               f"{before:.0f} -> {after:.0f} MiB", report.verdict(after - before, RSS_GROWTH_MIB))
    outputs = folder_mib(next((work / "tmp").glob(f"zero-to-gans-{name}-*"), work / "tmp" / "none"))
    cache = folder_mib(work / "gradio")
    report.row("output folder after (MiB, files)", f"{outputs[0]:.1f} MiB", f"{outputs[1]} files")
    report.row("Gradio's cache after (MiB, files)", f"{cache[0]:.1f} MiB", f"{cache[1]} files")
    report.show(f"{name} Space under load", origin, alive)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--requests", type=int, default=1000, help="requests per Space (digits, cifar10, faces)")
    p.add_argument("--clients", type=int, default=16)
    p.add_argument("--only", default="digits,cifar10,faces,playground")
    p.add_argument("--random-weights", action="store_true", help="untrained weights for every model")
    p.add_argument("--data-dir", help="MNIST for the playground's real-data runs (else the smoke profile)")
    args = p.parse_args()
    wanted = args.only.split(",")
    unknown = set(wanted) - {*LOADED, "playground"}
    if unknown:
        raise SystemExit(f"--only: unknown Space {', '.join(sorted(unknown))}")
    tmp = Path(tempfile.mkdtemp(prefix="bench-spaces-load-"))
    for name in wanted:
        print(f"== {name}", flush=True)
        if name in LOADED:
            space_load(name, args, tmp)


if __name__ == "__main__":
    main()
