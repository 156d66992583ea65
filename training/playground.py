"""What a lesson offers in the training playground Space, declared by the lesson itself.

A lesson that the playground offers sets, next to its `Config` and `PROFILES`:

    PLAYGROUND = PlaygroundSettings(
        lr=Number("lr", 1e-3, 1e-5, 1.0), epochs=Number("epochs", 3, 1, 5, integer=True),
        batch_size=Number("batch_size", 128, 16, 1024, integer=True),
        optimizer=Choice("optimizer", {"Adam": "adam", "SGD": "sgd"}),
        picture=DIGIT_PREDICTIONS, tried_with="drawing", data=mnist_data)

Each setting names the config field it changes (`max_lr` where the lesson's rate is called
that), its default on the page and its bounds: the page's widgets take exactly these ranges
and choices, and the server refuses anything outside them (`overrides`). A setting left None
is not shown for that lesson. `fixed` are overrides always added (say a smaller evaluation
than the cpu profile's). The bounds keep a run within the Space's time cap on 2 cores.

`picture` is the lesson's picture after each epoch, in two halves: `take(run, epoch)` runs in
the training process and returns plain data (lists, numbers, bytes: it crosses a pipe), and
`draw(data, title)` runs in the server and returns a PNG. `tried_with` says what a visitor can
do with the trained model ("drawing": read a drawn digit; "seed": generate from a seed), and
`data(data_dir, where)` makes the lesson's dataset ready before the server serves (a download)
and returns None, or what the page says to do when it cannot (`where`: the data folder as the
page may name it, never a server path).
"""

from __future__ import annotations

import functools
import io
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal


class Refused(ValueError):
    """A visitor's setting out of bounds; the message is for the visitor."""


@dataclass(frozen=True)
class Number:
    key: str  # the config field
    default: float
    low: float
    high: float
    integer: bool = False

    def check(self, label: str, value):
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise Refused(f"{label} must be a number (got {value!r}).") from None
        if not self.low <= number <= self.high or (self.integer and number != int(number)):
            kind = "a whole number" if self.integer else "a number"
            raise Refused(f"{label} must be {kind} from {self.low:g} to {self.high:g} (got {value!r}).")
        return int(number) if self.integer else number


@dataclass(frozen=True)
class Sizes:
    """Layer widths typed as `128,64`."""
    key: str
    default: str
    most_layers: int
    low: int
    high: int

    def check(self, label: str, text) -> str:
        try:
            sizes = [int(part) for part in str(text).replace(" ", "").split(",")]
        except ValueError:
            sizes = []
        if not 1 <= len(sizes) <= self.most_layers or not all(self.low <= s <= self.high for s in sizes):
            raise Refused(f"{label}: 1 to {self.most_layers} layers separated by commas, each {self.low} to "
                          f"{self.high} units, e.g. 128,64 (got {text!r}).")
        return ",".join(map(str, sizes))


@dataclass(frozen=True)
class Choice:
    key: str
    choices: dict[str, str]  # the name on the page -> the config's value
    default: str = ""  # a name on the page; the first one when empty

    @property
    def initial(self) -> str:
        return self.default or next(iter(self.choices))

    def check(self, label: str, value) -> str:
        if value not in self.choices:
            raise Refused(f"{label} must be one of {', '.join(self.choices)} (got {value!r}).")
        return self.choices[value]


@dataclass(frozen=True)
class Switch:
    key: str
    default: bool

    def check(self, label: str, value) -> bool:
        if not isinstance(value, bool):
            raise Refused(f"{label} is on or off (true or false), got {value!r}.")
        return value


@dataclass(frozen=True)
class Picture:
    take: Callable  # (run, epoch) -> plain data, in the training process
    draw: Callable  # (data, title) -> PNG bytes, in the server


@dataclass(frozen=True)
class PlaygroundSettings:
    lr: Number
    epochs: Number
    batch_size: Number
    hidden_sizes: Sizes | None = None
    optimizer: Choice | None = None
    augment: Switch | None = None
    fixed: tuple[str, ...] = ()
    picture: Picture | None = None
    tried_with: Literal["drawing", "seed"] | None = None
    data: Callable[[Path, str], str | None] | None = None

    def settings(self) -> dict:
        """The settings a visitor may change, by their name on the page (None: not offered)."""
        return {name: getattr(self, name) for name in LABELS}


# The page's settings, in its order, with the words its messages use.
LABELS = {"lr": "Learning rate", "epochs": "Epochs", "batch_size": "Batch size", "hidden_sizes": "Hidden sizes",
          "optimizer": "Optimizer", "augment": "Augmentation"}


def offered() -> dict[str, PlaygroundSettings]:
    """Every lesson that declares PLAYGROUND, in course order."""
    from training.cli import lesson_module
    from training.lessons import LESSONS

    declared = {name: getattr(lesson_module(name), "PLAYGROUND", None) for name in LESSONS}
    return {name: settings for name, settings in declared.items() if settings is not None}


