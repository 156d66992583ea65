"""GAN face generator: anime faces (DCGAN) or handwritten digits (fully connected GAN) from a seed.

    python spaces/faces/app.py           # or: make space SPACE=faces  -> http://127.0.0.1:7860
    GRADIO_SERVER_PORT=7861 python spaces/faces/app.py

A seed fixes the random numbers the generator turns into images: the same seed gives the
same faces, on any machine, and face i of a seed is the same whatever the number of faces
asked for. Randomness comes from a local `torch.Generator` seeded per request, never from
the global RNG. Models: `anime-dcgan` (default) and `mnist-gan`, each from
`$ZTG_WEIGHTS_<MODEL>`, else `checkpoints/<model>/`, else the Hub repo listed under `models:`
in this folder's README (see `shared/weights.py`). The training timeline shows the sample
grids the training run saved after every epoch (`shared.models.gan.sample_grid` names them).

API (every endpoint named; see "Use via API" in the page footer):
    /generate    (model_name, seed, count)          -> (grid, ZIP of the PNGs, message)
    /surprise    (model_name, count)                -> (seed, grid, ZIP, message)
    /interpolate (model_name, seed_a, seed_b, frames) -> (GIF path, message)
    /timeline    (model_name, epoch)                -> (grid of that epoch, message)
    /clear       ()                                 -> cleared grid, ZIP and message

The page sends one more input with /generate, /surprise and /clear: how many times its Clear was
pressed (optional, 0 when left out), so that a generation requested before a Clear never fills
the page after it (see `unless_cleared`).
"""

from __future__ import annotations

import functools
import inspect
import io
import math
import secrets
import sys
import zipfile
from pathlib import Path

import gradio as gr
import torch
from PIL import Image

# shared/: in a deployed Space the copy next to this file (a script's own folder leads the
# import path); in a clone the installed project (`make setup`, an editable install).
from shared.models.gan import SAMPLE_GRIDS, sample_grids, to_pixels
from shared.serving import DELETE_CACHE, OutputFiles, launch, queue
from shared.weights import load_models

HERE = Path(__file__).resolve().parent

MODEL_CHOICES = [("Anime faces", "anime-dcgan"), ("Digits", "mnist-gan")]
MODEL_NAMES = [name for _, name in MODEL_CHOICES]
MAX_SEED = 999_999
MAX_FACES = 64        # every seed draws this many latent vectors; a request shows the first `count`
MAX_FRAMES = 60
SHOWN_SIDE = 256      # an interpolated face is enlarged to this many pixels in the GIF
SHOWN_GRID = 512      # a grid is enlarged by a whole factor until it is at least this wide


def load_timeline(loaded) -> dict[int, Path]:
    """{epoch: grid file} saved by the training run, from the same folder or Hub repo as the weights."""
    source = loaded.source
    if source.kind == "folder":
        folder = Path(source.location)
    else:
        from huggingface_hub import snapshot_download

        try:
            folder = Path(snapshot_download(source.location, revision=source.revision,
                                            allow_patterns=[f"{SAMPLE_GRIDS}/*"]))
        except Exception as error:  # noqa: BLE001  (offline and not cached, ...)
            print(f"[faces] no training timeline from {source}: {error}", file=sys.stderr)
            return {}
    return sample_grids(folder)


LOADED, MISSING = load_models(MODEL_NAMES, HERE / "README.md", "faces")
# Every image and ZIP is handed to Gradio as a file (see `shared.serving` for why).
OUTPUTS = OutputFiles("faces")
TIMELINES = {name: load_timeline(loaded) for name, loaded in LOADED.items()}


# ---- generation (pure functions of their inputs and the loaded models) ----------------------


def whole_number(value, what: str, low: int, high: int) -> int:
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if not (number.is_integer() and low <= number <= high):
        raise gr.Error(f"{what} must be a whole number from {low} to {high} (got {value!r}).",
                       print_exception=False)
    return int(number)


def check_model(model_name) -> str | None:
    """None when the model can be used, else the message that says why not."""
    if model_name not in MODEL_NAMES:
        raise gr.Error(f"Unknown model {model_name!r}; choose one of {', '.join(MODEL_NAMES)}.",
                       print_exception=False)
    if model_name not in LOADED:
        return f"**{model_name} is not available.** {MISSING.get(model_name, '')}"
    return None


def latents(seed: int, latent_dim: int) -> torch.Tensor:
    """(MAX_FACES, latent_dim) standard normal vectors from `seed`, with a local generator."""
    return torch.randn(MAX_FACES, latent_dim, generator=torch.Generator().manual_seed(seed))


