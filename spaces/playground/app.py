"""Training playground: pick a lesson, set its hyperparameters, press Train and watch it learn.

    python spaces/playground/app.py      # or: make space SPACE=playground -> http://127.0.0.1:7860
    ZTG_DATA_DIR=../shared/datasets python spaces/playground/app.py   # MNIST already on disk
    ZTG_PLAYGROUND_PROFILE=smoke python spaces/playground/app.py      # tiny synthetic data, no MNIST

The run is the lesson's own code, built by `training.cli.make_run` exactly as `python -m
training` builds it (profile `cpu`, or `smoke` with $ZTG_PLAYGROUND_PROFILE, plus the visitor's
settings as `--key=value` overrides), in a thread of its own; its `on_progress` rows feed a
queue that the Train endpoint streams as a curve, a status line and the lesson's picture. Stop
calls `run.request_stop()`: the run saves its checkpoint after the current batch and the model
so far stays usable. The checkpoint folder is what `python -m training` writes: it can be tried
here, downloaded as a ZIP or pushed to the visitor's own Hub account with their OAuth token (on
a Space with `hf_oauth: true`), a stopped run too (`training.hub.publish(...,
allow_unfinished=True)`; its card says where it stopped). Neither reads the folder while its
run is still training.

Limits, enforced here and not only by the sliders: one training at a time (others wait in the
queue and see their place), every setting within the lesson's bounds, `MAX_SECONDS` of wall
clock per run, a visitor's files deleted an hour after their last run, no server path on the
page. MNIST is read from `$ZTG_DATA_DIR` (default: `data/` next to this file), downloaded there
by torchvision at start-up when missing (11.6 MB); when it can be neither, the page and Train
say where the files go, and linear-regression still trains.

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

import contextlib
import os
import queue
import shutil
import socket
import sys
import tempfile
import threading
import time
import zipfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
# Deployed, shared/ and training/ are copied next to this file; in the repository they are two folders up.
sys.path.insert(0, str(HERE if (HERE / "shared").is_dir() else HERE.parents[1]))

import gradio as gr  # noqa: E402
import torch  # noqa: E402

from shared import sketchpad  # noqa: E402
from shared.images import ImageError, describe_error, editor_image  # noqa: E402
from shared.models import MODELS  # noqa: E402
from shared.preprocessing import normalize_mnist, sketch_to_mnist  # noqa: E402
from shared.weights import load_models  # noqa: E402

DATA_DIR = Path(os.environ.get("ZTG_DATA_DIR") or HERE / "data")
# Where MNIST goes, as the page may say it: never a path of the server.
DATA_SHOWN = "MNIST/raw/ in the folder $ZTG_DATA_DIR names" if os.environ.get("ZTG_DATA_DIR") \
    else "data/MNIST/raw/ next to app.py"
DOWNLOAD_TIMEOUT = 30  # seconds without an answer before the start-up download of MNIST gives up
# The training profile runs start from (the visitor's settings override it): `cpu`, or `smoke`,
# every lesson on tiny synthetic data in seconds, which needs no MNIST (the tests use it).
PROFILE = os.environ.get("ZTG_PLAYGROUND_PROFILE", "cpu")
if PROFILE not in ("cpu", "smoke"):
    raise SystemExit(f"ZTG_PLAYGROUND_PROFILE must be cpu or smoke, not {PROFILE!r}")
WORK = Path(tempfile.gettempdir()) / "zero-to-gans-playground"
MAX_SECONDS = float(os.environ.get("ZTG_PLAYGROUND_MAX_SECONDS", 120))  # wall clock per run
FILES_MAX_AGE = 3600  # seconds a visitor's checkpoints, pictures and ZIPs are kept
UPDATE_EVERY = 0.4  # seconds between streamed updates at most (several per epoch; a redraw costs ~0.1 s)
CLASSIFIERS = ["mnist-logistic", "mnist-mlp", "mnist-cnn"]
OPTIMIZERS = ["Adam", "SGD"]

# Per lesson: the settings a visitor may change, with bounds that keep a run under two minutes on
# a 2-core Space; `fixed` are overrides the playground always adds (smaller evaluation budgets).
# `optimizer` maps the page's choice to the lesson's own name for it.
LESSONS: dict[str, dict] = {
    "mnist-logistic": dict(lr=(1e-3, 1e-5, 1.0), epochs=(3, 1, 5), batch_size=(128, 16, 1024),
                           optimizer={"Adam": "adam", "SGD": "sgd"}),
    "mnist-mlp": dict(lr=(2e-3, 1e-5, 1.0), epochs=(2, 1, 5), batch_size=(128, 16, 1024),
                      hidden_sizes=("32", 1, 3, 8, 512), optimizer={"Adam": "adamw", "SGD": "sgd"},
                      augment=True),
    "mnist-cnn": dict(lr=(4e-3, 1e-4, 0.05), epochs=(1, 1, 2), batch_size=(128, 32, 512), lr_key="max_lr"),
    "mnist-gan": dict(lr=(5e-4, 1e-5, 5e-3), epochs=(2, 1, 3), batch_size=(100, 32, 512),
                      fixed=["--swd_images=512", "--fid_images=256"]),  # smaller evaluations than the cpu profile
    "linear-regression": dict(lr=(1e-5, 1e-7, 1e-4), epochs=(100, 1, 500), batch_size=(5, 1, 15),
                              fixed=["--scratch_epochs=100"]),
}
PICTURE_DIGITS = 24  # test digits shown with their predictions after every epoch

DATA_PROBLEM: str | None = None
SAMPLES: tuple[torch.Tensor, torch.Tensor] | None = None  # first test digits and labels


def load_data() -> None:
    """MNIST on disk (downloaded by torchvision when missing): the lessons read it per run.

    Runs at start-up, before the server: a download that stalls gives up after DOWNLOAD_TIMEOUT
    seconds of silence (torchvision sets no timeout of its own), and a failed one leaves the
    page serving linear-regression with DATA_PROBLEM saying where the files go."""
    global DATA_PROBLEM, SAMPLES
    from training.data import DataNotFound
    from training.mnist import MNIST_FILES, load_mnist, synthetic_digits

    if PROFILE == "smoke":  # the runs see synthetic digits: so does the picture
        test = synthetic_digits(PICTURE_DIGITS, seed=2)
        SAMPLES = test.inputs, test.labels
        return
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT)
    try:
        _, test = load_mnist(DATA_DIR)
        SAMPLES = test.inputs[:PICTURE_DIGITS].clone(), test.labels[:PICTURE_DIGITS].clone()
    except DataNotFound as error:
        DATA_PROBLEM = (f"MNIST is not on this server and could not be downloaded, so only linear-regression "
                        f"can be trained here. To fix it, put the four MNIST files ({', '.join(MNIST_FILES)}, "
                        f"or the same with .gz) in {DATA_SHOWN}, or let the server reach the internet "
                        "(it downloads them there at start-up, about 12 MB), then restart it.")
        print(f"[playground] {error}", file=sys.stderr)  # the log may name the server's folder
    finally:
        socket.setdefaulttimeout(previous)


load_data()
PUBLISHED, PUBLISHED_MISSING = load_models(CLASSIFIERS, HERE / "README.md", "playground")


class Refused(ValueError):
    """A setting out of bounds or a request that cannot be served; the message is for the visitor."""


# ---- settings -------------------------------------------------------------------------------


def overrides(lesson: str, lr, epochs, batch_size, hidden_sizes, optimizer, augment) -> list[str]:
    """The page's settings -> `--key=value` overrides of the lesson's config, checked against the bounds."""
    if lesson not in LESSONS:
        raise Refused(f"Unknown lesson {lesson!r}; choose one of {', '.join(LESSONS)}.")
    spec = LESSONS[lesson]
    if lesson != "linear-regression" and DATA_PROBLEM:
        raise Refused(DATA_PROBLEM)
    result = [
        f"--{spec.get('lr_key', 'lr')}={_number('Learning rate', lr, *spec['lr'][1:])}",
        f"--epochs={_number('Epochs', epochs, *spec['epochs'][1:], integer=True)}",
        f"--batch_size={_number('Batch size', batch_size, *spec['batch_size'][1:], integer=True)}",
    ]
    if "hidden_sizes" in spec:
        result.append(f"--hidden_sizes={','.join(map(str, _sizes(hidden_sizes, *spec['hidden_sizes'][2:])))}")
    if "optimizer" in spec:
        if optimizer not in spec["optimizer"]:
            raise Refused(f"Optimizer must be one of {', '.join(spec['optimizer'])} (got {optimizer!r}).")
        result.append(f"--optimizer={spec['optimizer'][optimizer]}")
    if "augment" in spec:
        if not isinstance(augment, bool):
            raise Refused(f"Augmentation is on or off (true or false), got {augment!r}.")
        result.append(f"--augment={augment}")
    return result + spec.get("fixed", [])


def _number(name: str, value, low: float, high: float, integer: bool = False):
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise Refused(f"{name} must be a number (got {value!r}).") from None
    if not low <= number <= high or (integer and number != int(number)):
        kind = "a whole number" if integer else "a number"
        raise Refused(f"{name} must be {kind} from {low:g} to {high:g} (got {value!r}).")
    return int(number) if integer else number


def _sizes(text, most: int, fewest_units: int, most_units: int) -> list[int]:
    try:
        sizes = [int(part) for part in str(text).replace(" ", "").split(",")]
    except ValueError:
        sizes = []
    if not 1 <= len(sizes) <= most or not all(fewest_units <= s <= most_units for s in sizes):
        raise Refused(f"Hidden sizes: 1 to {most} layers separated by commas, each {fewest_units} to "
                      f"{most_units} units, e.g. 128,64 (got {text!r}).")
    return sizes


# ---- one run, in a thread --------------------------------------------------------------------


class Session:
    """A visitor's run: the thread, its queue of progress rows, and where its checkpoint is."""

    def __init__(self, lesson: str, folder: Path):
        self.lesson, self.out_dir = lesson, folder
        self.rows: queue.Queue = queue.Queue()
        self.run = None
        self.stop_asked = False
        self.thread: threading.Thread | None = None

    @property
    def checkpoint(self) -> Path:
        return self.out_dir / self.lesson

    def start(self, settings: list[str]) -> None:
        from training.cli import make_run
        from training.run import NonFiniteLoss, TrainingStopped

        def on_progress(row):
            self.rows.put(("row", row, lesson_picture(self.lesson, self.run, self.checkpoint, row)))

        def work():
            try:
                module, self.run = make_run(self.lesson, settings, profile=PROFILE, data_dir=DATA_DIR,
                                            out_dir=self.out_dir, on_progress=on_progress)
                if self.stop_asked:
                    self.run.request_stop()
                self.rows.put(("done", module.train(self.run), None))
            except TrainingStopped:
                self.rows.put(("stopped", None, None))
            except NonFiniteLoss:
                self.rows.put(("error", "The loss became NaN or infinite: lower the learning rate.", None))
            except Exception as error:  # noqa: BLE001  (reported to the visitor in words, logged here)
                print(f"[playground] {self.lesson} failed: {type(error).__name__}: {error}", file=sys.stderr)
                self.rows.put(("error", "The run failed on the server; try other settings.", None))
            finally:  # the checkpoint folder is all that stays: no model, optimizer or Accelerator
                self.run = None

        self.thread = threading.Thread(target=work, name=f"train-{self.lesson}", daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.stop_asked = True
        run = self.run  # read once: the training thread drops it when it ends
        if run is not None:
            run.request_stop()


SESSIONS: dict[str, Session] = {}  # session hash -> its latest run
TRAINING = threading.Lock()  # one run at a time, whatever the queue does


def lesson_picture(lesson: str, run, folder: Path, row: dict):
    """After an epoch, in the training thread: what the picture needs, cheap to take (no drawing)."""
    if row["kind"] != "epoch" or run is None:
        return None
    model = run.accelerator.unwrap_model(next(iter(run.models.values())))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            if lesson in CLASSIFIERS and SAMPLES is not None:
                images, _ = SAMPLES
                return model(normalize_mnist(images.to(run.device))).argmax(1).tolist()
            if lesson == "linear-regression":
                from training.lessons.linear_regression import INPUTS

                return model(torch.tensor(INPUTS, dtype=torch.float32, device=run.device)).cpu()
    finally:
        model.train(was_training)
    if lesson == "mnist-gan":
        grid = folder / "samples" / f"epoch_{int(row['epoch']):03d}.png"
        return grid.read_bytes() if grid.is_file() else None
    return None


def draw_picture(lesson: str, data, folder: Path, epoch: int) -> str | None:
    """The lesson's picture after `epoch`, as a PNG file in the visitor's folder (None if it fails:
    a picture is never worth ending the stream)."""
    try:
        return _draw_picture(lesson, data, folder, epoch)
    except Exception as error:  # noqa: BLE001
        print(f"[playground] picture of {lesson} failed: {type(error).__name__}: {error}", file=sys.stderr)
        return None


def _draw_picture(lesson: str, data, folder: Path, epoch: int) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = folder / f"picture_{epoch:03d}.png"
    if lesson == "mnist-gan":
        path.write_bytes(data)
        return str(path)
    if lesson in CLASSIFIERS:
        from training.plots import predictions_figure

        images, labels = SAMPLES
        figure = predictions_figure(images.unsqueeze(1).float() / 255, labels.tolist(), data,
                                    [str(d) for d in range(10)], f"{lesson}, epoch {epoch}")
    else:
        from training.lessons.linear_regression import TARGETS

        targets = torch.tensor(TARGETS, dtype=torch.float32)
        figure, ax = plt.subplots(figsize=(5, 4))
        for column, (name, colour) in enumerate([("apples", "tab:red"), ("oranges", "tab:orange")]):
            ax.scatter(targets[:, column], data[:, column], label=name, color=colour)
        ax.plot([0, 150], [0, 150], color="grey", linewidth=1, label="perfect fit")
        ax.set(xlabel="true yield (t/ha)", ylabel="predicted", title=f"linear-regression, epoch {epoch}")
        ax.legend()
    figure.savefig(path, dpi=80)
    plt.close(figure)
    return str(path)


def prune(now: float | None = None) -> None:
    """Delete visitors' folders untouched for FILES_MAX_AGE (never the one of a run in progress)."""
    now = time.time() if now is None else now
    active = {s.out_dir.parent for s in SESSIONS.values() if s.thread is not None and s.thread.is_alive()}
    for folder in WORK.glob("*") if WORK.is_dir() else []:
        with contextlib.suppress(OSError):
            if folder not in active and now - folder.stat().st_mtime > FILES_MAX_AGE:
                shutil.rmtree(folder)
    for key in [k for k, s in SESSIONS.items() if not s.out_dir.exists()]:
        SESSIONS.pop(key, None)


# ---- endpoints -------------------------------------------------------------------------------


def train(lesson, lr, epochs, batch_size, hidden_sizes, optimizer, augment, request: gr.Request):
    """Stream (curve, status, picture) while the lesson trains; ends when it finishes or stops."""
    try:
        settings = overrides(lesson, lr, epochs, batch_size, hidden_sizes, optimizer, augment)
    except Refused as error:
        raise gr.Error(str(error), print_exception=False) from None
    key = _key(request)
    prune()
    with TRAINING:
        visitor = WORK / key
        out_dir = visitor / f"run-{time.time_ns()}"
        out_dir.mkdir(parents=True)
        os.utime(visitor)
        session = SESSIONS[key] = Session(lesson, out_dir)
        session.start(settings)
        yield from stream(session, int(float(epochs)))


def stream(session: Session, epochs: int):
    start = time.monotonic()
    points: list[dict] = []
    status, picture, last_yield, outcome = "Starting…", None, 0.0, None
    latest = {}
    pending_picture = None
    try:
        while outcome is None:
            if time.monotonic() - start > MAX_SECONDS and not session.stop_asked:
                session.stop()
                status = f"Time limit ({MAX_SECONDS:.0f} s) reached: stopping…"
            try:
                kind, row, extra = session.rows.get(timeout=0.1)
            except queue.Empty:
                continue
            if kind == "row":
                latest = row
                points += curve_points(row)
                if extra is not None:
                    pending_picture = (extra, int(row["epoch"]))
            else:
                outcome = (kind, row)
            if time.monotonic() - last_yield >= UPDATE_EVERY or outcome is not None:
                if pending_picture is not None:
                    data, epoch = pending_picture
                    picture = draw_picture(session.lesson, data, session.out_dir, epoch) or picture
                    pending_picture = None
                if outcome is None:
                    status = progress_line(latest, epochs, time.monotonic() - start)
                last_yield = time.monotonic()
                yield frame(points), status, picture
        kind, value = outcome
        elapsed = time.monotonic() - start
        if kind == "done":
            shown = {k: v for k, v in value.items() if k in ("test_accuracy", "final_loss", "swd", "fid")}
            status = f"**Done** in {elapsed:.0f} s: " + ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in shown.items()) \
                + ". Try it, download it or push it below."
        elif kind == "stopped":
            why = "the time limit" if elapsed > MAX_SECONDS else "Stop"
            status = (f"**Stopped** by {why} after {elapsed:.0f} s (epoch {latest.get('epoch', 0):.2f}); "
                      "the model so far is kept: try it, download it or push it below.")
        else:
            status = f"**Error:** {value}"
        yield frame(points), status, picture
    finally:  # the visitor left (the stream was closed): their run stops too
        if outcome is None:
            session.stop()
        if session.thread is not None:
            session.thread.join(timeout=30)