def overrides(settings: PlaygroundSettings, values: dict) -> list[str]:
    """A visitor's values (by page name) -> `--key=value` overrides, each checked against its bounds."""
    result = []
    for name, setting in settings.settings().items():
        if setting is not None:
            result.append(f"--{setting.key}={setting.check(LABELS[name], values.get(name))}")
    return result + list(settings.fixed)


# ---- pictures ---------------------------------------------------------------------------------

PICTURE_DIGITS = 24  # test digits shown with their predictions


def figure_png(figure) -> bytes:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=80)
    plt.close(figure)
    return buffer.getvalue()


@functools.cache
def _test_digits(data_dir: Path, synthetic: bool):
    """The first test digits, read once per process (the worker trains one run)."""
    from training.mnist_data import synthetic_digits

    if synthetic:
        digits = synthetic_digits(PICTURE_DIGITS, seed=2)
        return digits.inputs, digits.labels
    from torchvision.datasets import MNIST

    test = MNIST(data_dir, train=False, download=False)
    return test.data[:PICTURE_DIGITS].clone(), test.targets[:PICTURE_DIGITS].clone()


def _take_digit_predictions(run, epoch: int) -> dict:
    import torch

    from shared.preprocessing import normalize_mnist

    images, labels = _test_digits(run.data_dir, bool(getattr(run.config, "synthetic_data", False)))
    model = run.published_model
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            predicted = model(normalize_mnist(images.to(run.device))).argmax(1).tolist()
    finally:
        model.train(was_training)
    return {"images": images.numpy(), "labels": labels.tolist(), "predicted": predicted}


def _draw_digit_predictions(data: dict, title: str) -> bytes:
    import torch

    from training.plots import predictions_figure

    images = torch.from_numpy(data["images"]).unsqueeze(1).float() / 255
    return figure_png(predictions_figure(images, data["labels"], data["predicted"],
                                         [str(d) for d in range(10)], title))


DIGIT_PREDICTIONS = Picture(_take_digit_predictions, _draw_digit_predictions)


def saved_image(name: Callable[[int], str]) -> Picture:
    """A PNG the lesson writes into its checkpoint every epoch, `name(epoch)` inside the folder."""
    def take(run, epoch: int) -> bytes | None:
        path = run.folder / name(epoch)
        return path.read_bytes() if path.is_file() else None

    return Picture(take, lambda data, title: data)


def fitted_values(inputs: list, targets: list, names: list[str]) -> Picture:
    """Predicted against true values of a small regression, one colour per output."""
    def take(run, epoch: int) -> dict:
        import torch

        model = run.published_model
        with torch.no_grad():
            predicted = model(torch.tensor(inputs, dtype=torch.float32, device=run.device)).tolist()
        return {"true": targets, "predicted": predicted}

    def draw(data: dict, title: str) -> bytes:
        import matplotlib.pyplot as plt

        figure, ax = plt.subplots(figsize=(5, 4))
        for column, label in enumerate(names):
            ax.scatter([row[column] for row in data["true"]], [row[column] for row in data["predicted"]], label=label)
        top = max(max(row) for row in data["true"])
        ax.plot([0, top], [0, top], color="grey", linewidth=1, label="perfect fit")
        ax.set(xlabel="true", ylabel="predicted", title=title)
        ax.legend()
        return figure_png(figure)

    return Picture(take, draw)


# ---- data -------------------------------------------------------------------------------------


def mnist_data(data_dir: Path, where: str) -> str | None:
    """MNIST under `data_dir` (downloaded there by torchvision when missing, not decoded here):
    None, or what to do. Unlike the lesson's `DATA` check, which only looks, this downloads, and its
    message names no folder of the server (the page shows it)."""
    from training.data import DataNotFound
    from training.mnist_data import MNIST_FILES, load_mnist, on_disk

    if on_disk(Path(data_dir) / "MNIST" / "raw"):
        return None  # read by each run, in its own process: the server needs no digits
    try:
        load_mnist(data_dir)
    except DataNotFound as error:
        print(f"[playground] {error}")  # the log may name the server's folder; the page may not
        return (f"To fix it, put the four MNIST files ({', '.join(MNIST_FILES)}, or the same with .gz) in "
                f"MNIST/raw/ in {where}, or let the server reach the internet (it downloads them there at "
                "start-up, about 12 MB), then restart it.")
    return None