@torch.inference_mode()
def render(model_name: str, latent: torch.Tensor) -> torch.Tensor:
    """(N, latent_dim) -> uint8 images (N, C, H, W)."""
    return to_pixels(LOADED[model_name].model(latent))


def grid(images: torch.Tensor, padding: int = 2) -> Image.Image:
    """uint8 (N, C, H, W) -> one RGB image, ceil(sqrt(N)) faces per row, white gaps."""
    n, c, h, w = images.shape
    columns = math.ceil(math.sqrt(n))
    rows = math.ceil(n / columns)
    canvas = torch.full((3, rows * (h + padding) + padding, columns * (w + padding) + padding), 255, dtype=torch.uint8)
    for i, image in enumerate(images.expand(-1, 3, -1, -1)):
        top, left = padding + (i // columns) * (h + padding), padding + (i % columns) * (w + padding)
        canvas[:, top:top + h, left:left + w] = image
    return Image.fromarray(canvas.permute(1, 2, 0).numpy())


def enlarge(picture: Image.Image) -> Image.Image:
    """A small grid enlarged by a whole factor to at least SHOWN_GRID pixels: the page shows images
    at their own size, and 16 faces of 64 pixels would be a stamp. Bicubic, as the interpolation."""
    scale = math.ceil(SHOWN_GRID / max(picture.size))
    if scale <= 1:
        return picture
    return picture.resize((picture.width * scale, picture.height * scale), Image.Resampling.BICUBIC)


def to_image(image: torch.Tensor) -> Image.Image:
    """uint8 (C, H, W) -> PIL, grey for one channel."""
    array = image.permute(1, 2, 0).numpy()
    return Image.fromarray(array[:, :, 0] if array.shape[2] == 1 else array)


def faces(model_name: str, seed, count):
    """(grid PNG, ZIP of every image and the grid, message) for `count` faces of `seed`, as files."""
    seed = whole_number(seed, "The seed", 0, MAX_SEED)
    count = whole_number(count, "The number of faces", 1, MAX_FACES)
    unavailable = check_model(model_name)
    if unavailable:
        return None, None, unavailable
    loaded = LOADED[model_name]
    images = render(model_name, latents(seed, loaded.model.latent_dim)[:count])
    shown = png_bytes(enlarge(grid(images)))  # the ZIP also holds every image at its own size
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as bundle:  # PNGs are compressed already: stored as they are
        for i, image in enumerate(images):
            bundle.writestr(f"{model_name}-seed{seed}-{i:02d}.png", png_bytes(to_image(image)))
        bundle.writestr(f"{model_name}-seed{seed}-grid.png", shown)
    kind = "faces" if model_name == "anime-dcgan" else "digits"
    # The file names are what downloads are called.
    return (OUTPUTS.write(shown, f"{model_name}-seed{seed}.png"),
            OUTPUTS.write(archive.getvalue(), f"{model_name}-seed{seed}.zip"),
            f"{count} {kind} from seed **{seed}** by {model_name}, {loaded.caption('swd', 'SWD {}')}.")


def surprise(model_name: str, count):
    """A fresh random seed (not from torch's global RNG), then `faces` for it."""
    seed = secrets.randbelow(MAX_SEED + 1)
    return (seed, *faces(model_name, seed, count))


def slerp(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Spherical interpolation from a to b (D,) at fractions t (F,) -> (F, D): stays where normal samples live."""
    cos = torch.dot(a, b) / (a.norm() * b.norm())
    angle = torch.arccos(cos.clamp(-1, 1))
    if angle.abs() < 1e-4:
        return torch.lerp(a, b, t[:, None])
    return (torch.sin((1 - t) * angle)[:, None] * a + torch.sin(t * angle)[:, None] * b) / torch.sin(angle)


def interpolate(model_name: str, seed_a, seed_b, frames):
    """(GIF path, message): the first face of seed_a turning into the first face of seed_b, and back."""
    seed_a = whole_number(seed_a, "The first seed", 0, MAX_SEED)
    seed_b = whole_number(seed_b, "The second seed", 0, MAX_SEED)
    frames = whole_number(frames, "The number of frames", 2, MAX_FRAMES)
    unavailable = check_model(model_name)
    if unavailable:
        return None, unavailable
    dim = LOADED[model_name].model.latent_dim
    path = slerp(latents(seed_a, dim)[0], latents(seed_b, dim)[0], torch.linspace(0, 1, frames))
    pictures = [to_image(image).convert("RGB").resize((SHOWN_SIDE, SHOWN_SIDE), Image.Resampling.BICUBIC)
                for image in render(model_name, path)]
    pictures += pictures[-2:0:-1]  # there and back again: a seamless loop
    # Our own fast palette per frame: left to Pillow's GIF writer it takes 50x longer (6 s).
    pictures = [picture.quantize(256, method=Image.Quantize.FASTOCTREE) for picture in pictures]
    gif = io.BytesIO()
    pictures[0].save(gif, format="GIF", save_all=True, append_images=pictures[1:], duration=80, loop=0)
    return (OUTPUTS.write(gif.getvalue(), f"{model_name}-seed{seed_a}-to-seed{seed_b}.gif"),
            f"Seed **{seed_a}** to seed **{seed_b}** in {frames} steps by {model_name}.")


def timeline(model_name: str, epoch):
    """(the sample grid saved after `epoch`, as a PNG file, message)."""
    unavailable = check_model(model_name)
    if unavailable:
        return None, unavailable
    grids = TIMELINES.get(model_name) or {}
    if not grids:
        return None, (f"No training timeline for {model_name}: its checkpoint has no sample grids in {SAMPLE_GRIDS}/ "
                      "(the training run saves one after each epoch).")
    epoch = whole_number(epoch, "The epoch", min(grids), max(grids))
    if epoch not in grids:
        return None, f"{model_name} has no grid for epoch {epoch}; it has epochs {', '.join(map(str, grids))}."
    # A copy: the checkpoint folder is not Gradio's to serve.
    shown = OUTPUTS.write(grids[epoch].read_bytes(), f"{model_name}-epoch{epoch:03d}.png")
    return shown, f"{model_name} after epoch **{epoch}** of {max(grids)} (the same noise every epoch)."


class Clears:
    """How many times a page's Clear was pressed, as far as the server has heard (one per page, a
    gr.State: a generation reads it when it ends, so a Clear during the generation counts)."""

    def __init__(self):
        self.count = 0


def pressed(value) -> int:
    """The page's own count of Clears, sent with each request (an API client sends none: 0)."""
    try:
        return max(0, int(float(value)))
    except (TypeError, ValueError, OverflowError):
        return 0


def clear(cleared, clears: Clears):
    """Empty grid, ZIP and message; from now on, answers to requests made before this Clear are dropped."""
    clears.count = max(clears.count, pressed(cleared))
    return None, None, ""


def unless_cleared(function, outputs: int = 3):
    """`function` (which returns `outputs` values: grid, ZIP, message) as the page calls it, with two more inputs: the
    number of Clears the page had when it made the request, and the page's `Clears`. When a Clear
    came after the request (the request waited in the queue or on the network, or ran while Clear
    was pressed), the answer changes nothing on the page: a generation started before a Clear never
    fills the page after it. A request already overtaken by a Clear is not computed at all."""
    @functools.wraps(function)
    def event(*inputs):
        *arguments, cleared, clears = inputs
        if clears.count > pressed(cleared):
            return (gr.skip(),) * outputs
        answer = function(*arguments)
        if clears.count > pressed(cleared):  # a Clear pressed while it ran
            return (gr.skip(),) * outputs
        return answer

    # The API page names the parameters from this signature: the function's own, then the count.
    added = [inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD) for name in ("cleared", "clears")]
    event.__signature__ = inspect.Signature([*inspect.signature(function).parameters.values(), *added])
    return event


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=1)  # 3x faster to write than the default, ~15% larger
    return buffer.getvalue()