# Row key -> series name. Losses on the left axis, accuracy (%) on the right one.
SERIES = {"train_loss": "train loss", "val_loss": "validation loss", "val_accuracy": "validation accuracy",
          "train_loss_d": "discriminator loss", "train_loss_g": "generator loss"}


def curve_points(row: dict) -> list[dict]:
    return [{"epoch": round(float(row["epoch"]), 3), "value": float(row[k]), "series": name}
            for k, name in SERIES.items() if isinstance(row.get(k), (int, float))]


def frame(points: list[dict]):
    """The curves so far, as a matplotlib figure (drawn on the server: the page gets a picture)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, losses = plt.subplots(figsize=(7, 3.2))
    accuracy = None
    for name in dict.fromkeys(p["series"] for p in points):
        xs = [p["epoch"] for p in points if p["series"] == name]
        ys = [p["value"] for p in points if p["series"] == name]
        if name == "validation accuracy":
            accuracy = accuracy or losses.twinx()
            accuracy.plot(xs, ys, "o-", color="tab:green", label=name)
            accuracy.set_ylabel("accuracy (%)")
        else:
            losses.plot(xs, ys, "o-" if name.startswith("validation") else "-", label=name)
    losses.set(xlabel="epoch", ylabel="loss")
    handles = [h for axis in (losses, accuracy) if axis is not None for h in axis.get_legend_handles_labels()[0]]
    if handles:
        losses.legend(handles=handles, loc="upper right", fontsize=8)
    figure.tight_layout()
    plt.close(figure)  # Gradio renders it; pyplot must not keep it
    return figure


def progress_line(row: dict, epochs: int, elapsed: float) -> str:
    done = float(row.get("epoch", 0))
    left = elapsed / done * (epochs - done) if done > 0 else None
    speed = row.get("samples_per_second")
    parts = [f"epoch {done:.2f} / {epochs}", f"{elapsed:.0f} s"]
    if speed:
        parts.append(f"{speed:,.0f} samples/s")
    if left is not None:
        parts.append(f"about {max(left, 0):.0f} s left")
    return "Training: " + " · ".join(parts)


def stop(request: gr.Request):
    session = SESSIONS.get(_key(request))
    if session is None or session.thread is None or not session.thread.is_alive():
        return "No run of yours is in progress."
    session.stop()
    return "Stopping after the current batch…"


def finished_session(request, idle: bool = False) -> Session:
    """The visitor's latest run that has a checkpoint on disk. `idle`: and no longer training, for
    a ZIP or a push, which read the whole folder (a run replaces it by renames after every epoch)."""
    session = SESSIONS.get(_key(request))
    if idle and session is not None and session.thread is not None and session.thread.is_alive():
        raise gr.Error("Your run is still training: press Stop (the model so far is kept) or let it "
                       "finish, then take it home.", print_exception=False)
    if session is None or not (session.checkpoint / "model.safetensors").is_file():
        raise gr.Error("Train a model first (nothing of yours is saved yet).", print_exception=False)
    return session


def trained_model(session: Session):
    """The visitor's model, from its checkpoint folder (strict, safetensors, eval mode)."""
    return MODELS[session.lesson].from_pretrained(session.checkpoint)


