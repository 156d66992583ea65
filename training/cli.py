"""Command line: `python -m training <lesson|all> [options] [--key=value ...]`.

`all` runs every lesson in course order. Before each it prints "lesson k of N" and how long
the job has left (training.report.JobClock: the lessons' README times, scaled by this
machine's pace on the finished ones); at its end it prints one table of the results and
writes it, with each lesson's figures, to OUT_DIR/RESULTS.md (training.report.results).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import time
from pathlib import Path

from training.config import ConfigError, make_config, settings_help
from training.data import DataNotFound
from training.hub import PublishError, check_can_publish, publish
from training.lessons import LESSONS

PROFILES = ("smoke", "cpu", "course")


def lesson_module(name: str):
    """The module of a registered lesson (training/lessons/__init__.py)."""
    return importlib.import_module(LESSONS[name])


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m training",
        description="Run a lesson of 'Deep Learning with PyTorch: Zero to GANs' through Accelerate.",
        epilog="Lessons, in course order: " + ", ".join(LESSONS) + ". Any setting of the lesson's "
               "config can be changed with --key=value; `python -m training LESSON --help` lists them.",
        add_help=False,
    )
    p.add_argument("lesson", nargs="?", choices=[*LESSONS, "all"], help="a lesson, or 'all' for every lesson")
    p.add_argument("-h", "--help", action="store_true", help="show this help (and the lesson's settings)")
    p.add_argument("--profile", choices=PROFILES, default=None,
                   help="smoke: seconds on tiny synthetic data; cpu: minutes on a laptop CPU (default); "
                        "course: the course's own hyperparameters, meant for a GPU")
    p.add_argument("--data-dir", type=Path, default=Path(os.environ.get("ZTG_DATA_DIR", "data")),
                   help="where datasets are found or downloaded (default: $ZTG_DATA_DIR or data/)")
    p.add_argument("--out-dir", type=Path, default=Path("checkpoints"),
                   help="checkpoint folders are written to OUT_DIR/<lesson>/ (default: checkpoints/)")
    p.add_argument("--resume", action="store_true", help="continue from the checkpoint in OUT_DIR/<lesson>/")
    p.add_argument("--push-to-hub", metavar="ORG/NAME",
                   help="when training ends, make this Hub model repo mirror the checkpoint folder in one "
                        "commit (files gone from the folder are deleted there; resume/ is never uploaded). "
                        "With 'all': an org or user, each lesson goes to ORG/<lesson>")
    p.add_argument("--private", action="store_true",
                   help="with --push-to-hub: create the repo private (default: the account's default "
                        "visibility); an existing public repo is refused")
    p.add_argument("--mixed-precision", choices=("no", "bf16", "fp16"), default=None,
                   help="default: what `accelerate launch`/`accelerate config` says, else bf16 on a GPU, no on a CPU")
    p.add_argument("--tracker", choices=("trackio", "tensorboard"), default=None,
                   help="also log the running means (every 50 batches) and the per-epoch metrics to this "
                        "tracker (through Accelerate); tensorboard's files go into the checkpoint's runs/")
    p.add_argument("--progress-every", type=float, default=None, metavar="SECONDS",
                   help="where stderr is no terminal (a log file, CI, nohup): a progress line every SECONDS "
                        "(default 30); a terminal gets a progress bar")
    return p


def lesson_config(name: str, overrides: list[str], *, profile: str | None, resume: bool, out_dir: Path):
    """(module, profile, config) of a lesson as the command line runs it; reads no weights."""
    from training import checkpoint

    module = lesson_module(name)
    # --resume: the saved run's profile and settings, then any override given now (e.g. more --epochs).
    saved = checkpoint.settings(out_dir / name) if resume else None
    profile = saved["profile"] if saved is not None else profile or "cpu"
    config = make_config(module.Config, module.PROFILES[profile], overrides,
                         base=saved["config"] if saved is not None else None)
    return module, profile, config


def make_run(name: str, overrides: list[str], *, profile: str | None, data_dir: Path, out_dir: Path,
             resume: bool = False, mixed_precision: str | None = None, tracker: str | None = None,
             on_progress=None, progress_every: float | None = None, job=None):
    """The lesson module and its Run, built as the command line builds them (the playground Space too)."""
    from training import checkpoint
    from training.run import PROGRESS_EVERY, Run, make_accelerator

    module, profile, config = lesson_config(name, overrides, profile=profile, resume=resume, out_dir=out_dir)
    saved = checkpoint.load(out_dir / name) if resume else None  # the weights and states, read once
    accelerator = make_accelerator(mixed_precision, tracker, out_dir, seed=getattr(config, "seed", 0))
    run = Run(name, module.TASK, config, profile, data_dir, out_dir, accelerator, saved=saved,
              on_progress=on_progress, job=job,
              progress_every=PROGRESS_EVERY if progress_every is None else progress_every)
    batch = f", global batch {config.batch_size} ({run.local_batch(config.batch_size)} per process)" \
        if hasattr(config, "batch_size") else ""
    run.print(f"[{name}] profile {profile}, {accelerator.num_processes} process(es) on {accelerator.device}, "
              f"mixed precision {accelerator.mixed_precision}{batch}, checkpoint {run.folder}")
    return module, run


def repo_id_of(name: str, args) -> str:
    return args.push_to_hub if args.lesson != "all" else f"{args.push_to_hub}/{name}"


def check_data(plan: dict[str, list[str]], args) -> dict[str, str | None]:
    """Before any lesson trains, every lesson's settings are valid and the data it reads is on disk
    or downloadable now (each lesson's `DATA` check; a lesson without one brings its data).
    Returns each lesson's profile (None: nothing to --resume, which the lesson itself says).

    A dataset missing offline then stops `all` in its first seconds instead of at the lesson
    that needs it; nothing is decoded or downloaded here (a HEAD request per missing dataset).
    """
    problems: dict[object, str | None] = {}  # one check per dataset, however many lessons read it
    profiles: dict[str, str | None] = {}
    for name, overrides in plan.items():
        try:
            module, profiles[name], config = lesson_config(name, overrides, profile=args.profile,
                                                           resume=args.resume, out_dir=args.out_dir)
        except FileNotFoundError:  # nothing to --resume: the lesson itself says so
            profiles[name] = None
            continue
        check = getattr(module, "DATA", None)
        if check is not None and not getattr(config, "synthetic_data", False) and check not in problems:
            problems[check] = check(args.data_dir)
    missing = [problem for problem in problems.values() if problem]
    if missing:
        raise DataNotFound("\n\n".join(missing) + "\n\nNothing was trained.")
    return profiles


def run_lesson(name: str, args, overrides: list[str], job=None) -> dict:
    from training.report import human

    module, run = make_run(name, overrides, profile=args.profile, data_dir=args.data_dir, out_dir=args.out_dir,
                           resume=args.resume, mixed_precision=args.mixed_precision, tracker=args.tracker,
                           progress_every=args.progress_every, job=job)
    accelerator = run.accelerator
    metrics = module.train(run)
    run.print(f"[{name}] done: " + ", ".join(f"{k} {human(v)}" for k, v in metrics.items() if k != "versions"))
    if args.push_to_hub and accelerator.is_main_process:
        repo_id = repo_id_of(name, args)
        try:
            url = publish(run.folder, repo_id, private=True if args.private else None)
        except PublishError as error:
            retry = f"python -m training.hub {run.folder} {repo_id}" + (" --private" if args.private else "")
            raise PublishError(f"{error}\nThe checkpoint is kept; publish it with `{retry}`") from None
        run.print(f"[{name}] published to {url}")
    accelerator.wait_for_everyone()
    return metrics


def main(argv: list[str] | None = None) -> None:
    from training.run import NonFiniteLoss, TrainingStopped

    args, overrides = parser().parse_known_args(argv)
    if args.help or args.lesson is None:
        parser().print_help()
        if args.lesson and args.lesson != "all":
            module = lesson_module(args.lesson)
            print(f"\nsettings of {args.lesson} (default, then per profile):")
            print(settings_help(module.Config, module.PROFILES))
        sys.exit(0 if args.help else 2)
    if args.push_to_hub and args.lesson != "all" and "/" not in args.push_to_hub:
        sys.exit("error: --push-to-hub takes ORG/NAME (a Hub model repo id)")
    if args.private and not args.push_to_hub:
        sys.exit("error: --private goes with --push-to-hub")
    names = list(LESSONS) if args.lesson == "all" else [args.lesson]
    try:
        if args.lesson == "all":
            for override in overrides:
                if not any(_applicable(lesson_module(n).Config, [override]) for n in names):
                    raise ConfigError(f"no lesson has the setting {override.split('=')[0]}")
        if args.push_to_hub:  # a missing token or a bad repo id stops the run now, not after training
            for name in names:
                check_can_publish(repo_id_of(name, args))
        # With 'all', a setting applies to the lessons that have it.
        plan = {name: _applicable(lesson_module(name).Config, overrides) if args.lesson == "all" else overrides
                for name in names}
        profiles = check_data(plan, args)
        if args.lesson == "all":
            run_all(plan, args, profiles)
        else:
            run_lesson(args.lesson, args, overrides)
        from accelerate import PartialState

        PartialState().destroy_process_group()
    except TrainingStopped as stop:
        print(f"{stop}; checkpoint saved. Continue with the same command plus --resume.", file=sys.stderr)
        sys.exit(0)
    except (ConfigError, DataNotFound, FileNotFoundError, ValueError, NonFiniteLoss, PublishError) as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(1 if isinstance(error, NonFiniteLoss) else 3 if isinstance(error, PublishError) else 2)


def run_all(plan: dict[str, list[str]], args, profiles: dict[str, str | None]) -> None:
    """Every lesson in course order, saying where the job stands, then the results table and page.
    `profiles`: each lesson's, as `check_data` read them."""
    from accelerate import PartialState

    from training.report import JobClock, JobPlace, duration, results

    estimates = {}
    for name in plan:
        reference = getattr(lesson_module(name), "REFERENCE", None)
        estimates[name] = reference.seconds if reference is not None and reference.profile == profiles[name] else None
    clock, main_process = JobClock(estimates), PartialState().is_main_process
    for index, (name, overrides) in enumerate(plan.items(), 1):
        place = JobPlace(index, len(plan), clock.after(name))
        if main_process:
            print(f"[all] lesson {index} of {len(plan)}: {name}; job left {place.job_left(clock.estimate(name))}",
                  flush=True)
        started = time.monotonic()
        run_lesson(name, args, overrides, job=place)
        clock.finished(name, time.monotonic() - started)
    if main_process:
        table, page = results(args.out_dir, {name: lesson_module(name) for name in plan}, clock.walls)
        (args.out_dir / "RESULTS.md").write_text(page + "\n")
        print(f"\n[all] {len(plan)} lessons in {duration(sum(clock.walls.values()))}; "
              f"results (also in {args.out_dir / 'RESULTS.md'}):\n{table}", flush=True)


def _applicable(config_cls, overrides: list[str]) -> list[str]:
    from training.config import field_types

    keys = field_types(config_cls)
    return [o for o in overrides if o.lstrip("-").split("=")[0].replace("-", "_") in keys]
