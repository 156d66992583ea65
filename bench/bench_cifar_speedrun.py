"""Time to accuracy on CIFAR-10: lesson 5's ResNet9 against the airbench methods, Muon, airbench96, and the ablation.

    python bench/bench_cifar_speedrun.py --data-dir ../shared/datasets                 # the curves
    python bench/bench_cifar_speedrun.py --data-dir ../shared/datasets --runs seeds    # 3 seeds of the paper's widths
    python bench/bench_cifar_speedrun.py --data-dir ../shared/datasets --runs muon     # airbench94_muon's recipe
    python bench/bench_cifar_speedrun.py --data-dir ../shared/datasets --runs airbench96
    python bench/bench_cifar_speedrun.py --data-dir ../shared/datasets --runs hour     # an hour of fp32: Muon, airbench96
    python bench/bench_cifar_speedrun.py --data-dir ../shared/datasets --runs ablation # each method off
    python bench/bench_cifar_speedrun.py --data-dir ../shared/datasets --runs additions # each new method on

Every run is `python -m training ...` in its own process, one after the other (on a 2-core
machine two at once would share the cores and both times would mean nothing). The baseline
is `cifar10-resnet9 --profile cpu --val_size=0` (lesson 5's recipe sized for a CPU, trained on
all 50,000 images like airbench, so both curves are test accuracy), measured in the same
invocation as the runs it is compared with. Curves are the per-epoch test accuracy against the
lesson's wall clock so far (`wall_seconds`: data loading, augmentation, evaluation and
checkpoints included, as airbench counts; `--x train` plots the training seconds instead);
airbench's per-epoch points are without test-time augmentation, its last point with it (and
its time), as the checkpoint reports. Every table names the CPU each run had.

Results are kept in OUT/<run>/ (the checkpoint folders): a run whose folder holds a finished
checkpoint is read, not trained again, so the bench can be continued after an interruption
or extended (`--runs`) and `--fresh` starts over. It prints the tables and writes
OUT/<group>-<precision>.png for each group of curves, <precision> fp32 or bf16 (and copies them to
docs/ with --docs).
`--mixed-precision bf16` runs everything under Accelerate's bf16 autocast (2.6x faster on a
Xeon with AMX; on a CPU without bf16 units it is slower), in folders of their own.
`--base` picks the setting the ablation and the additions change: `paper` (default) airbench94's SGD
recipe at the paper's widths, `cpu` the cpu profile itself (Muon at widths 48-192-192: the fp32
budget), `sgd-cpu` the SGD recipe at the cpu profile's widths. A row that leaves the base's
setting as it is (no lookahead, or Muon's recipe, for the cpu profile: it has no lookahead and is
Muon already) is left out.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

from harness.datasets import find_datasets
from training.config import as_flags
from training.lessons import cifar10_airbench

ROOT = Path(__file__).resolve().parents[1]

# airbench94_muon's recipe at widths 48-192-192, 9 epochs of 1000, the first 6 on 28x28 windows
CPU = ["cifar10-airbench", "--profile", "cpu"]
# The profile evaluates at its end only; a curve needs every epoch. A name of its own, so its folder is
# not the ablation's base run (the same profile without the evaluations) and neither retrains the other.
CPU_CURVE = [*CPU, "--eval_every=1"]
CPU_CURVE_NAME = "cpu profile (muon), every epoch evaluated"
# airbench94's SGD recipe (the course profile's settings) at widths 48-192-192, 10 epochs of 512: the cpu
# profile before Muon, and the base of the paper-widths and long rows, in parts of 256 like the cpu profile.
AIRBENCH = ["cifar10-airbench", "--profile", "course", "--widths=48,192,192", "--epochs=10", "--batch_size=512",
            "--micro_batch=256"]
PAPER = [*AIRBENCH, "--widths=64,256,256"]  # the paper's network: the 15-minute setting with bf16 on AMX
LONG = [*AIRBENCH, "--widths=128,384,384", "--epochs=15"]  # airbench95's widths and epochs: the long setting
MUON_RECIPE = as_flags(cifar10_airbench.RECIPES["airbench94_muon"])  # the lesson's recipes, as flags
AIRBENCH96_RECIPE = as_flags(cifar10_airbench.RECIPES["airbench96"])
ABLATIONS = {  # each method off in turn
    "no whitening": ["--whiten=false"],
    "no identity init": ["--identity_init=false"],
    "trained norm scales (and no 64x bias lr)": ["--frozen_norm_scale=false"],
    "no lookahead": ["--lookahead=false"],
    "no label smoothing": ["--label_smoothing=0"],
    "random flip": ["--flip=random"],
    "no translate": ["--translate=0"],
    "whole images throughout (no small windows first)": ["--crop=0"],
}  # and no test-time augmentation: not trained again, read from the full run (the ablation table in main())
ADDITIONS = {  # each newer method on in turn
    "muon (airbench94_muon's recipe)": MUON_RECIPE,
    "residual third convolutions": ["--block_depth=3"],
    "translate 4": ["--translate=4"],
    "cutout 12": ["--cutout=12"],
    "10% warm-up, decay to 0": ["--warmup=0.1", "--lr_end=0"],
    "hardest half of each batch (proxy selection)": ["--proxy_keep=0.5"],
}


BASES = {"paper": ("airbench paper widths", PAPER), "cpu": ("cpu profile (muon)", CPU),
         "sgd-cpu": ("airbench sgd cpu widths", AIRBENCH)}


def setting(command: list[str]):
    """The lesson's config that `python -m training` builds from a command (its profile, then its overrides)."""
    from training.cli import lesson_config

    lesson, *rest = command
    at = rest.index("--profile")
    _, _, config = lesson_config(lesson, rest[:at] + rest[at + 2:], profile=rest[at + 1], resume=False,
                                 out_dir=ROOT)
    return config