def top3(model, tensor) -> dict[str, float]:
    with torch.inference_mode():
        probabilities = model(tensor).softmax(dim=1)[0].tolist()
    return {str(d): p for d, p in enumerate(probabilities)}


def predict(sketch, request: gr.Request):
    """A drawing -> (the new model's top-3, the published model's top-3, message)."""
    try:
        session = finished_session(request)
    except gr.Error:
        return None, None, "Train a model first, then draw a digit here."
    if session.lesson not in CLASSIFIERS:
        return None, None, f"{session.lesson} does not read digits; train an MNIST classifier to try this."
    try:
        if isinstance(sketch, dict) and sketch.get("id"):  # the browser's canvas, posted as blobs
            sketch = canvas.preprocess(canvas.data_model.model_validate(sketch))
        image = editor_image(sketch) if isinstance(sketch, dict) else sketch
    except ImageError as error:
        raise gr.Error(str(error), print_exception=False) from None
    except Exception as error:  # noqa: BLE001
        raise gr.Error(describe_error(error), print_exception=False) from None
    digit = sketch_to_mnist(image) if image is not None else None
    if digit is None:
        return None, None, "Draw a digit (0-9) on the canvas."
    mine = top3(trained_model(session), digit.tensor)
    published = PUBLISHED.get(session.lesson)
    theirs = top3(published.model, digit.tensor) if published else None
    best = max(mine, key=mine.get)
    note = f"Your {session.lesson} says **{best}** ({mine[best]:.0%})"
    if published is None:
        note += f"; the published {session.lesson} is not available here."
    else:
        other = max(theirs, key=theirs.get)
        note += f"; the published one says **{other}** ({theirs[other]:.0%})."
    return mine, theirs, note


