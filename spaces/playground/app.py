"""Training playground: pick a lesson, set its hyperparameters, press Train and watch it learn.

    python spaces/playground/app.py      # or: make space SPACE=playground -> http://127.0.0.1:7860
    ZTG_DATA_DIR=../shared/datasets python spaces/playground/app.py   # MNIST already on disk
    ZTG_PLAYGROUND_PROFILE=smoke python spaces/playground/app.py      # tiny synthetic data, no MNIST

The lessons, their settings, bounds and pictures are what each lesson declares as `PLAYGROUND`
(training/playground.py): no lesson is named here. A run is the lesson's own code, built by
`training.cli.make_run` as `python -m training` builds it (profile `cpu`, or `smoke` with
$ZTG_PLAYGROUND_PROFILE, plus the visitor's settings as `--key=value` overrides), in a process
of its own (training/worker.py) that was started before Train with torch and the lessons
imported (the standby; ZTG_PLAYGROUND_STANDBY=0 saves its memory and starts each run's process
on Train, seconds later). Train streams its rows as a curve, a status line and the lesson's
picture; Stop asks it to save a checkpoint after the current batch. The checkpoint folder can be
tried here, downloaded as a ZIP or pushed to the visitor's Hub account with their OAuth token
(a stopped run too; its card says where it stopped), once the run is over.

Limits, enforced here and not only by the widgets: one run at a time (others see their place in
the queue; a run's process has exited before the next starts), every setting within the
lesson's bounds, `MAX_SECONDS` of wall clock per run (then the process is asked to stop, then
terminated, then killed), a visitor's files deleted an hour after their last run, no server
path on the page. A run whose process fails (an error, a NaN, killed by the system) ends with a
plain message, and the checkpoint it saved last is still offered. MNIST comes from
$ZTG_DATA_DIR (default: data/ next to this file), downloaded there at start-up when missing;
without it the page says where the files go, and linear-regression still trains.

API (every endpoint named):
    /train   (lesson, lr, epochs, batch_size, hidden_sizes, optimizer, augment) -> streamed
             (curve, status, picture)
    /stop    () -> status                      the caller's run (its session)
    /predict (sketch) -> (new model's top-3, published model's top-3, message)
    /clear   () -> an empty canvas and no readings
    /generate (seed) -> grid of digits          after an mnist-gan run
    /download () -> ZIP of the checkpoint folder (without resume/)
    /push    (repo_name) -> message             needs a Hugging Face sign-in
"""

from __future__ import annotations

import functools
import io
import os
import tempfile
import time
import zipfile
from pathlib import Path

import gradio as gr
import torch

# shared/ and training/: in a deployed Space the copies next to this file (a script's own folder
# leads the import path); in a clone the installed project (`make setup`, an editable install).
from shared import serving, sketchpad
from shared.models import MODELS
from shared.preprocessing import sketch_to_mnist
from shared.weights import load_models
from training import playground
from training.playground import Number, Refused
from training.worker import Worker, keep_standby

HERE = Path(__file__).resolve().parent

DATA_DIR = Path(os.environ.get("ZTG_DATA_DIR") or HERE / "data")
# The data folder as the page may name it: never a path of the server.
DATA_WHERE = "the folder $ZTG_DATA_DIR names" if os.environ.get("ZTG_DATA_DIR") else "data/ next to app.py"
DOWNLOAD_TIMEOUT = 30  # seconds without an answer before a start-up download gives up
# The training profile runs start from (the visitor's settings override it): `cpu`, or `smoke`,
# every lesson on tiny synthetic data in seconds, which needs no MNIST (the tests use it).
PROFILE = os.environ.get("ZTG_PLAYGROUND_PROFILE", "cpu")
if PROFILE not in ("cpu", "smoke"):
    raise SystemExit(f"ZTG_PLAYGROUND_PROFILE must be cpu or smoke, not {PROFILE!r}")