def changed(base_name: str, base: list[str], rows: dict[str, list[str]]) -> dict[str, list[str]]:
    """The base, then each row's flags added to it, leaving out rows whose first flag (the method the
    row names; the rest are its settings) changes nothing: Muon's recipe on the cpu profile, already Muon."""
    unchanged = setting(base)
    return {base_name: base} | {f"{base_name}, {name}": [*base, *flags] for name, flags in rows.items()
                                if setting([*base, flags[0]]) != unchanged}


def groups(base_name: str, base: list[str]) -> dict[str, dict[str, list[str]]]:
    """The runs of each --runs group; `base`: the setting the ablation and the additions change."""
    return {
        "curves": {"resnet9 cpu": ["cifar10-resnet9", "--profile", "cpu", "--val_size=0"],
                   "airbench sgd cpu widths": AIRBENCH, "airbench paper widths": PAPER, "airbench long": LONG},
        "seeds": {"airbench paper widths": PAPER} | {f"airbench paper widths seed {seed}": [*PAPER, f"--seed={seed}"]
                                                     for seed in (1, 2)},
        "muon": {"airbench sgd cpu widths": AIRBENCH, CPU_CURVE_NAME: CPU_CURVE,
                 "muon paper widths": [*PAPER, *MUON_RECIPE]},
        # airbench96_faster's 45 epochs at widths 128-384-512 take about 70 minutes in bf16 on the AMX
        # Xeon (3.1 PFLOPs); these are the ingredients at sizes a CPU finishes within the hour.
        "airbench96": {"airbench long": LONG,
                       "airbench96 ingredients, widths 128-384-384, 30 epochs": [
                           *AIRBENCH, "--widths=128,384,384", *AIRBENCH96_RECIPE, "--epochs=30"],
                       "airbench96 ingredients, paper widths, 16 epochs": [
                           *PAPER, *AIRBENCH96_RECIPE, "--epochs=16"]},
        # what an hour of fp32 reaches: airbench94_muon's recipe and airbench96's ingredients at the paper's
        # widths for as many epochs as fit in an hour of the 2-core Xeon's fp32 (about 160 s an epoch for Muon,
        # about 130 for the ingredients, which train on half of each batch), beside Muon's 8 epochs and the cpu profile
        "hour": {CPU_CURVE_NAME: CPU_CURVE, "muon paper widths": [*PAPER, *MUON_RECIPE],
                 "muon paper widths, 20 epochs": [*PAPER, *MUON_RECIPE, "--epochs=20"],
                 "airbench96 ingredients, paper widths, 25 epochs": [*PAPER, *AIRBENCH96_RECIPE, "--epochs=25"]},
        "ablation": changed(base_name, base, ABLATIONS),
        "additions": changed(base_name, base, ADDITIONS),
    }


CURVES = ("curves", "muon", "airbench96", "hour")  # the groups drawn as time-to-accuracy curves


def folder(name: str, precision: str) -> str:
    """The folder under OUT that keeps the run called `name` (its checkpoint folder inside)."""
    return re.sub(r"[^A-Za-z0-9.]+", "-", name).strip("-") + ("" if precision == "no" else f"-{precision}")