def clear_readings():
    return None, None, ""


def clear_drawing():
    """An empty canvas (see `shared.sketchpad.empty_value`) and no readings."""
    return sketchpad.empty_value(), *clear_readings()


def generate(seed, request: gr.Request):
    """After an mnist-gan run: 64 digits from the trained generator, the noise drawn from `seed`."""
    from training.plots import image_grid

    session = finished_session(request)
    if session.lesson != "mnist-gan":
        raise gr.Error("Train mnist-gan first to generate digits.", print_exception=False)
    try:
        seed = _number("Seed", seed, 0, 2**31 - 1, integer=True)
    except Refused as error:
        raise gr.Error(str(error), print_exception=False) from None
    generator = trained_model(session)
    latent = torch.randn(64, generator.latent_dim, generator=torch.Generator().manual_seed(seed))
    with torch.inference_mode():
        images = (generator(latent) + 1) / 2
    return image_grid(images, nrow=8)


def download(request: gr.Request) -> str:
    """The checkpoint folder as a ZIP (a Hub model repo: everything but resume/)."""
    from training.hub import files_to_upload

    session = finished_session(request, idle=True)
    archive = session.out_dir / f"{session.lesson}.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zipped:
        for name in files_to_upload(session.checkpoint):
            zipped.write(session.checkpoint / name, f"{session.lesson}/{name}")
    return str(archive)