WORK = Path(tempfile.gettempdir()) / "zero-to-gans-playground"
MAX_SECONDS = float(os.environ.get("ZTG_PLAYGROUND_MAX_SECONDS", 120))  # wall clock per run
FILES_MAX_AGE = 3600  # seconds a visitor's checkpoints are kept after their last run
PRUNE_EVERY = 300  # seconds between looks for visitor folders past FILES_MAX_AGE
UPDATE_EVERY = 0.4  # seconds between streamed updates at most (a redraw costs ~0.1 s)
QUEUE_SIZE = 16  # visitors waiting at most: runs take up to MAX_SECONDS each, one at a time
OUTPUTS = serving.OutputFiles("playground")  # pictures, generated grids and ZIPs, as Gradio should get them

OFFERED = playground.offered()  # lesson -> its PlaygroundSettings, in course order
# The page opens on the first lesson whose trained model can be tried here.
DEFAULT = next((name for name, settings in OFFERED.items() if settings.tried_with), next(iter(OFFERED)))
# Each lesson's data made ready (downloaded) before the server serves: {lesson: why it cannot train here}.
DATA_PROBLEMS = playground.data_problems(OFFERED, PROFILE, DATA_DIR, DATA_WHERE, timeout=DOWNLOAD_TIMEOUT)
PUBLISHED, PUBLISHED_MISSING = load_models([n for n, s in OFFERED.items() if s.tried_with == "drawing"],
                                           HERE / "README.md", "playground")
RUNS: dict[str, Worker] = {}  # a visitor's folder name -> their latest run


def refuse(message) -> gr.Error:
    """An error for the page: its message only (no traceback in the server's log either)."""
    return gr.Error(str(message), print_exception=False)


# ---- a run, streamed -----------------------------------------------------------------------------


def train(lesson, lr, epochs, batch_size, hidden_sizes, optimizer, augment, request: gr.Request):
    """Stream (curve, status, picture) while the lesson trains; ends when its process has exited."""
    settings = OFFERED.get(lesson)
    try:
        if settings is None:
            raise Refused(f"Unknown lesson {lesson!r}; choose one of {', '.join(OFFERED)}.")
        if lesson in DATA_PROBLEMS:
            raise Refused(DATA_PROBLEMS[lesson])
        args = playground.overrides(settings, dict(lr=lr, epochs=epochs, batch_size=batch_size,
                                                   hidden_sizes=hidden_sizes, optimizer=optimizer, augment=augment))
    except Refused as error:
        raise refuse(error) from None
    visitor = WORK / _key(request)
    out_dir = visitor / f"run-{time.time_ns()}"
    out_dir.mkdir(parents=True)
    os.utime(visitor)
    worker = RUNS[_key(request)] = Worker(lesson, args, profile=PROFILE, data_dir=DATA_DIR, out_dir=out_dir,
                                          max_seconds=MAX_SECONDS)
    worker.start()  # returns once the previous run's process has exited
    yield from playground.stream(worker, settings, int(float(epochs)), OUTPUTS, UPDATE_EVERY)


# ---- housekeeping ----------------------------------------------------------------------------------


def prune() -> None:
    """Delete visitors' folders untouched for FILES_MAX_AGE (never the one of a run in progress)."""
    # Copies of RUNS: this runs in the pruning thread while requests add runs.
    serving.prune_folders(WORK, FILES_MAX_AGE, keep={w.out_dir.parent for w in list(RUNS.values()) if w.alive})
    for key in [k for k, w in list(RUNS.items()) if not w.out_dir.exists()]:
        RUNS.pop(key, None)


serving.every(PRUNE_EVERY, prune, "prune-visitors")


# ---- endpoints ---------------------------------------------------------------------------------


def stop(request: gr.Request):
    worker = RUNS.get(_key(request))
    if worker is None or not worker.alive:
        return "No run of yours is in progress."
    worker.stop()
    return "Stopping after the current batch…"