def run(name: str, command: list[str], data_dir: Path, out: Path, precision: str) -> dict:
    """Train (or read back) one run; its metrics.json plus its history."""
    target = out / folder(name, precision)
    settings = asdict(setting(command))
    lesson, command = command[0], [*command, "--mixed-precision", precision]
    metrics_file, config_file = target / lesson / "metrics.json", target / lesson / "training_config.json"
    kept = metrics_file.is_file() and json.loads(metrics_file.read_text()).get("complete")
    if kept and json.loads(config_file.read_text())["config"] != settings:
        print(f"[{name}] {target} was trained with other settings (a profile changed since): trained again")
        kept = False
    if kept:
        print(f"[{name}] read from {target}")
    else:
        print(f"[{name}] python -m training {' '.join(command)}", flush=True)
        shutil.rmtree(target, ignore_errors=True)
        subprocess.run([sys.executable, "-m", "training", *command, "--data-dir", str(data_dir),
                        "--out-dir", str(target)], cwd=ROOT, check=True, env=os.environ | {"PYTHONPATH": str(ROOT)})
    metrics = json.loads(metrics_file.read_text())
    metrics["history"] = json.loads((target / lesson / "history.json").read_text())
    return metrics


def curve(metrics: dict, clock: str) -> tuple[list[float], list[float]]:
    """(seconds, test accuracy) after every evaluated epoch, ending on the reported final accuracy;
    `clock`: "wall_seconds" (the lesson's wall clock) or "train_seconds" (its batches only)."""
    rows = [row for row in metrics["history"] if "test_accuracy" in row]  # --eval_every skips some
    seconds = [row[clock] for row in rows]
    accuracy = [row["test_accuracy"] for row in rows]
    return [*seconds, metrics[clock]], [*accuracy, metrics["test_accuracy"]]


def seconds_to(metrics: dict, target: float, clock: str) -> float | None:
    """Seconds when the curve first reaches `target`% (linear between epochs)."""
    seconds, accuracy = curve(metrics, clock)
    previous_s, previous_a = 0.0, 10.0  # chance, before any training
    for s, a in zip(seconds, accuracy, strict=True):
        if a >= target:
            return previous_s + (s - previous_s) * (target - previous_a) / max(a - previous_a, 1e-9)
        previous_s, previous_a = s, a
    return None


def plot(results: dict[str, dict], path: Path, precision: str, clock: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 4.2), dpi=120)
    for name, metrics in results.items():
        seconds, accuracy = curve(metrics, clock)
        axes.plot([s / 60 for s in seconds], accuracy, marker="o", markersize=3, label=name)
    axes.axhline(90, color="grey", linewidth=0.8, linestyle=":")
    axes.axhline(93, color="grey", linewidth=0.8, linestyle=":")
    xlabel = "minutes of the lesson (wall clock: data, evaluation included)" if clock == "wall_seconds" \
        else "training minutes (batches only)"
    axes.set(xlabel=xlabel, ylabel="test accuracy (%)", ylim=(40, 100),
             title=f"CIFAR-10, {precision}\n{machine(next(iter(results.values())))}")
    axes.grid(alpha=0.3)
    axes.legend(loc="lower right", fontsize=8)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)


def machine(metrics: dict) -> str:
    """The CPU (or GPU) and thread count a run had, as its metrics.json names them."""
    return metrics["device"].removeprefix("cpu: ")