def push_checkpoint(folder: Path, repo_name: str, profile, token) -> str:
    """Publish `folder` to the visitor's account as PROFILE/REPO_NAME in one commit, with their token.

    A stopped run is pushed too (`allow_unfinished`): the visitor pressed Stop on purpose, and the
    repo says what it holds (its card opens with where the run stopped, see training.card)."""
    from training.hub import PublishError, publish, stopped

    if profile is None or token is None:
        return ("Sign in with Hugging Face first (the button above); on a local server, download the "
                "ZIP and run `python -m training.hub FOLDER ORG/NAME` (with `--allow-unfinished` for a "
                "stopped run).")
    name = (repo_name or "").strip()
    try:
        url = publish(folder, f"{profile.username}/{name}", token=token.token, allow_unfinished=True)
    except PublishError as error:  # its message may name the folder: not a path of the server on the page
        return f"Not pushed: {str(error).replace(str(folder), folder.name)}"
    where = stopped(folder)
    note = f" It holds a run {where}, and its model card says so." if where else ""
    return f"Pushed to https://huggingface.co/{profile.username}/{name} in one commit ({url}).{note}"


def push(repo_name, request: gr.Request, profile: gr.OAuthProfile | None, oauth_token: gr.OAuthToken | None):
    """The visitor's checkpoint, finished or stopped, to their own account (needs their sign-in)."""
    session = finished_session(request, idle=True)
    return push_checkpoint(session.checkpoint, repo_name, profile, oauth_token)