def finished_run(request, idle: bool = False) -> Worker:
    """The visitor's latest run that has a checkpoint on disk. `idle`: and no longer training, for
    a ZIP or a push, which read the whole folder (a run replaces it by renames after every epoch)."""
    worker = RUNS.get(_key(request))
    if idle and worker is not None and worker.alive:
        raise refuse("Your run is still training: press Stop (the model so far is kept) or let it finish, "
                     "then take it home.")
    if worker is None or not (worker.checkpoint / "model.safetensors").is_file():
        raise refuse("Train a model first (nothing of yours is saved yet).")
    return worker


def trained_model(worker: Worker):
    """The visitor's model, from its checkpoint folder (strict, safetensors, eval mode), loaded
    once per checkpoint: a canvas asks on every stroke, and a run rewrites the folder each epoch."""
    weights = worker.checkpoint / "model.safetensors"
    return _checkpoint(worker.lesson, str(worker.checkpoint), weights.stat().st_mtime_ns)


@functools.lru_cache(maxsize=4)  # a few visitors trying their models at once; MNIST models are small
def _checkpoint(lesson: str, folder: str, mtime_ns: int):
    return MODELS[lesson].from_pretrained(Path(folder))


def top3(model, tensor) -> dict[str, float]:
    with torch.inference_mode():
        probabilities = model(tensor).softmax(dim=1)[0].tolist()
    return {str(d): p for d, p in enumerate(probabilities)}


def predict(sketch, request: gr.Request):
    """A drawing -> (the new model's top-3, the published model's top-3, message)."""
    try:
        worker = finished_run(request)
    except gr.Error:
        return None, None, "Train a model first, then draw a digit here."
    if OFFERED[worker.lesson].tried_with != "drawing":
        return None, None, f"{worker.lesson} does not read digits; train an MNIST classifier to try this."
    image = sketchpad.drawing(canvas, sketch)
    digit = sketch_to_mnist(image) if image is not None else None
    if digit is None:
        return None, None, "Draw a digit (0-9) on the canvas."
    mine = top3(trained_model(worker), digit.tensor)
    published = PUBLISHED.get(worker.lesson)
    theirs = top3(published.model, digit.tensor) if published else None
    best = max(mine, key=mine.get)
    note = f"Your {worker.lesson} says **{best}** ({mine[best]:.0%})"
    if published is None:
        note += f"; the published {worker.lesson} is not available here."
    else:
        other = max(theirs, key=theirs.get)
        note += f"; the published one says **{other}** ({theirs[other]:.0%})."
    return mine, theirs, note


SEED = Number("seed", 0, 0, 2**31 - 1, integer=True)


def generate(seed, request: gr.Request):
    """After a generator's run: 64 images from it, the noise drawn from `seed`."""
    from training.plots import image_grid

    worker = finished_run(request)
    if OFFERED[worker.lesson].tried_with != "seed":
        generators = ", ".join(name for name, settings in OFFERED.items() if settings.tried_with == "seed")
        raise refuse(f"Train {generators} first to generate digits.")
    try:
        seed = SEED.check("Seed", seed)
    except Refused as error:
        raise refuse(error) from None
    generator = trained_model(worker)
    latent = torch.randn(64, generator.latent_dim, generator=torch.Generator().manual_seed(seed))
    with torch.inference_mode():
        images = (generator(latent) + 1) / 2
    return OUTPUTS.png(image_grid(images, nrow=8), f"{worker.lesson}-seed-{seed}.png")


def download(request: gr.Request) -> str:
    """The checkpoint folder as a ZIP (a Hub model repo: everything but resume/)."""
    from training.hub import files_to_upload

    worker = finished_run(request, idle=True)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zipped:
        for name in files_to_upload(worker.checkpoint):
            zipped.write(worker.checkpoint / name, f"{worker.lesson}/{name}")
    return OUTPUTS.write(buffer.getvalue(), f"{worker.lesson}.zip")


def push(repo_name, request: gr.Request, profile: gr.OAuthProfile | None, oauth_token: gr.OAuthToken | None):
    """The visitor's checkpoint, finished or stopped, to their own account (needs their sign-in)."""
    return playground.push_checkpoint(finished_run(request, idle=True).checkpoint, repo_name, profile, oauth_token)