def seconds(metrics: dict) -> str:
    """'wall (training)' seconds of a run."""
    return f"{metrics['wall_seconds']:,.0f} ({metrics['train_seconds']:,.0f})"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data-dir", type=Path, default=None, help="folder holding cifar10/ (default: found nearby)")
    p.add_argument("--out", type=Path, default=ROOT / "bench-results" / "speedrun")
    p.add_argument("--runs", default="curves", help=f"comma-separated groups of runs: {', '.join(groups(*BASES['paper']))}")
    p.add_argument("--mixed-precision", choices=("no", "bf16"), default="no",
                   help="for every run (Accelerate's autocast; bf16 pays on CPUs with AMX, e.g. Xeon 4th gen+)")
    p.add_argument("--base", choices=BASES, default="paper",
                   help="the setting the ablation and the additions change: airbench94's SGD recipe at the paper's "
                        "widths (paper), the cpu profile (cpu: Muon, the fp32 budget) or the SGD recipe at its "
                        "widths (sgd-cpu)")
    p.add_argument("--x", choices=("wall", "train"), default="wall",
                   help="the curves' time: the lesson's wall clock (default) or its training seconds")
    p.add_argument("--fresh", action="store_true", help="train every run again")
    p.add_argument("--docs", action="store_true", help="copy the curves to docs/cifar10-<group>-<precision>.png")
    args = p.parse_args(argv)
    data_dir = args.data_dir or find_datasets("cifar10/train")
    if data_dir is None:
        sys.exit("CIFAR-10 not found: pass --data-dir (a folder holding cifar10/train and cifar10/test)")
    runs = groups(*BASES[args.base])
    chosen = [g.strip() for g in args.runs.split(",") if g.strip()]
    unknown = set(chosen) - set(runs)
    if unknown:
        sys.exit(f"unknown --runs {', '.join(sorted(unknown))}; choose from {', '.join(runs)}")
    if args.fresh:
        shutil.rmtree(args.out, ignore_errors=True)
    args.out.mkdir(parents=True, exist_ok=True)
    clock = f"{args.x}_seconds"
    precision = "fp32" if args.mixed_precision == "no" else args.mixed_precision  # in file names and titles

    for group in chosen:
        results = {name: run(name, command, data_dir, args.out, args.mixed_precision)
                   for name, command in runs[group].items()}
        missing = [name for name, m in results.items() if "wall_seconds" not in m]
        if missing:
            sys.exit(f"{', '.join(missing)}: trained before metrics.json had wall_seconds; run again with --fresh")
        print(f"\n## {group} (mixed precision {args.mixed_precision}; seconds: the lesson's wall clock, "
              "then its training alone)\n")
        if group in CURVES:
            first = next(iter(results.values()))
            print("| run | test accuracy | seconds | to 80% | to 90% | machine |")
            print("|---|---|---|---|---|---|")
            for name, metrics in results.items():
                to80, to90 = seconds_to(metrics, 80, clock), seconds_to(metrics, 90, clock)
                base80 = seconds_to(first, 80, clock)
                ratio = f" ({to80 / base80:.2f}x the first run's)" if to80 and base80 and metrics is not first else ""
                print(f"| {name} | {metrics['test_accuracy']:.2f}% | {seconds(metrics)} | "
                      f"{f'{to80:.0f}' if to80 else '-'}{ratio} | {f'{to90:.0f}' if to90 else 'not reached'} | "
                      f"{machine(metrics)} |")
            png = args.out / f"{group}-{precision}.png"
            plot(results, png, precision, clock)
            print(f"\ncurves ({args.x} seconds): {png}")
            if args.docs:
                name = "speedrun" if group == "curves" else group
                shutil.copy(png, ROOT / "docs" / f"cifar10-{name}-{precision}.png")
        elif group == "seeds":
            accuracies = [m["test_accuracy"] for m in results.values()]
            walls = [m["wall_seconds"] for m in results.values()]
            print(f"{next(iter(results))} over {len(accuracies)} seeds: test accuracy {statistics.mean(accuracies):.2f}% "
                  f"(std {statistics.stdev(accuracies):.2f}, min {min(accuracies):.2f}, max {max(accuracies):.2f}), "
                  f"wall clock {statistics.mean(walls):.0f} s (min {min(walls):.0f}, max {max(walls):.0f}), "
                  f"training {statistics.mean(m['train_seconds'] for m in results.values()):.0f} s; "
                  f"{machine(next(iter(results.values())))}")
        else:  # ablation, additions: each row against the base setting
            base_name = BASES[args.base][0]
            full = results[base_name]["test_accuracy"]
            print(f"| {'method off' if group == 'ablation' else 'method on'} | test accuracy | change | seconds | machine |")
            print("|---|---|---|---|---|")
            for name, metrics in results.items():
                change = "" if name == base_name else f"{metrics['test_accuracy'] - full:+.2f}"
                print(f"| {name} | {metrics['test_accuracy']:.2f}% | {change} | {seconds(metrics)} | {machine(metrics)} |")
            if group == "ablation":
                # --tta only changes the final evaluation, and the last per-epoch one is of the same final weights
                plain = results[base_name]["history"][-1]["test_accuracy"]
                print(f"| no test-time augmentation (the full run's final weights) | {plain:.2f}% | {plain - full:+.2f} "
                      "| - | - |")


if __name__ == "__main__":
    main()