def leave(request: gr.Request) -> None:
    """The tab was closed: stop the visitor's run (the checkpoint stays until pruned)."""
    session = SESSIONS.get(_key(request))
    if session is not None:
        session.stop()


def _key(request) -> str:
    """A visitor's folder name: their session hash, reduced to safe characters."""
    raw = getattr(request, "session_hash", None) or "anonymous"
    return "".join(c for c in str(raw) if c.isalnum())[:64] or "anonymous"


def lesson_settings(lesson: str):
    """Show the settings the lesson has, at its defaults and bounds."""
    spec = LESSONS.get(lesson, LESSONS["mnist-logistic"])
    lr, epochs, batch = spec["lr"], spec["epochs"], spec["batch_size"]
    return (gr.update(value=lr[0], minimum=lr[1], maximum=lr[2], label=f"Learning rate ({lr[1]:g} to {lr[2]:g})"),
            gr.update(value=epochs[0], minimum=epochs[1], maximum=epochs[2]),
            gr.update(value=batch[0], minimum=batch[1], maximum=batch[2]),
            gr.update(visible="hidden_sizes" in spec),
            gr.update(visible="optimizer" in spec),
            gr.update(visible="augment" in spec))


ON_SPACE = bool(os.environ.get("SPACE_ID"))  # Sign-in with Hugging Face exists only on a Space

