"""Image classifier: upload, paste or take a photo, and the course's models name it.

    python spaces/cifar10/app.py          # or: make space SPACE=cifar10  -> http://127.0.0.1:7860

Models: the speedrun network `cifar10-airbench`, the three CIFAR-10 models of the course,
`cifar10-resnet9`, `cifar10-cnn` and `cifar10-mlp` (the page opens on the one whose checkpoint
records the best test accuracy), and the course project's `image-folder` (lesson 5's ResNet9 trained on any
folder of class subfolders), each from `$ZTG_WEIGHTS_<MODEL>`, else `checkpoints/<model>/`,
else the Hub repo listed under `models:` in this folder's README. An `image-folder` checkpoint
describes itself (config.json: class names, image size, input mean and std), so this page
serves a learner's own classes unchanged. The photo is decoded by `shared.images` (any mode,
EXIF orientation, size limits), its central square shrunk to the model's input size
(`shared.preprocessing.square_image`, as image-folder training does) and normalised with the
model's statistics; the page shows that input, the top-3 classes, and a saliency overlay:
Grad-CAM (which regions raised the top class) for the convolutional networks, input gradients
for the MLP.

API (every endpoint named; see "Use via API" in the page footer):
    /predict (image, model_name) -> (top-3 label, model input enlarged, saliency overlay, message)
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import NamedTuple

import gradio as gr
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw

# shared/: in a deployed Space the copy next to this file (a script's own folder leads the
# import path); in a clone the installed project (`make setup`, an editable install).
from shared.images import ImageError, flatten, install_decoder_limits, open_image
from shared.models.cifar10 import CLASSES
from shared.preprocessing import CIFAR_MEAN, CIFAR_STD, normalize_images, square_image
from shared.serving import DELETE_CACHE, OutputFiles, launch, queue
from shared.weights import load_models

HERE = Path(__file__).resolve().parent

MODEL_NAMES = ["cifar10-airbench", "cifar10-resnet9", "cifar10-cnn", "cifar10-mlp", "image-folder"]
VIEW = 256         # the square crop, the overlay and the model's input (enlarged) are shown at 256x256
PHOTO_SIDE = 512   # photos are decoded at about this size (JPEG draft mode), or twice the model's input
PROMPT = "Upload, paste or take a photo of an airplane, car, bird, cat, deer, dog, frog, horse, ship or truck."


class Inputs(NamedTuple):
    """What a model expects: its classes in logit order, its input side, the statistics it normalises with."""
    class_names: list[str]
    image_size: int
    mean: list[float]
    std: list[float]


CIFAR10 = Inputs(list(CLASSES), 32, list(CIFAR_MEAN), list(CIFAR_STD))


def inputs_of(model: torch.nn.Module) -> Inputs:
    """A self-describing model (image-folder: from its config.json) says it; the CIFAR-10 ones are CIFAR10."""
    if hasattr(model, "class_names"):
        return Inputs(model.class_names, model.image_size, model.mean, model.std)
    return CIFAR10


def prompt(classes: list[str]) -> str:
    if classes == CIFAR10.class_names:
        return PROMPT
    return f"Upload, paste or take a photo of {', '.join(classes[:-1])} or {classes[-1]}."


install_decoder_limits()
LOADED, MISSING = load_models(MODEL_NAMES, HERE / "README.md", "cifar10")
OUTPUTS = OutputFiles("cifar10")


def best_model(loaded: dict) -> str:
    """The page opens on the CIFAR-10 model with the best recorded test accuracy (ties and models
    without metrics.json go by MODEL_NAMES order), or a learner's own classifier on a Space that
    serves only that."""
    cifar = [name for name in MODEL_NAMES if name in loaded and name != "image-folder"]
    def accuracy(name: str) -> float:
        value = loaded[name].metrics.get("test_accuracy")
        return float(value) if isinstance(value, (int, float)) else 0.0

    if cifar:
        return max(cifar, key=lambda name: (accuracy(name), -cifar.index(name)))
    return next((name for name in MODEL_NAMES if name in loaded), MODEL_NAMES[0])


DEFAULT = best_model(LOADED)


# ---- prediction (pure functions of their inputs and the loaded models) ---------------------


def model_input(image: Image.Image, size: int = 32) -> tuple[Image.Image, torch.Tensor]:
    """Any decoded image -> (its central square at VIEW x VIEW, RGB; uint8 (1, 3, size, size)).

    The model's input comes from the decoded image by `square_image` (flattened onto white,
    central square, Lanczos), the function image-folder training decodes its folder with; the
    square shown under the overlay only needs to look right (bicubic: measured 2 ms faster).
    """
    width, height = image.size
    side = min(width, height)
    box = ((width - side) // 2, (height - side) // 2, (width + side) // 2, (height + side) // 2)
    square = flatten(image).resize((VIEW, VIEW), Image.BICUBIC, box=box, reducing_gap=2.0)
    small = square_image(image, size)
    return square, torch.from_numpy(np.array(small)).permute(2, 0, 1).unsqueeze(0).contiguous()


def saliency(model: torch.nn.Module, inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits (classes,), map (S, S) in [0, 1]) for normalised inputs (1, 3, S, S).

    Networks with convolutions get Grad-CAM on their last feature map of at least 8x8: the
    channels weighted by how much they raise the top class. The MLP has no feature maps, so
    it gets the size of the gradient of the top logit with respect to each input pixel.
    """
    with torch.enable_grad():
        if hasattr(model, "features"):
            activations, kept = inputs, None
            for layer in model.features:
                activations = layer(activations)
                if activations.dim() == 4 and activations.shape[-1] >= 8:
                    kept = activations  # (1, C, h, w)
            logits = model.classifier(activations)[0]
            (grad,) = torch.autograd.grad(logits[logits.argmax()], kept)
            heat = F.relu((grad.mean(dim=(2, 3), keepdim=True) * kept).sum(1, keepdim=True))
            heat = F.interpolate(heat, size=inputs.shape[-2:], mode="bilinear", align_corners=False)
        else:
            inputs = inputs.clone().requires_grad_()
            logits = model(inputs)[0]
            (grad,) = torch.autograd.grad(logits[logits.argmax()], inputs)
            heat = F.avg_pool2d(grad.abs().amax(1, keepdim=True), 3, stride=1, padding=1)
    heat = heat[0, 0].detach()
    return logits.detach(), heat / heat.max().clamp_min(1e-12)