# ---- page events -----------------------------------------------------------------------------


def show_timeline(model_name: str):
    """After the picker changed (and on load): that model's timeline at its last epoch."""
    grids = TIMELINES.get(model_name) or {}
    first, last = (min(grids), max(grids)) if grids else (1, 1)  # epoch 0: the untrained generator's grid
    slider = gr.Slider(minimum=first, maximum=max(last, first + 1), value=last, interactive=bool(grids))
    return (slider, *timeline(model_name, last))


with gr.Blocks(title="Zero to GANs: face generator", delete_cache=DELETE_CACHE) as demo:
    gr.Markdown("# GAN face generator\nFaces drawn by the generator of lesson 6 of *Deep Learning "
                "with PyTorch: Zero to GANs*: a DCGAN trained on anime faces, or the fully "
                "connected GAN trained on MNIST digits. Pick a seed, or let chance pick one.")
    if MISSING:
        gr.Markdown("\n".join(f"- **{name} unavailable:** {why}" for name, why in MISSING.items()))
    model = gr.Radio(MODEL_CHOICES, value=MODEL_NAMES[0], label="Generator", elem_id="model-picker")
    with gr.Tabs():
        with gr.Tab("Faces", id="faces"):
            with gr.Row(equal_height=False):
                with gr.Column(scale=2):
                    seed = gr.Slider(0, MAX_SEED, value=42, step=1, label="Seed", elem_id="seed")
                    count = gr.Slider(1, MAX_FACES, value=16, step=1, label="How many", elem_id="count")
                    with gr.Row():
                        generate_button = gr.Button("Generate", variant="primary", elem_id="generate")
                        surprise_button = gr.Button("Surprise me", elem_id="surprise")
                        clear_button = gr.Button("Clear", variant="secondary", elem_id="clear")
                    download = gr.File(label="Download (ZIP of PNGs)", elem_id="download")
                with gr.Column(scale=3):
                    picture = gr.Image(label="Generated", type="filepath", interactive=False,
                                       height=480, elem_id="faces-grid")
            message = gr.Markdown(elem_id="message")
        with gr.Tab("Interpolation", id="interpolation"):
            with gr.Row(equal_height=False):
                with gr.Column(scale=2):
                    seed_a = gr.Slider(0, MAX_SEED, value=42, step=1, label="From seed", elem_id="seed-a")
                    seed_b = gr.Slider(0, MAX_SEED, value=7, step=1, label="To seed", elem_id="seed-b")
                    frames = gr.Slider(2, MAX_FRAMES, value=24, step=1, label="Steps", elem_id="frames")
                    animate_button = gr.Button("Animate", variant="primary", elem_id="animate")
                with gr.Column(scale=3):
                    animation = gr.Image(label="From one face to the other", type="filepath",
                                         interactive=False, height=320, elem_id="animation")
            animation_message = gr.Markdown(elem_id="animation-message")
        with gr.Tab("Training timeline", id="timeline"):
            epoch = gr.Slider(1, 2, value=1, step=1, label="Epoch", elem_id="epoch")
            epoch_grid = gr.Image(label="Samples from fixed noise", type="filepath", interactive=False,
                                  height=480, elem_id="epoch-grid")
            epoch_message = gr.Markdown(elem_id="epoch-message")

    # Clear wins over every generation requested before it: the page counts its Clears (`cleared`,
    # counted in the browser the moment Clear is pressed) and sends the count with each request;
    # the server keeps the latest count it heard (`clears`), and an answer to an older request
    # changes nothing (`unless_cleared`). Cancelling alone could not do it: a request still on its
    # way to the server when Clear is pressed is not known there yet.
    cleared = gr.Number(0, visible=False, elem_id="cleared")
    clears = gr.State(Clears())  # copied for each page
    # preprocess=False: the functions get the raw values an API client sent and check them
    # themselves, so a bad value gets a message written for a person, not a component's error.
    outputs = [picture, download, message]
    raw = dict(preprocess=False)
    generate_faces = unless_cleared(faces)
    generations = [
        generate_button.click(generate_faces, [model, seed, count, cleared, clears], outputs, api_name="generate",
                              **raw),
        surprise_button.click(unless_cleared(surprise, outputs=4), [model, count, cleared, clears], [seed, *outputs],
                              api_name="surprise", **raw),
        *(slider.release(generate_faces, [model, seed, count, cleared, clears], outputs,
                         api_name=f"faces_on_{slider.elem_id}", api_visibility="private", show_progress="hidden",
                         trigger_mode="always_last", **raw)
          for slider in (seed, count)),
        # New faces and the timeline are separate events, so that Clear can cancel the faces alone.
        model.change(generate_faces, [model, seed, count, cleared, clears], outputs, api_name="faces_on_model",
                     api_visibility="private", **raw),
        demo.load(generate_faces, [model, seed, count, cleared, clears], outputs, api_name="faces_on_load",
                  api_visibility="private", **raw),
    ]
    # Queued generations are cancelled too: they need not run at all.
    clear_button.click(None, cleared, cleared, js="(n) => n + 1", api_visibility="private", queue=False) \
        .then(clear, [cleared, clears], outputs, api_name="clear", show_progress="hidden", cancels=generations, **raw)
    animate_button.click(interpolate, [model, seed_a, seed_b, frames], [animation, animation_message],
                         api_name="interpolate", **raw)
    epoch.change(timeline, [model, epoch], [epoch_grid, epoch_message], api_name="timeline",
                 show_progress="hidden", trigger_mode="always_last", **raw)
    model.change(show_timeline, [model], [epoch, epoch_grid, epoch_message], api_name="timeline_on_model",
                 api_visibility="private", **raw)
    demo.load(show_timeline, [model], [epoch, epoch_grid, epoch_message], api_name="timeline_on_load",
              api_visibility="private", **raw)

queue(demo)

if __name__ == "__main__":
    launch(demo, max_file_size="1mb")  # no uploads here: only the request itself