with gr.Blocks(title="Zero to GANs: training playground", delete_cache=(3600, 3600)) as demo:
    gr.Markdown("# Training playground\nTrain a lesson of *Deep Learning with PyTorch: Zero to GANs* "
                "here, live: pick it, set what it teaches, press **Train** and watch. One run at a time "
                f"on this server, at most {MAX_SECONDS:.0f} s each; others wait their turn.")
    if DATA_PROBLEM:
        gr.Markdown(f"**{DATA_PROBLEM}**")
    defaults = LESSONS["mnist-logistic"]
    with gr.Row(equal_height=False):
        with gr.Column(scale=2):
            lesson = gr.Dropdown(list(LESSONS), value="mnist-logistic", label="Lesson", elem_id="lesson")
            lr = gr.Number(defaults["lr"][0], label="Learning rate (1e-05 to 1)", elem_id="lr")
            epochs = gr.Slider(1, 500, value=defaults["epochs"][0], step=1, label="Epochs", elem_id="epochs")
            batch_size = gr.Slider(1, 1024, value=defaults["batch_size"][0], step=1, label="Batch size",
                                   elem_id="batch-size")
            hidden_sizes = gr.Textbox("32", label="Hidden sizes (e.g. 128,64)", visible=False, elem_id="hidden")
            optimizer = gr.Radio(OPTIMIZERS, value="Adam", label="Optimizer", elem_id="optimizer")
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
        with gr.Row():
            seed = gr.Number(0, label="Seed (mnist-gan)", precision=0, elem_id="seed")
            generate_button = gr.Button("Generate digits", elem_id="generate-button")
        grid = gr.Image(label="Generated digits", interactive=False, format="png", elem_id="grid", buttons=[])
    with gr.Tab("Take it home"):
        gr.Markdown("The checkpoint folder is what `python -m training` writes: a Hugging Face model repo "
                    "(the ZIP leaves out `resume/`). A stopped run can be downloaded or pushed too: its "
                    "model card says where it stopped.")
        download_button = gr.Button("Download the checkpoint (ZIP)", elem_id="download-button")
        archive = gr.File(label="Checkpoint", elem_id="archive")
        if ON_SPACE:
            gr.LoginButton()
        else:
            gr.Markdown("Signing in with Hugging Face works on a Space; here, download the ZIP.")
        repo_name = gr.Textbox("zero-to-gans-playground", label="Repo name in your account", elem_id="repo-name")
        push_button = gr.Button("Push to my account", elem_id="push-button")
        pushed = gr.Markdown(elem_id="pushed")

    lesson.change(lesson_settings, lesson, [lr, epochs, batch_size, hidden_sizes, optimizer, augment],
                  api_name="lesson_settings", api_visibility="private")
    train_button.click(train, [lesson, lr, epochs, batch_size, hidden_sizes, optimizer, augment],
                       [curve, status, picture], api_name="train", concurrency_limit=1, concurrency_id="train")
    stop_button.click(stop, None, status, api_name="stop", concurrency_limit=None, queue=False)
    readings = [canvas.change(predict, canvas, [mine, theirs, verdict], api_name="predict", preprocess=False,
                              trigger_mode="always_last", show_progress="hidden",
                              js=sketchpad.drop_cleared_drawing_js(canvas))]
    # A reading still running when the canvas is emptied would land after the Clear: cancel it.
    clear_button.click(clear_drawing, None, [canvas, mine, theirs, verdict], api_name="clear",
                       show_progress="hidden", cancels=readings)
    canvas.clear(clear_readings, None, [mine, theirs, verdict], api_name="clear_readings",
                 api_visibility="private", show_progress="hidden", cancels=readings)  # the canvas's trash button
    generate_button.click(generate, seed, grid, api_name="generate")
    download_button.click(download, None, archive, api_name="download")
    push_button.click(push, repo_name, pushed, api_name="push")
    demo.load(None, js=sketchpad.page_js(canvas))  # the brush always on, the canvas all drawing area
    demo.unload(leave)

demo.queue(max_size=16, default_concurrency_limit=2)
LAUNCH = dict(max_file_size="10mb", show_error=False, enable_monitoring=False)

if __name__ == "__main__":
    demo.launch(**LAUNCH)