# Dark blue -> red -> yellow, as a 256-entry colour table for the overlay.
HEAT_COLOURS = np.stack([np.interp(np.arange(256), [0, 128, 255], stops)
                         for stops in ([20, 230, 255], [20, 30, 235], [120, 20, 60])], axis=-1).astype(np.uint8)


def overlay(square: Image.Image, heat: torch.Tensor) -> np.ndarray:
    """The VIEW x VIEW picture, dimmed, with the saliency map blended on top in heat colours."""
    levels = Image.fromarray((heat * 255).round().byte().numpy()).resize((VIEW, VIEW), Image.BILINEAR)
    colour = Image.fromarray(HEAT_COLOURS[np.asarray(levels)])
    dimmed = Image.eval(square, lambda v: int(v * 0.8))
    strength = Image.eval(levels, lambda v: int(v * 0.65))  # hot regions 65% colour, cold ones none
    return np.asarray(Image.composite(colour, dimmed, strength))


def classify(image: Image.Image | None, model_name: str):
    """A decoded image -> (label dict of every class, model input enlarged, saliency overlay, message)."""
    if model_name not in LOADED:
        reason = MISSING.get(model_name, f"Unknown model {model_name!r}; choose one of {MODEL_NAMES}.")
        return None, None, None, f"**{model_name} is not available.** {reason}"
    loaded = LOADED[model_name]
    expects = inputs_of(loaded.model)
    if image is None:
        return None, None, None, prompt(expects.class_names)
    square, pixels = model_input(image, expects.image_size)
    logits, heat = saliency(loaded.model, normalize_images(pixels, expects.mean, expects.std))
    probabilities = logits.softmax(dim=0).tolist()
    label = dict(zip(expects.class_names, probabilities, strict=True))
    best = max(range(len(probabilities)), key=probabilities.__getitem__)
    preview = np.asarray(Image.fromarray(pixels[0].permute(1, 2, 0).numpy()).resize((VIEW, VIEW), Image.NEAREST))
    return (label, preview, overlay(square, heat),
            f"**{expects.class_names[best]}** ({probabilities[best]:.0%}) by {model_name} "
            f"({expects.image_size}x{expects.image_size} input), "
            f"{loaded.caption('test_accuracy', 'test accuracy {}%')}.")


def predict(image, model_name: str):
    """A photo -> top-3 classes, the 32x32 image the model sees, where it looked, a message.

    image: a path, bytes, a PIL image, an array or a Gradio file dict; None asks for a photo.
    """
    try:
        side = max(PHOTO_SIDE, 2 * inputs_of(LOADED[model_name].model).image_size) if model_name in LOADED else PHOTO_SIDE
        decoded = open_image(image, size_hint=side) if image is not None else None
    except ImageError as error:
        raise gr.Error(str(error), print_exception=False) from None
    return classify(decoded, model_name)