def leave(request: gr.Request) -> None:
    """The tab was closed: stop the visitor's run (the checkpoint stays until pruned)."""
    stop(request)


def _key(request) -> str:
    """A visitor's folder name: their session hash, reduced to safe characters."""
    raw = getattr(request, "session_hash", None) or "anonymous"
    return "".join(c for c in str(raw) if c.isalnum())[:64] or "anonymous"


# ---- the page --------------------------------------------------------------------------------------


def widest(name: str) -> Number:
    """A numeric setting's widget as built: every lesson's range (the API may ask for any lesson;
    the server checks the lesson's own), at the default lesson's value. The page narrows it."""
    numbers = [getattr(settings, name) for settings in OFFERED.values()]
    return Number(name, getattr(OFFERED[DEFAULT], name).default, min(n.low for n in numbers),
                  max(n.high for n in numbers))


def lesson_settings(lesson: str):
    """The widgets for `lesson`: its settings at their defaults, with exactly the bounds and choices
    the server accepts; the others hidden, and the seed box only after a lesson that generates."""
    settings = OFFERED.get(lesson, OFFERED[DEFAULT])
    lr, hidden, optimizer, augment = settings.lr, settings.hidden_sizes, settings.optimizer, settings.augment
    return (gr.update(value=lr.default, minimum=lr.low, maximum=lr.high,
                      label=f"Learning rate ({lr.low:g} to {lr.high:g})"),
            *(gr.update(value=n.default, minimum=n.low, maximum=n.high) for n in (settings.epochs, settings.batch_size)),
            gr.update(visible=False) if hidden is None else gr.update(
                visible=True, value=hidden.default,
                label=f"Hidden sizes: 1 to {hidden.most_layers} layers of {hidden.low} to {hidden.high} units"),
            gr.update(visible=False) if optimizer is None else gr.update(
                visible=True, choices=list(optimizer.choices), value=optimizer.initial),
            gr.update(visible=False) if augment is None else gr.update(visible=True, value=augment.default),
            gr.update(visible=settings.tried_with == "seed"))


ON_SPACE = bool(os.environ.get("SPACE_ID"))  # Sign-in with Hugging Face exists only on a Space
LR, EPOCHS, BATCH = widest("lr"), widest("epochs"), widest("batch_size")
OPTIMIZERS = list(dict.fromkeys(name for s in OFFERED.values() if s.optimizer for name in s.optimizer.choices))

