"""Digit sketchpad: draw a digit (or upload a photo of one) and watch three MNIST models guess.

    python spaces/digits/app.py          # or: make space SPACE=digits  -> http://127.0.0.1:7860
    GRADIO_SERVER_PORT=7861 python spaces/digits/app.py

The drawing goes through `shared.preprocessing.sketch_to_mnist`, which makes it look like an
MNIST digit (crop, 20-pixel box, centre of mass, training normalisation), and the page shows
that 28x28 input next to the top-3 prediction. Models: `mnist-cnn` (default), `mnist-mlp`
and `mnist-logistic`, each from `$ZTG_WEIGHTS_<MODEL>`, else `checkpoints/<model>/`, else the
Hub repo listed under `models:` in this folder's README (see `shared/weights.py`).

API (every endpoint named; see "Use via API" in the page footer):
    /predict_sketch (sketch, model_name) -> (top-3 label, 28x28 input enlarged, message)
    /predict_photo  (photo, model_name)  -> same
    /clear          ()                   -> cleared inputs (an empty canvas) and outputs
"""

from __future__ import annotations

from pathlib import Path

import gradio as gr
import torch
from PIL import Image

# shared/: in a deployed Space the copy next to this file (a script's own folder leads the
# import path); in a clone the installed project (`make setup`, an editable install).
from shared import sketchpad
from shared.images import ImageError, install_decoder_limits, open_image
from shared.preprocessing import sketch_to_mnist
from shared.serving import DELETE_CACHE, OutputFiles, launch, queue
from shared.weights import load_models

HERE = Path(__file__).resolve().parent

MODEL_NAMES = ["mnist-cnn", "mnist-mlp", "mnist-logistic"]
PREVIEW_SCALE = 8            # the 28x28 input is shown as 224x224, one block per pixel
PHOTO_SIDE = 1024            # photos are decoded at about this size (JPEG draft mode)
DRAW_PROMPT = "Draw a digit (0-9) on the canvas, or upload a photo of one."

install_decoder_limits()
LOADED, MISSING = load_models(MODEL_NAMES, HERE / "README.md", "digits")
OUTPUTS = OutputFiles("digits")


# ---- prediction (pure functions of their inputs and the loaded models) ---------------------


def classify(image, model_name: str):
    """A decoded image -> (top-3 label dict, 28x28 input enlarged, message)."""
    if model_name not in LOADED:
        reason = MISSING.get(model_name, f"Unknown model {model_name!r}; choose one of {MODEL_NAMES}.")
        return None, None, f"**{model_name} is not available.** {reason}"
    digit = sketch_to_mnist(image) if image is not None else None
    if digit is None:
        return None, None, DRAW_PROMPT
    loaded = LOADED[model_name]
    with torch.inference_mode():
        probabilities = loaded.model(digit.tensor).softmax(dim=1)[0].tolist()
    label = {str(d): p for d, p in enumerate(probabilities)}
    best = max(range(10), key=probabilities.__getitem__)
    return label, preview_file(digit.pixels), \
        f"**{best}** ({probabilities[best]:.0%}) by {model_name}, {loaded.caption('test_accuracy', 'test accuracy {}%')}."


def preview_file(pixels) -> str:
    """The model's 28x28 input, enlarged, as a PNG file (see `shared.serving` for why a file)."""
    return OUTPUTS.png(Image.fromarray(pixels.repeat(PREVIEW_SCALE, 0).repeat(PREVIEW_SCALE, 1)), "input.png")


def predict_sketch(value, model_name: str):
    """A drawing -> top-3 digits, the 28x28 image the model sees, a message.

    value: a PIL image or array, or a Sketchpad value {"background", "layers", "composite"}
    of images or files (the browser's, as blobs, too); None or a blank canvas asks for a drawing.
    """
    return classify(sketchpad.drawing(sketch, value), model_name)


def predict_photo(photo, model_name: str):
    """A photo of a digit written on paper (dark ink on light paper) -> same as predict_sketch.

    photo: a path, bytes, a PIL image or a Gradio file dict; decoded by `shared.images`.
    """
    try:
        image = open_image(photo, size_hint=PHOTO_SIDE) if photo else None
    except ImageError as error:
        raise gr.Error(str(error), print_exception=False) from None
    return classify(image, model_name)