# ---- examples, drawn here (no dataset image is shipped) -------------------------------------


def draw_examples() -> dict[str, Image.Image]:
    """Simple drawings of five classes at 256x256: flat shapes on sky, sea, road or pebbles."""

    def scene(top, bottom, horizon=0.6):
        image = Image.new("RGB", (VIEW, VIEW))
        pen = ImageDraw.Draw(image)
        for y in range(VIEW):
            colour = top if y < horizon * VIEW else bottom
            shade = 1 - 0.25 * y / VIEW
            pen.line([(0, y), (VIEW, y)], fill=tuple(int(c * shade) for c in colour))
        return image, pen

    pictures = {}
    image, pen = scene((150, 190, 240), (150, 190, 240))
    pen.ellipse((40, 112, 220, 144), fill=(235, 235, 240))                            # fuselage
    pen.polygon([(110, 126), (150, 126), (100, 40), (80, 40)], fill=(200, 200, 210))   # wing
    pen.polygon([(110, 130), (150, 130), (100, 215), (80, 215)], fill=(200, 200, 210))
    pen.polygon([(45, 128), (70, 128), (45, 85), (32, 85)], fill=(200, 60, 60))        # tail
    pictures["airplane"] = image
    image, pen = scene((170, 200, 235), (30, 60, 120), horizon=0.62)
    pen.polygon([(30, 140), (226, 140), (200, 185), (55, 185)], fill=(60, 60, 70))     # hull
    pen.rectangle((80, 105, 170, 140), fill=(240, 240, 240))                           # deck house
    pen.rectangle((140, 75, 158, 105), fill=(200, 50, 40))                             # funnel
    pictures["ship"] = image
    image, pen = scene((180, 210, 235), (90, 90, 95), horizon=0.7)
    pen.rounded_rectangle((25, 120, 231, 180), radius=18, fill=(200, 20, 30))          # body
    pen.polygon([(70, 122), (95, 80), (170, 80), (200, 122)], fill=(200, 20, 30))      # cabin
    pen.polygon([(82, 118), (100, 88), (130, 88), (130, 118)], fill=(170, 210, 240))   # windows
    pen.polygon([(138, 118), (138, 88), (165, 88), (188, 118)], fill=(170, 210, 240))
    for x in (70, 186):
        pen.ellipse((x - 24, 156, x + 24, 204), fill=(20, 20, 20))
        pen.ellipse((x - 10, 170, x + 10, 190), fill=(170, 170, 170))
    pictures["automobile"] = image
    image, pen = scene((185, 210, 230), (95, 95, 100), horizon=0.72)
    pen.rectangle((20, 60, 170, 180), fill=(235, 235, 230))                            # box
    pen.polygon([(172, 95), (215, 95), (240, 135), (240, 180), (172, 180)], fill=(30, 80, 170))  # cab
    pen.polygon([(185, 102), (212, 102), (230, 132), (185, 132)], fill=(170, 210, 240))
    for x in (55, 140, 205):
        pen.ellipse((x - 20, 165, x + 20, 205), fill=(20, 20, 20))
    pictures["truck"] = image
    image, pen = scene((120, 100, 60), (120, 100, 60))
    rng = np.random.default_rng(1)  # a local generator: the same pebbles and spots every time
    for x, y, r, red, green, blue in zip(*rng.integers(0, 256, (2, 300)), rng.integers(3, 10, 300),
                                         *rng.integers(70, 150, (3, 300)), strict=True):
        pen.ellipse((x - r, y - r, x + r, y + r), fill=(int(red), int(green), int(blue) // 2))  # pebbles
    body = (80, 110, 60)
    pen.ellipse((30, 70, 226, 230), fill=body)
    for x, y, r in zip(rng.integers(60, 200, 25), rng.integers(100, 210, 25), rng.integers(5, 12, 25), strict=True):
        pen.ellipse((x - r, y - r, x + r, y + r), fill=(40, 70, 20))                   # spots
    for x in (85, 171):
        pen.ellipse((x - 26, 55, x + 26, 107), fill=body)                              # eyes
        pen.ellipse((x - 14, 67, x + 14, 95), fill=(200, 170, 40))
        pen.ellipse((x - 7, 74, x + 7, 88), fill=(10, 10, 10))
    pictures["frog"] = image
    return pictures


def example_files() -> list[str]:
    folder = Path(tempfile.gettempdir()) / "zero-to-gans-cifar10-examples"
    folder.mkdir(exist_ok=True)
    paths = []
    for name, image in draw_examples().items():
        image.save(folder / f"{name}.png")
        paths.append(str(folder / f"{name}.png"))
    return paths


# ---- the page --------------------------------------------------------------------------------
# The events run with preprocess=False, so Gradio decodes no image itself: an upload reaches
# `shared.images` undecoded (size checked from the header, any mode, EXIF orientation applied,
# errors worded for a person).


def png_file(pixels: np.ndarray | None, name: str) -> str | None:
    """A picture as a PNG file (see `shared.serving` for why a file)."""
    return None if pixels is None else OUTPUTS.png(Image.fromarray(pixels), name)


def image_event(payload, model_name: str):
    label, preview, heat, message = predict(payload, model_name)
    return label, png_file(preview, "input.png"), png_file(heat, "saliency.png"), message


def choice(name: str) -> tuple[str, str]:
    """(what the picker shows, the value the API takes) for a model: image-folder shows its classes."""
    if name in LOADED and inputs_of(LOADED[name].model) != CIFAR10:
        classes = inputs_of(LOADED[name].model).class_names
        shown = ", ".join(classes[:5]) + (f" and {len(classes) - 5} more" if len(classes) > 5 else "")
        return f"{name} ({shown})", name
    return name, name


def introduction() -> str:
    """The page's heading: the CIFAR-10 models, then a learner's own one (alone where only it loaded)."""
    cifar = ("Three CIFAR-10 models from *Deep Learning with PyTorch: Zero to GANs* name it: the lesson 5 "
             "ResNet9, the lesson 4 CNN and the feed-forward network of assignment 3. They know ten classes "
             "and see 32x32 pixels.")
    if "image-folder" not in LOADED:
        return "# What is in the picture?\n" + cifar
    own = inputs_of(LOADED["image-folder"].model)
    mine = (f"The course project's image-folder model, lesson 5's ResNet9 trained on a folder of its own, "
            f"knows {len(own.class_names)} classes ({', '.join(own.class_names)}) and sees "
            f"{own.image_size}x{own.image_size} pixels.")
    only_mine = not any(name in LOADED for name in MODEL_NAMES if name != "image-folder")
    return "# What is in the picture?\n" + (mine if only_mine else f"{cifar} {mine}")


def unavailable() -> str:
    """The models this page cannot serve, each with why and how to fix it. An image-folder that was
    never found anywhere is the usual case on the CIFAR-10 demo, not a fault: it gets one quiet line
    (choosing it still says all that was tried). Weights that were found but do not load are a fault."""
    untrained = MISSING.get("image-folder", "").startswith("No weights for")
    lines = [f"- **{name} unavailable:** {why}" for name, why in MISSING.items()
             if not (name == "image-folder" and untrained)]
    if untrained:
        lines.append("- *image-folder, the course project's classifier for your own classes, is not trained "
                     "here:* `python -m training image-folder --data-dir MY_FOLDER` (one subfolder of images "
                     "per class) trains it; see this Space's README to deploy it like this demo.")
    return "\n".join(lines)


with gr.Blocks(title="Zero to GANs: image classifier", delete_cache=DELETE_CACHE) as demo:
    gr.Markdown(introduction())
    if MISSING:
        gr.Markdown(unavailable(), elem_id="unavailable")
    with gr.Row(equal_height=False):
        with gr.Column(scale=3):
            image = gr.Image(label="Photo", type="filepath", image_mode=None, height=360,
                             sources=["upload", "clipboard", "webcam"], elem_id="photo")
            model = gr.Radio([choice(name) for name in MODEL_NAMES], value=DEFAULT, label="Model",
                             elem_id="model-picker")
            gr.Examples(example_files(), inputs=image, label="Drawn by the app (not from the dataset)")
        with gr.Column(scale=2):
            label = gr.Label(num_top_classes=3, label="Prediction", elem_id="prediction")
            with gr.Row():
                preview = gr.Image(label="What the model sees", format="png", interactive=False,
                                   height=200, buttons=[], elem_id="model-input")
                heatmap = gr.Image(label="Where it looked", format="png", interactive=False, height=200,
                                   buttons=[], elem_id="saliency")
            message = gr.Markdown(classify(None, DEFAULT)[3], elem_id="message")
    outputs = [label, preview, heatmap, message]

    # One event for a new photo, a removed one and a new model: while it runs, the page holds any
    # newer trigger and then runs once more with what it shows by then. As two events, a removal
    # during a model switch let the switch's answer land after it, beside no photo.
    gr.on([image.change, model.change], image_event, [image, model], outputs, api_name="predict",
          preprocess=False, show_progress="hidden", trigger_mode="always_last")

queue(demo)

if __name__ == "__main__":
    launch(demo, max_file_size="10mb")
