"""The digit sketchpad Space: prediction latency in-process and over HTTP, 32 concurrent clients,
start-up time and memory.

    python bench/bench_digits.py [--requests 100] [--clients 32] [--per-client 5] [--random-weights]
    make bench                   # every bench, this one included

Weights are resolved as the app does ($ZTG_WEIGHTS_*, checkpoints/, the Hub cache); models
not found get untrained weights (latency does not depend on the values), as with --random-weights.

Over HTTP the client (gradio_client) and the server share this machine's cores, and a no-op
request alone costs about a hundred milliseconds here, so HTTP latency is quoted as the increment
of /predict_sketch over a no-op endpoint measured in the same run, the requests interleaved. The
no-op has the same signature (a Sketchpad upload and the model name in; a top-3 label, a PNG and
a message out) and does nothing, so the client's own work on files (upload, download of the
preview) cancels out; it runs in a second server started by this script. The increment over the
app's /clear (no inputs, no files) is shown too. The input is what a browser sends: a 560x560
opaque white PNG with black strokes.

Targets (2-core machine): in-process p50 <= 20 ms and HTTP increment p50 <= 100 ms for the CNN,
32 concurrent clients without errors, start-up to ready <= 15 s.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import torch
from space_bench import Report, arguments, percentiles, timed, weights_env

from harness.drawings import drawing
from harness.spaces import client, editor_value, import_app, serve

ROOT = Path(__file__).resolve().parents[1]
APP = ROOT / "spaces" / "digits" / "app.py"
MODEL_SIZES = {"mnist-cnn": {}, "mnist-mlp": {}, "mnist-logistic": {}}  # untrained: default sizes

# The no-op twin of /predict_sketch: same components, same event options, no work.
NOOP_APP = """
import os, tempfile
import gradio as gr
from PIL import Image

PREVIEW = os.path.join(tempfile.mkdtemp(), "preview.png")
Image.new("L", (224, 224)).save(PREVIEW)

def noop(sketch, model_name):
    return {"7": 1.0, "1": 0.0, "9": 0.0}, PREVIEW, "no-op"

with gr.Blocks() as demo:
    sketch = gr.Sketchpad(type="pil", image_mode="RGBA", format="png")
    model = gr.Radio(["mnist-cnn"], value="mnist-cnn")
    outputs = [gr.Label(num_top_classes=3), gr.Image(format="png"), gr.Markdown()]
    sketch.change(noop, [sketch, model], outputs, api_name="predict_sketch", preprocess=False)
demo.queue(max_size=64, default_concurrency_limit=2)

if __name__ == "__main__":
    demo.launch()
"""




def main() -> None:
    args = arguments(__doc__, requests=100, per_client=5)

    report = Report()
    row, verdict = report.row, report.verdict

    tmp = Path(tempfile.mkdtemp(prefix="bench-digits-"))
    env, origin = weights_env(APP, MODEL_SIZES, args.random_weights, tmp / "weights")
    canvas_path = tmp / "canvas.png"
    drawing("7").save(canvas_path)
    from PIL import Image

    # ---- in-process: the predict function on what Gradio hands it (a decoded RGBA canvas) ----
    app = import_app(APP, env)
    torch.set_num_threads(int(os.environ.get("ZTG_TORCH_THREADS", 1)))  # as the served app does
    canvas = Image.open(canvas_path).convert("RGBA")
    value = {"background": None, "layers": [], "composite": canvas}
    for name in MODEL_SIZES:
        p50, p95 = percentiles(timed(lambda n=name: app.predict_sketch(value, n), args.requests))
        row(f"in-process predict_sketch, {name}", f"{p50:.1f} ms", f"{p95:.1f} ms",
            verdict(p50, 20) if name == "mnist-cnn" else "")
    from shared.preprocessing import sketch_to_mnist

    p50, p95 = percentiles(timed(lambda: sketch_to_mnist(canvas), args.requests))
    row("  of which preprocessing (sketch_to_mnist)", f"{p50:.1f} ms", f"{p95:.1f} ms")
    digit = sketch_to_mnist(canvas).tensor
    with torch.inference_mode():
        p50, p95 = percentiles(timed(lambda: app.LOADED["mnist-cnn"].model(digit), args.requests))
    row("  of which mnist-cnn forward", f"{p50:.1f} ms", f"{p95:.1f} ms")
    p50, p95 = percentiles(timed(lambda: Image.open(canvas_path).convert("RGBA").load(), args.requests))
    row("  (PNG decode of the canvas, done by Gradio)", f"{p50:.1f} ms", f"{p95:.1f} ms")

    # ---- over HTTP ----
    (tmp / "noop").mkdir()
    (tmp / "noop" / "app.py").write_text(NOOP_APP)
    with serve(APP, env) as server, serve(tmp / "noop" / "app.py") as twin:
        row("start-up to ready (process start -> API answers)", f"{server.startup_seconds:.1f} s", "",
            verdict(server.startup_seconds, 15))
        api, noop_api = client(server.url, tmp / "downloads"), client(twin.url, tmp / "downloads")
        sketch = editor_value(canvas_path)
        calls = {
            "no-op, same signature": lambda: noop_api.predict(sketch, "mnist-cnn", api_name="/predict_sketch"),
            "no-op, the app's /clear": lambda: api.predict(api_name="/clear"),
            "predict": lambda: api.predict(sketch, "mnist-cnn", api_name="/predict_sketch"),
        }
        times = {name: [] for name in calls}
        for _ in range(5):
            for call in calls.values():
                call()
        label, _, message = calls["predict"]()
        if not label or label.get("label") is None:
            raise SystemExit(f"the app does not predict: {message}")
        for _ in range(args.requests):  # interleaved, so all see the same background load
            for name, call in calls.items():
                start = time.perf_counter()
                call()
                times[name].append(time.perf_counter() - start)
        p50s = {name: percentiles(values) for name, values in times.items()}
        for name, label in (("no-op, same signature", "HTTP no-op with /predict_sketch's signature"),
                            ("no-op, the app's /clear", "HTTP no-op without files (/clear)"),
                            ("predict", "HTTP /predict_sketch, mnist-cnn")):
            row(label, f"{p50s[name][0]:.0f} ms", f"{p50s[name][1]:.0f} ms")
        increment = p50s["predict"][0] - p50s["no-op, same signature"][0]
        row("HTTP increment over the same-signature no-op", f"{increment:.0f} ms", "", verdict(increment, 100))
        over_clear = p50s["predict"][0] - p50s["no-op, the app's /clear"][0]
        row("HTTP increment over /clear (includes the client's file work)", f"{over_clear:.0f} ms")
        rss, _ = server.rss_mb()

        # ---- concurrent clients ----
        clients = [client(server.url, tmp / "downloads") for _ in range(args.clients)]

        def request(own, index, k):
            label, _, _ = own.predict(sketch, "mnist-cnn", api_name="/predict_sketch")
            assert label and label.get("label") is not None

        report.concurrent(clients, request, args.per_client, server, rss)
        alive = server.alive()

    report.show('digit sketchpad', origin, alive)


if __name__ == "__main__":
    main()
