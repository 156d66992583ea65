"""What a person following a run reads: numbers as people write them, time left, and the results page.

- `human(value)` and `duration(seconds)`: `24,180`, `0.1234`, `3m05s`, never `2.418e+04`.
- `Reference`: a lesson's result as the README measured it; each lesson module declares its
  own `REFERENCE` (or None), and `compare` says whether a run matched it within its spread.
- `JobClock`: the time `python -m training all` has left, from the lessons' references and
  how long the finished lessons took on this machine.
- `results(out_dir, ...)`: the table `all` prints at its end and `<out-dir>/RESULTS.md`, the
  same table with each lesson's curves and pictures under it.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from shared.models.gan import sample_grids


def human(value) -> str:
    """A number as a person writes it: thousands separated, four significant digits below 1,000,
    scientific only below 0.001 (a learning rate)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if not math.isfinite(value):
        return str(value)
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if value == 0 or abs(value) >= 1e-3:
        return f"{value:.4g}"
    return f"{value:.2e}"


def duration(seconds: float) -> str:
    """42s, 3m05s, 1h20m."""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


@dataclass(frozen=True)
class Reference:
    """A lesson's headline result as the README measured it, for `all` to compare a run with.

    `spread`: how far a run may land on the worse side and still match: a measured spread
    between seeds where the README has one (`spread_is` says which), else a tolerance.
    """

    metric: str  # a key of metrics.json
    value: float
    spread: float
    seconds: float  # the README's time for it, the whole run where it says so, else train_seconds: `all`'s estimate
    profile: str = "cpu"  # only a run of this profile is compared
    measured_on: str = "2-core AMD EPYC, fp32"
    higher_is_better: bool = True
    spread_is: str = "tolerance"

    def summary(self) -> str:
        return f"{human(self.value)} ± {human(self.spread)} ({self.profile} profile, {self.measured_on})"


def compare(reference: Reference, value: float) -> tuple[str, bool]:
    """(what a run's `value` is against `reference`, whether it is worse by more than the spread)."""
    gain = (value - reference.value) * (1 if reference.higher_is_better else -1)  # > 0: better
    difference = f"{value - reference.value:+.4g}"
    if gain < -reference.spread:
        return f"**worse by more than the spread** ({difference}, spread {human(reference.spread)})", True
    return (f"better ({difference})" if gain > reference.spread else f"within the spread ({difference})"), False


def headline(module) -> tuple[str, Reference | None]:
    """The metric a lesson is judged by: its reference's, else the first its card lists."""
    reference = getattr(module, "REFERENCE", None)
    return (reference.metric if reference else next(iter(module.TASK["metrics"]))), reference


@dataclass
class JobPlace:
    """A lesson's place in `python -m training all`, for its progress lines."""

    index: int
    total: int
    seconds_after: float | None  # the lessons after this one (JobClock.after); None: not known yet

    def progress(self, lesson_left: float | None) -> str:
        return f"lesson {self.index} of {self.total}, job left {self.job_left(lesson_left)}"

    def job_left(self, lesson_left: float | None) -> str:
        """'about 1 h 05 min' from what this lesson has left, or 'unknown'."""
        if lesson_left is None or self.seconds_after is None:
            return "unknown"
        return f"about {duration(lesson_left + self.seconds_after)}"


class JobClock:
    """Time left for `all`: lessons not yet started at their references' times, scaled by how long
    the finished ones took here against theirs (once that comparison rests on a minute of
    references: the first lessons take seconds, mostly start-up); a lesson without a
    reference for its profile at the mean of the finished lessons."""

    def __init__(self, estimates: dict[str, float | None]):
        self.estimates = estimates
        self.walls: dict[str, float] = {}

    def finished(self, lesson: str, wall_seconds: float) -> None:
        self.walls[lesson] = wall_seconds

    def pace(self) -> float:
        pairs = [(wall, self.estimates[name]) for name, wall in self.walls.items() if self.estimates[name]]
        reference = sum(estimate for _, estimate in pairs)
        return sum(wall for wall, _ in pairs) / reference if reference >= 60 else 1.0

    def estimate(self, lesson: str) -> float | None:
        if self.estimates[lesson] is not None:
            return self.estimates[lesson] * self.pace()
        return sum(self.walls.values()) / len(self.walls) if self.walls else None

    def after(self, lesson: str) -> float | None:
        """Seconds for the lessons after `lesson`; None when one of them cannot be estimated yet."""
        names = list(self.estimates)
        later = [self.estimate(name) for name in names[names.index(lesson) + 1:]]
        return None if None in later else sum(later)


def results(out_dir: Path, lessons: dict[str, object], walls: dict[str, float]) -> tuple[str, str]:
    """(the table to print, RESULTS.md) for the lessons' checkpoint folders under `out_dir`.

    `lessons`: name -> lesson module, in course order; `walls`: each lesson's seconds from its
    start to its last checkpoint in this job."""
    header = ["lesson", "metric", "result", "reference", "vs reference", "training time", "checkpoint"]
    printed, linked, sections = [], [], []
    for name, module in lessons.items():
        folder = Path(out_dir) / name
        metrics = json.loads((folder / "metrics.json").read_text())
        profile = metrics.get("profile") or json.loads((folder / "training_config.json").read_text())["profile"]
        metric, reference = headline(module)
        value = metrics.get(metric)
        if reference is None:
            shown, verdict = "none", "no reference (see the lesson's REFERENCE)"
        elif reference.profile != profile:
            shown, verdict = reference.summary(), f"not compared: this run used the {profile} profile"
        elif not isinstance(value, (int, float)):
            shown, verdict = reference.summary(), f"no {metric} in metrics.json"
        else:
            shown, (verdict, _) = reference.summary(), compare(reference, value)
        trained = f"{human(metrics.get('train_seconds', 0.0))} s"
        if name in walls:
            trained += f" ({duration(walls[name])} in all)"
        if not metrics.get("complete"):
            trained += ", unfinished"
        cells = [name, metric, human(value) if value is not None else "-", shown, verdict, trained]
        printed.append(cells + [str(folder)])
        linked.append(cells + [f"[{name}/]({name}/)"])
        sections.append(_figures(folder, name))
    table = _table(header, printed)
    page = "\n".join([
        "# Results of `python -m training all`", "",
        f"Written by `python -m training all` into `{Path(out_dir).name}/`; every number comes from the "
        "lesson's `metrics.json`. The references are the README's measurements, compared only with a run "
        "of the profile they were measured with; a result worse than its reference by more than the "
        "spread is marked in bold. Training time: `train_seconds`, then the lesson's whole time in this job.",
        "", _table(header, linked), "", *sections])
    return table, page


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(cell.replace("|", "/") for cell in row) + " |" for row in rows])


def _figures(folder: Path, name: str) -> str:
    """A lesson's section: curves first, then every picture it drew, then its last sample grid."""
    pictures = [p for p in sorted(folder.glob("*")) if p.suffix in (".png", ".gif") and p.name != "curves.png"]
    grids = list(sample_grids(folder).values())
    if (folder / "curves.png").is_file():
        pictures.insert(0, folder / "curves.png")
    pictures += grids[-1:]
    links = [f"![{name}: {p.relative_to(folder).as_posix()}]({name}/{p.relative_to(folder).as_posix()})"
             for p in pictures]
    return "\n".join([f"## {name}", "", *(links or ["(no figures)"]), ""])