def data_problems(offered: dict[str, PlaygroundSettings], profile: str, data_dir: Path, where: str,
                  timeout: float) -> dict[str, str]:
    """Make every offered lesson's data ready (a download gives up after `timeout` seconds of
    silence: torchvision sets none) -> {lesson: why it cannot train here} for those still missing."""
    import socket

    from training.cli import lesson_config, lesson_module

    fixes, missing = {}, {}
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(timeout)
    try:
        for name, settings in offered.items():
            _, _, config = lesson_config(name, [], profile=profile, resume=False, out_dir=Path())
            if settings.data is None or getattr(config, "synthetic_data", False):
                continue
            if settings.data not in fixes:  # lessons that share a dataset: asked once
                fixes[settings.data] = settings.data(data_dir, where)
            if fixes[settings.data]:
                missing[name] = (lesson_module(name).TASK["dataset_name"], fixes[settings.data])
    finally:
        socket.setdefaulttimeout(previous)
    trainable = ", ".join(name for name in offered if name not in missing) or "no lesson"
    return {name: f"{dataset} is not on this server and could not be downloaded, so only {trainable} can be "
                  f"trained here. {fix}" for name, (dataset, fix) in missing.items()}


# ---- a visitor's checkpoint, home ---------------------------------------------------------------


def push_checkpoint(folder: Path, repo_name: str, profile, token) -> str:
    """Publish `folder` to a visitor's account as PROFILE/REPO_NAME in one commit, with their token
    (Gradio's OAuthProfile and OAuthToken, None when not signed in); the page's message.

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


# ---- a run as the page shows it ---------------------------------------------------------------

# Row key -> series name. Losses on the left axis, accuracy (%) on the right one.
SERIES = {"train_loss": "train loss", "val_loss": "validation loss", "val_accuracy": "validation accuracy",
          "train_loss_d": "discriminator loss", "train_loss_g": "generator loss"}


def curve_points(row: dict) -> list[dict]:
    return [{"epoch": round(float(row["epoch"]), 3), "value": float(row[k]), "series": name}
            for k, name in SERIES.items() if isinstance(row.get(k), (int, float))]


def curves_figure(points: list[dict]):
    """The curves so far (`curve_points` of every row), as a matplotlib figure for gr.Plot."""
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


def stream(worker, settings: PlaygroundSettings, epochs: int, outputs, update_every: float):
    """(curves figure, status line, picture file) while `worker` (a started `training.worker.Worker`)
    trains, at most every `update_every` seconds, then once at its end. Closed early (the visitor
    left), it stops the run. `outputs`: the Space's `shared.serving.OutputFiles`, for the pictures."""
    import time

    start = time.monotonic()
    points: list[dict] = []
    picture, latest, pending, last_yield, outcome = None, {}, None, 0.0, None
    try:
        yield curves_figure(points), "Starting the training process…", picture
        for kind, value, data in worker.events():
            if kind == "row":
                latest = value
                points += curve_points(value)
                if data is not None:
                    pending = (data, int(value["epoch"]))
                if time.monotonic() - last_yield < update_every:
                    continue
            else:
                outcome = (kind, value)
            if pending is not None and outcome is not None:  # the last picture goes out with the end
                picture = picture_file(worker.lesson, settings, outputs, *pending) or picture
                pending = None
            last_yield = time.monotonic()
            status = progress_line(latest, epochs, last_yield - start) if outcome is None \
                else final_status(worker, outcome, latest, last_yield - start)
            yield curves_figure(points), status, picture
            if pending is not None:  # drawn after the curve went out (a figure takes a while): the next update shows it
                picture = picture_file(worker.lesson, settings, outputs, *pending) or picture
                pending = None
    finally:  # the visitor left (the stream was closed): their run stops too
        if outcome is None:
            worker.stop()


def final_status(worker, outcome: tuple, latest: dict, elapsed: float) -> str:
    """The status line once the run's process has exited: done, stopped or failed, and what is kept."""
    kind, value = outcome
    kept = (worker.checkpoint / "model.safetensors").is_file()
    if kind == "done":
        shown = {k: v for k, v in value.items() if k in ("test_accuracy", "final_loss", "swd", "fid")}
        return f"**Done** in {elapsed:.0f} s: " + ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in shown.items()) \
            + ". Try it, download it or push it below."
    if kind == "stopped":
        forced = " (its process did not stop in time and was ended)" if worker.forced else ""
        return (f"**Stopped** by {worker.stop_reason} after {elapsed:.0f} s (epoch {latest.get('epoch', 0):.2f})"
                f"{forced}; " + ("the model so far is kept: try it, download it or push it below." if kept
                                 else "nothing was saved yet."))
    return f"**Error:** {value} " + ("The checkpoint it saved last is kept: try it, download it or push it below."
                                     if kept else "Nothing of it was saved.")


def picture_file(lesson: str, settings: PlaygroundSettings, outputs, data, epoch: int) -> str | None:
    """The lesson's picture after `epoch` as a file (None if it fails: never worth ending the stream)."""
    try:
        return outputs.write(settings.picture.draw(data, f"{lesson}, epoch {epoch}"), f"{lesson}-epoch-{epoch}.png")
    except Exception as error:  # noqa: BLE001
        print(f"[playground] picture of {lesson} failed: {type(error).__name__}: {error}", file=sys.stderr)
        return None
