"""The digit sketchpad Space: its predict functions, then its real HTTP API through gradio_client
(a canvas as the Sketchpad sends it, uploads, and every kind of bad input)."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import gradio as gr
import numpy as np
import pytest
from conftest import find_datasets
from gradio_client.exceptions import AppError
from PIL import Image

from harness.drawings import drawing, huge_png_header, png
from harness.spaces import (
    ROOT,
    client,
    editor_value,
    import_app,
    random_weights,
    serve,
    trained_cnn,
)
from shared import serving

APP = ROOT / "spaces" / "digits" / "app.py"
CLEAR_DIGITS = ["1", "7", "0", "4"]  # drawings every trained CNN must read


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> tuple[dict, bool]:
    """ZTG_WEIGHTS_* for the three models: the trained CNN when there is one, untrained others."""
    folder = tmp_path_factory.mktemp("weights")
    env = random_weights(folder, ["mnist-mlp", "mnist-logistic"])
    try:
        env["ZTG_WEIGHTS_MNIST_CNN"] = str(trained_cnn(find_datasets()))
        return env, True
    except LookupError:
        env.update(random_weights(folder, ["mnist-cnn"]))
        return env, False


@pytest.fixture(scope="module")
def app(weights):
    return import_app(APP, weights[0])


@pytest.fixture
def trained(weights):
    if not weights[1]:
        pytest.skip("needs a trained mnist-cnn (checkpoints/mnist-cnn or the dataset cache to train one)")


# ---- the predict functions --------------------------------------------------------------------


def test_all_models_load_and_the_cnn_is_the_default(app):
    assert set(app.LOADED) == {"mnist-cnn", "mnist-mlp", "mnist-logistic"} and not app.MISSING
    assert app.MODEL_NAMES[0] == "mnist-cnn"


def test_served_with_the_shared_settings(app):
    """shared/serving.py: Gradio's cache pruned, the same bounded queue, output files pruned too."""
    assert app.demo.delete_cache == serving.DELETE_CACHE
    assert app.demo._queue.max_size == serving.MAX_QUEUE and isinstance(app.OUTPUTS, serving.OutputFiles)


@pytest.mark.parametrize("model_name", ["mnist-cnn", "mnist-mlp", "mnist-logistic"])
def test_outputs(app, model_name):
    label, preview, message = app.predict_sketch(drawing("7"), model_name)
    assert set(label) == {str(d) for d in range(10)} and sum(label.values()) == pytest.approx(1, abs=1e-5)
    assert np.asarray(Image.open(preview)).shape == (224, 224)
    assert model_name in message


@pytest.mark.parametrize("digit", CLEAR_DIGITS)
@pytest.mark.parametrize("transparent", [False, True])
def test_reads_synthetic_drawings(app, trained, digit, transparent):
    canvas = drawing(digit, transparent=transparent)
    label, _, message = app.predict_sketch({"background": None, "layers": [], "composite": canvas}, "mnist-cnn")
    assert max(label, key=label.get) == digit, (label, message)


def test_reads_a_photo_of_paper(app, trained, tmp_path):
    """Grey paper, uneven light, a JPEG stored sideways with an EXIF rotation."""
    ink = np.asarray(drawing("4", size=(900, 700), box=(0.3, 0.15, 0.4, 0.7), width=30).convert("L"), float) / 255
    paper = 215 * np.linspace(0.7, 1.0, 900)[None, :] * (0.25 + 0.75 * ink)
    photo = Image.fromarray(paper.astype(np.uint8)).convert("RGB").rotate(90, expand=True)  # stored sideways
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to view": undoes the rotation above
    path = tmp_path / "photo.jpg"
    path.write_bytes(png(photo, "JPEG", quality=80, exif=exif))
    label, _, _ = app.predict_photo(str(path), "mnist-cnn")
    assert max(label, key=label.get) == "4"


@pytest.mark.parametrize("blank", [
    None, {}, {"background": None, "layers": [], "composite": None},
    {"background": None, "layers": [], "composite": Image.new("RGBA", (560, 560), "white")},
    Image.new("RGBA", (560, 560), (0, 0, 0, 0)),
])
def test_empty_canvas_asks_for_a_drawing(app, blank):
    assert app.predict_sketch(blank, "mnist-cnn") == (None, None, app.DRAW_PROMPT)
    assert app.predict_photo(None, "mnist-cnn") == (None, None, app.DRAW_PROMPT)


