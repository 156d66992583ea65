"""The CIFAR-10 Space: prediction latency in-process and over HTTP, 32 concurrent clients,
start-up time and memory.

    python bench/bench_cifar_space.py [--requests 100] [--clients 32] [--per-client 3] [--random-weights]
    make bench                   # every bench, this one included

Weights are resolved as the app does ($ZTG_WEIGHTS_*, checkpoints/, the Hub cache); models
not found get untrained weights of the cpu profile's shape (latency does not depend on the
values), as with --random-weights. The input is a 640x480 JPEG photo, decoded by the app.

In-process latency is `predict` as the page calls it: decode, crop and shrink to 32x32,
forward pass, Grad-CAM, overlay. Over HTTP the client (gradio_client) and the server share
this machine's cores, so HTTP latency is quoted as the increment of /predict over a no-op
request through the same endpoint (/predict without an image: no upload, no model),
both measured in the same run, interleaved.

Targets (2-core machine): in-process p50 <= 30 ms for the default model (cifar10-resnet9),
32 concurrent clients without errors.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from gradio_client import handle_file
from PIL import Image
from space_bench import Report, arguments, percentiles, timed, weights_env

from harness.spaces import client, import_app, serve

ROOT = Path(__file__).resolve().parents[1]
APP = ROOT / "spaces" / "cifar10" / "app.py"
MODEL_SIZES = {"cifar10-resnet9": dict(width=16), "cifar10-cnn": dict(width=16), "cifar10-mlp": {},  # cpu profiles
          "image-folder": dict(width=16, image_size=64, class_names=["airplane", "cat", "dog"])}



def test_photo(path: Path) -> None:
    """A 640x480 JPEG the project draws itself: sky over sea with a grey hull, like a ship photo."""
    pixels = np.zeros((480, 640, 3), np.uint8)
    pixels[:260] = np.linspace(150, 230, 260)[:, None, None].astype(np.uint8) * np.array([0.6, 0.8, 1.0])
    pixels[260:] = (25, 50, 100)
    pixels[200:300, 150:500] = (70, 70, 80)
    Image.fromarray(pixels).save(path, quality=90)


def main() -> None:
    args = arguments(__doc__, requests=100, per_client=3)

    report = Report()
    row, verdict = report.row, report.verdict

    tmp = Path(tempfile.mkdtemp(prefix="bench-cifar10-"))
    env, origin = weights_env(APP, MODEL_SIZES, args.random_weights, tmp / "weights")
    photo = tmp / "photo.jpg"
    test_photo(photo)
    load_before = os.getloadavg()[0]

    # ---- in-process: predict as the page calls it, on the uploaded file ----
    app = import_app(APP, env)
    torch.set_num_threads(int(os.environ.get("ZTG_TORCH_THREADS", 1)))  # as the served app does
    for name in MODEL_SIZES:
        p50, p95 = percentiles(timed(lambda n=name: app.predict(str(photo), n), args.requests))
        row(f"in-process predict, {name}", f"{p50:.1f} ms", f"{p95:.1f} ms",
            verdict(p50, 30) if name == "cifar10-resnet9" else "")
    from shared.images import open_image
    from shared.preprocessing import normalize_cifar

    p50, p95 = percentiles(timed(lambda: open_image(str(photo), size_hint=app.PHOTO_SIDE), args.requests))
    row("  of which decoding the JPEG", f"{p50:.1f} ms", f"{p95:.1f} ms")
    decoded = open_image(str(photo), size_hint=app.PHOTO_SIDE)
    p50, p95 = percentiles(timed(lambda: app.model_input(decoded), args.requests))
    row("  of which crop + resize to 32x32", f"{p50:.1f} ms", f"{p95:.1f} ms")
    square, pixels = app.model_input(decoded)
    model = app.LOADED["cifar10-resnet9"].model
    inputs = normalize_cifar(pixels)
    with torch.inference_mode():
        p50, p95 = percentiles(timed(lambda: model(inputs), args.requests))
    row("  of which cifar10-resnet9 forward", f"{p50:.1f} ms", f"{p95:.1f} ms")
    p50, p95 = percentiles(timed(lambda: app.saliency(model, inputs), args.requests))
    row("  of which forward + Grad-CAM", f"{p50:.1f} ms", f"{p95:.1f} ms")
    _, heat = app.saliency(model, inputs)
    p50, p95 = percentiles(timed(lambda: app.overlay(square, heat), args.requests))
    row("  of which the overlay", f"{p50:.1f} ms", f"{p95:.1f} ms")

    # ---- over HTTP ----
    with serve(APP, env) as server:
        row("start-up to ready (process start -> API answers)", f"{server.startup_seconds:.1f} s")
        api = client(server.url, tmp / "downloads")
        upload = handle_file(str(photo))

        def noop():  # no image: the same endpoint, queue and client, without upload, model or images
            api.predict(None, "cifar10-resnet9", api_name="/predict")

        for _ in range(5):
            noop()
            api.predict(upload, "cifar10-resnet9", api_name="/predict")
        noops, predicts = [], []
        for _ in range(args.requests):  # interleaved, so both see the same background load
            start = time.perf_counter()
            noop()
            noops.append(time.perf_counter() - start)
            start = time.perf_counter()
            api.predict(upload, "cifar10-resnet9", api_name="/predict")
            predicts.append(time.perf_counter() - start)
        noop_p50, noop_p95 = percentiles(noops)
        predict_p50, predict_p95 = percentiles(predicts)
        row("HTTP no-op (/predict without an image)", f"{noop_p50:.0f} ms", f"{noop_p95:.0f} ms")
        row("HTTP /predict, cifar10-resnet9 (upload + predict + 2 images back)", f"{predict_p50:.0f} ms",
            f"{predict_p95:.0f} ms")
        row("HTTP increment over the no-op", f"{predict_p50 - noop_p50:.0f} ms")
        rss, _ = server.rss_mb()

        # ---- concurrent clients ----
        clients = [client(server.url, tmp / "downloads") for _ in range(args.clients)]

        def request(own, index, k):
            label, preview, heat, _ = own.predict(upload, "cifar10-resnet9", api_name="/predict")
            assert label and label.get("label") and Path(preview).stat().st_size and Path(heat).stat().st_size

        report.concurrent(clients, request, args.per_client, server, rss)
        alive = server.alive()

    report.show('CIFAR-10 Space', origin, alive, load=f"{load_before:.1f} before, {os.getloadavg()[0]:.1f} after")


if __name__ == "__main__":
    main()