with gr.Blocks(title="Zero to GANs: training playground", delete_cache=serving.DELETE_CACHE) as demo:
    gr.Markdown("# Training playground\nTrain a lesson of *Deep Learning with PyTorch: Zero to GANs* "
                "here, live: pick it, set what it teaches, press **Train** and watch. One run at a time "
                f"on this server, at most {MAX_SECONDS:.0f} s each; others wait their turn.")
    for problem in dict.fromkeys(DATA_PROBLEMS.values()):
        gr.Markdown(f"**{problem}**")
    with gr.Row(equal_height=False):
        with gr.Column(scale=2):
            lesson = gr.Dropdown(list(OFFERED), value=DEFAULT, label="Lesson", elem_id="lesson")
            lr = gr.Number(LR.default, minimum=LR.low, maximum=LR.high, label="Learning rate", elem_id="lr")
            epochs = gr.Slider(EPOCHS.low, EPOCHS.high, value=EPOCHS.default, step=1, label="Epochs", elem_id="epochs")
            batch_size = gr.Slider(BATCH.low, BATCH.high, value=BATCH.default, step=1, label="Batch size",
                                   elem_id="batch-size")
            hidden_sizes = gr.Textbox("32", label="Hidden sizes (e.g. 128,64)", visible=False, elem_id="hidden")
            optimizer = gr.Radio(OPTIMIZERS, value=OPTIMIZERS[0], label="Optimizer", elem_id="optimizer")
            augment = gr.Checkbox(True, label="Augmentation (random shifts, rotations, scaling)", visible=False,
                                  elem_id="augment")
            with gr.Row():
                train_button = gr.Button("Train", variant="primary", elem_id="train-button")
                stop_button = gr.Button("Stop", variant="stop", elem_id="stop-button")
        with gr.Column(scale=3):
            status = gr.Markdown("Pick a lesson and press Train.", elem_id="status")
            curve = gr.Plot(label="Loss and validation accuracy", elem_id="curve", format="png")
            picture = gr.Image(label="After the last epoch", interactive=False, format="png", elem_id="picture",
                               buttons=[])
    with gr.Tab("Try your model"):
        with gr.Row(equal_height=False):
            with gr.Column():
                canvas = sketchpad.build("try-canvas", label="Draw a digit", side=420)
                clear_button = gr.Button("Clear", variant="secondary", elem_id="clear-button")
            with gr.Column():
                mine = gr.Label(num_top_classes=3, label="Your model", elem_id="mine")
                theirs = gr.Label(num_top_classes=3, label="The published model", elem_id="theirs")
                verdict = gr.Markdown(elem_id="verdict")
        with gr.Column(visible=OFFERED[DEFAULT].tried_with == "seed", elem_id="generator") as generator_box:
            with gr.Row():
                seed = gr.Number(0, label="Seed", precision=0, elem_id="seed")
                generate_button = gr.Button("Generate digits", elem_id="generate-button")
            grid = gr.Image(label="Generated digits", interactive=False, format="png", elem_id="grid", buttons=[])
    with gr.Tab("Take it home"):
        gr.Markdown("The checkpoint folder is what `python -m training` writes: a Hugging Face model repo "
                    "(the ZIP leaves out `resume/`). A stopped run can be downloaded or pushed too: its "
                    "model card says where it stopped.")
        download_button = gr.Button("Download the checkpoint (ZIP)", elem_id="download-button")
        archive = gr.File(label="Checkpoint", elem_id="archive")
        gr.LoginButton() if ON_SPACE else gr.Markdown("Signing in with Hugging Face works on a Space; here, "
                                                      "download the ZIP.")
        repo_name = gr.Textbox("zero-to-gans-playground", label="Repo name in your account", elem_id="repo-name")
        push_button = gr.Button("Push to my account", elem_id="push-button")
        pushed = gr.Markdown(elem_id="pushed")

    widgets = [lr, epochs, batch_size, hidden_sizes, optimizer, augment, generator_box]
    lesson.change(lesson_settings, lesson, widgets, api_name="lesson_settings", api_visibility="private")
    demo.load(lesson_settings, lesson, widgets, api_name="page_settings", api_visibility="private",
              queue=False)  # a page opened while visitors queue to train gets its bounds at once
    train_button.click(train, [lesson, lr, epochs, batch_size, hidden_sizes, optimizer, augment],
                       [curve, status, picture], api_name="train", concurrency_limit=1, concurrency_id="train")
    stop_button.click(stop, None, status, api_name="stop", concurrency_limit=None, queue=False)
    readings = [canvas.change(predict, canvas, [mine, theirs, verdict], api_name="predict", preprocess=False,
                              trigger_mode="always_last", show_progress="hidden",
                              js=sketchpad.drop_cleared_drawing_js(canvas))]
    sketchpad.wire_clear(demo, canvas, clear_button, [mine, theirs, verdict], lambda: (None, None, ""),
                         readings=readings)
    generate_button.click(generate, seed, grid, api_name="generate")
    download_button.click(download, None, archive, api_name="download")
    push_button.click(push, repo_name, pushed, api_name="push")
    demo.unload(leave)

serving.queue(demo, max_size=QUEUE_SIZE)

if __name__ == "__main__":
    if os.environ.get("ZTG_PLAYGROUND_STANDBY", "1") != "0":
        keep_standby()  # a training process with torch imported, waiting for the next Train
    serving.launch(demo)