def test_bad_inputs_raise_friendly_errors(app):
    with pytest.raises(gr.Error, match="not an image"):
        app.predict_photo(b"this is text", "mnist-cnn")
    with pytest.raises(gr.Error, match="too large"):
        app.predict_photo(huge_png_header(), "mnist-cnn")
    label, preview, message = app.predict_sketch(drawing("1"), "no-such-model")
    assert label is None and preview is None and "not available" in message


# ---- the real HTTP API ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(weights):
    with serve(APP, weights[0]) as running:
        yield running


@pytest.fixture(scope="module")
def api(server, tmp_path_factory):
    return client(server.url, tmp_path_factory.mktemp("downloads"))


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    """Test uploads: canvases, every image mode, and broken files."""
    folder = tmp_path_factory.mktemp("uploads")
    grey = np.asarray(drawing("7").convert("L"), dtype=np.float64) / 255
    images = {
        "canvas.png": drawing("7"),                                 # the browser: opaque white, black ink
        "transparent.png": drawing("7", transparent=True),          # ink in alpha
        "blank.png": Image.new("RGBA", (560, 560), "white"),
        "mode-1.png": drawing("7").convert("1"),
        "mode-L.png": drawing("7").convert("L"),
        "mode-LA.png": drawing("7", transparent=True).convert("LA"),
        "mode-P.gif": drawing("7").convert("P"),
        "mode-RGBA.webp": drawing("7", transparent=True),
        "mode-CMYK.jpg": drawing("7").convert("CMYK"),
        "mode-I16.png": Image.fromarray((grey * 65535).astype(np.uint16)),
        "mode-I.tiff": Image.fromarray((grey * 65535).astype(np.int32)),
        "mode-F.tiff": Image.fromarray(grey.astype(np.float32)),
    }
    paths = {}
    for name, image in images.items():
        paths[name] = folder / name
        image.save(paths[name])
    whole = paths["canvas.png"].read_bytes()
    for name, data in {"huge.png": huge_png_header(20_000, 20_000), "truncated.png": whole[: len(whole) // 2],
                       "text.png": b"just some text, not an image\n", "empty.png": b"",
                       "oversized.png": b"\x89PNG" + bytes(11 * 2**20)}.items():
        paths[name] = folder / name
        paths[name].write_bytes(data)
    return paths


def assert_still_serving(server, api, files):
    assert server.alive()
    label, _, _ = api.predict(editor_value(files["canvas.png"]), "mnist-cnn", api_name="/predict_sketch")
    assert label["label"] is not None


def top(label: dict) -> str:
    return str(label["label"])


def test_every_endpoint_is_named(server):
    with urllib.request.urlopen(server.url + "gradio_api/info") as response:
        info = json.load(response)
    assert set(info["named_endpoints"]) == {"/predict_sketch", "/predict_photo", "/clear"}
    assert not info["unnamed_endpoints"]


def test_canvas_as_the_browser_and_as_an_api_client_send_it(server, api, files, weights):
    opaque, _, message = api.predict(editor_value(files["canvas.png"]), "mnist-cnn", api_name="/predict_sketch")
    transparent, preview, _ = api.predict(editor_value(files["transparent.png"]), "mnist-cnn",
                                          api_name="/predict_sketch")
    assert len(opaque["confidences"]) == 3  # top-3
    assert top(opaque) == top(transparent)
    assert np.asarray(Image.open(preview)).shape[:2] == (224, 224)
    assert "mnist-cnn" in message
    if weights[1]:
        assert top(opaque) == "7"


def test_background_only_and_other_models(api, files):
    from gradio_client import handle_file

    value = {"background": handle_file(str(files["canvas.png"])), "layers": [], "composite": None}
    for model_name in ("mnist-mlp", "mnist-logistic"):
        label, _, message = api.predict(value, model_name, api_name="/predict_sketch")
        assert model_name in message and len(label["confidences"]) == 3


@pytest.mark.parametrize("name", ["mode-1.png", "mode-L.png", "mode-LA.png", "mode-P.gif", "mode-RGBA.webp",
                                  "mode-CMYK.jpg", "mode-I16.png", "mode-I.tiff", "mode-F.tiff"])
def test_every_image_mode_uploads(server, api, files, weights, name):
    from gradio_client import handle_file

    label, _, _ = api.predict(handle_file(str(files[name])), "mnist-cnn", api_name="/predict_photo")
    sketch, _, _ = api.predict(editor_value(files[name]), "mnist-cnn", api_name="/predict_sketch")
    if weights[1]:
        assert top(label) == "7" and top(sketch) == "7"


def test_empty_inputs_ask_for_a_drawing(api, files):
    for value in (None, editor_value(files["blank.png"])):
        label, preview, message = api.predict(value, "mnist-cnn", api_name="/predict_sketch")
        assert preview is None and message.startswith("Draw a digit")
        assert label is None or not label.get("confidences")
    _, _, message = api.predict(None, "mnist-cnn", api_name="/predict_photo")
    assert message.startswith("Draw a digit")
    canvas, photo, label, preview, message = api.predict(api_name="/clear")
    assert message.startswith("Draw a digit") and photo is None and preview is None and not label
    # An explicitly empty canvas, not None: the page empties its canvas only when the value changes.
    assert {key: canvas[key] for key in ("background", "layers", "composite")} == \
        {"background": None, "layers": [], "composite": None}


@pytest.mark.parametrize(("name", "expected"), [
    ("huge.png", "too large"), ("truncated.png", "damaged"), ("text.png", "not an image"),
    ("empty.png", "not an image|empty"),
])
@pytest.mark.parametrize("endpoint", ["/predict_photo", "/predict_sketch"])
def test_bad_files_get_a_message_and_the_server_keeps_serving(server, api, files, name, expected, endpoint):
    from gradio_client import handle_file

    value = handle_file(str(files[name])) if endpoint == "/predict_photo" else editor_value(files[name])
    start = time.perf_counter()
    with pytest.raises(AppError) as error:
        api.predict(value, "mnist-cnn", api_name=endpoint)
    assert time.perf_counter() - start < 10
    message = str(error.value)
    assert any(word in message for word in expected.split("|")), message
    assert "Traceback" not in message and "/tmp" not in message and str(files[name].parent) not in message
    assert_still_serving(server, api, files)


def test_uploads_over_the_size_limit_are_refused(server, api, files):
    import httpx
    from gradio_client import handle_file

    with pytest.raises(ValueError, match="maximum file size"):  # the client reads the limit first
        api.predict(handle_file(str(files["oversized.png"])), "mnist-cnn", api_name="/predict_photo")
    response = httpx.post(server.url + "gradio_api/upload", timeout=60,  # and the server enforces it
                          files={"files": ("big.png", files["oversized.png"].read_bytes(), "image/png")})
    assert response.status_code == 413
    assert_still_serving(server, api, files)


def test_concurrent_clients(server, files):
    errors, results = [], []

    def user():
        try:
            own = client(server.url)
            for _ in range(2):
                results.append(own.predict(editor_value(files["canvas.png"]), "mnist-cnn",
                                           api_name="/predict_sketch"))
        except Exception as error:  # noqa: BLE001
            errors.append(error)

    threads = [threading.Thread(target=user) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not errors and len(results) == 16
    assert len({top(label) for label, _, _ in results}) == 1


def test_bad_input_leaves_no_traceback_in_the_log(server):
    assert "Traceback" not in server.log()


def test_the_sketchpad_helper_builds_nothing_on_import_and_scopes_its_css():
    """shared/sketchpad.py, which every canvas uses: importing it loads no Gradio; its CSS and
    JavaScript name only the sketchpad they are for; an id that is no plain CSS name is refused."""
    check = "import sys, shared.sketchpad; assert 'gradio' not in sys.modules"
    subprocess.run([sys.executable, "-c", check], cwd=ROOT, check=True)
    from shared import sketchpad

    css = sketchpad.css("digit-canvas", 560)
    assert all(line.startswith("#digit-canvas") for line in css.splitlines())
    assert "min(100%, 560px)" in css and f"-{sketchpad.EDITOR_MARGIN_PX}px" in css
    with gr.Blocks():
        canvas = sketchpad.build("try-canvas", label="Draw", side=420)
    assert canvas.canvas_size == (420, 420) and "#try-canvas button" in sketchpad.page_js(canvas)
    assert "#try-canvas button" in sketchpad.drop_cleared_drawing_js(canvas)
    with pytest.raises(ValueError, match="plain CSS identifier"):
        sketchpad.css("x] body {", 560)