# ---- what the components send --------------------------------------------------------------
# The events run with preprocess=False, so Gradio decodes no image itself: a file from an API
# client reaches `shared.images` undecoded (its size is checked from the header, its mode
# handled, its errors worded for a person). Only the browser's own canvas, posted as PNG blobs
# of the canvas size, is decoded by the Sketchpad component (`shared.sketchpad.drawing`).


def photo_event(payload: dict | None, model_name: str):
    return predict_photo(payload, model_name)


def model_event(source: str, sketch_payload, photo_payload, model_name: str):
    """Rerun the prediction of the input in view (after the model was changed)."""
    if source == "photo":
        return photo_event(photo_payload, model_name)
    return predict_sketch(sketch_payload, model_name)


def show_sketch(sketch_payload, model_name):
    return (*predict_sketch(sketch_payload, model_name), "sketch")


def show_photo(photo_payload, model_name):
    return (*photo_event(photo_payload, model_name), "photo")


def clear_outputs():
    return None, None, DRAW_PROMPT


with gr.Blocks(title="Zero to GANs: digit sketchpad", delete_cache=DELETE_CACHE) as demo:
    gr.Markdown("# Draw a digit\nThree models from *Deep Learning with PyTorch: Zero to GANs* "
                "guess it as you draw: a CNN, the lesson 3 feed-forward network and the lesson 2 "
                "logistic regression.")
    if MISSING:
        gr.Markdown("\n".join(f"- **{name} unavailable:** {why}" for name, why in MISSING.items()))
    source = gr.State("sketch")
    with gr.Row(equal_height=False):
        with gr.Column(scale=3):
            with gr.Tabs():
                with gr.Tab("Draw", id="draw") as draw_tab:
                    sketch = sketchpad.build("digit-canvas", label="Canvas", side=560)
                with gr.Tab("Photo", id="photo") as photo_tab:
                    photo = gr.Image(label="Photo of a digit on paper (dark ink, light paper)",
                                     type="filepath", image_mode=None, elem_id="digit-photo",
                                     sources=["upload", "webcam", "clipboard"])
            with gr.Row():
                model = gr.Radio(MODEL_NAMES, value=MODEL_NAMES[0], label="Model", elem_id="model-picker")
                clear_button = gr.Button("Clear", elem_id="clear-button", variant="secondary")
        with gr.Column(scale=2):
            label = gr.Label(num_top_classes=3, label="Prediction", elem_id="prediction")
            preview = gr.Image(label="What the model sees (28 x 28)", format="png", interactive=False,
                               height=240, buttons=[], elem_id="model-input")
            message = gr.Markdown(DRAW_PROMPT, elem_id="message")
    outputs = [label, preview, message]

    predictions = [
        # The drawing is read and uploaded before the request goes out: a Clear in between sends none.
        sketch.change(predict_sketch, [sketch, model], outputs, api_name="predict_sketch", preprocess=False,
                      trigger_mode="always_last", show_progress="hidden",
                      js=sketchpad.drop_cleared_drawing_js(sketch)),
        photo.change(photo_event, [photo, model], outputs, api_name="predict_photo", preprocess=False,
                     show_progress="hidden"),
        model.change(model_event, [source, sketch, photo, model], outputs, api_name="predict_current",
                     api_visibility="undocumented", preprocess=False, show_progress="hidden"),
    ]
    draw_tab.select(show_sketch, [sketch, model], [*outputs, source], api_name="show_sketch",
                    api_visibility="private", preprocess=False, show_progress="hidden")
    photo_tab.select(show_photo, [photo, model], [*outputs, source], api_name="show_photo",
                     api_visibility="private", preprocess=False, show_progress="hidden")
    # Clear also empties the photo; the brush stays picked.
    sketchpad.wire_clear(demo, sketch, clear_button, outputs, clear_outputs, readings=predictions, others=(photo,))

queue(demo)

if __name__ == "__main__":
    launch(demo, max_file_size="10mb")
