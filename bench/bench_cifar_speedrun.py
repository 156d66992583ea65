"""Time to accuracy on CIFAR-10: lesson 5's ResNet9 against the airbench methods, and the ablation.

    python bench/bench_cifar_speedrun.py --data-dir ../shared/datasets                 # the curves
    python bench/bench_cifar_speedrun.py --data-dir ../shared/datasets --runs seeds    # 3 seeds of cpu
    python bench/bench_cifar_speedrun.py --data-dir ../shared/datasets --runs ablation # each method off

Every run is `python -m training ...` in its own process, one after the other (on a 2-core
machine two at once would share the cores and both times would mean nothing). The baseline
is `cifar10-resnet9 --profile cpu --val_size=0` (lesson 5's recipe sized for a CPU, trained on
all 50,000 images like airbench, so both curves are test accuracy), measured in the same
invocation as the runs it is compared with. Curves are the per-epoch test accuracy against
the training seconds so far (evaluation excluded; airbench's per-epoch points are without
test-time augmentation, its last point with it, as the checkpoint reports).

Results are kept in OUT/<run>/ (the checkpoint folders): a run whose folder holds a finished
checkpoint is read, not trained again, so the bench can be continued after an interruption
or extended (`--runs`) and `--fresh` starts over. It prints the tables and writes
OUT/speedrun-<precision>.png (and copies it to docs/ with --docs). `--mixed-precision bf16` runs
everything under Accelerate's bf16 autocast (2.6x faster on a Xeon with AMX; on a CPU without
bf16 units it is slower), in folders of their own.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

from harness.datasets import find_datasets

ROOT = Path(__file__).resolve().parents[1]

AIRBENCH = ["cifar10-airbench", "--profile", "cpu"]  # widths 48-192-192: any 2-core CPU, fp32 or bf16
PAPER = [*AIRBENCH, "--widths=64,256,256"]  # the paper's network: the 15-minute setting with bf16 on AMX
LONG = [*AIRBENCH, "--widths=128,384,384", "--epochs=15"]  # airbench95's widths and epochs: the long setting
ABLATIONS = {  # each method off in turn, in the 15-minute setting
    "no whitening": ["--whiten=false"],
    "no identity init": ["--identity_init=false"],
    "trained norm scales": ["--frozen_norm_scale=false"],
    "no lookahead": ["--lookahead=false"],
    "no label smoothing": ["--label_smoothing=0"],
    "random flip": ["--flip=random"],
    "no translate": ["--translate=0"],
}  # and no test-time augmentation: not trained again, read from the full run (the ablation table in main())
RUNS = {
    "curves": {"resnet9 cpu": ["cifar10-resnet9", "--profile", "cpu", "--val_size=0"],
               "airbench cpu": AIRBENCH, "airbench paper widths": PAPER, "airbench long": LONG},
    "seeds": {"airbench paper widths": PAPER} | {f"airbench paper widths seed {seed}": [*PAPER, f"--seed={seed}"]
                                                 for seed in (1, 2)},
    "ablation": {"airbench paper widths": PAPER} | {name: [*PAPER, *flags] for name, flags in ABLATIONS.items()},
}


def run(name: str, command: list[str], data_dir: Path, out: Path, precision: str) -> dict:
    """Train (or read back) one run; its metrics.json plus its history."""
    target = out / (name.replace(" ", "-") + ("" if precision == "no" else f"-{precision}"))
    lesson, command = command[0], [*command, "--mixed-precision", precision]
    metrics_file = target / lesson / "metrics.json"
    if metrics_file.is_file() and json.loads(metrics_file.read_text()).get("complete"):
        print(f"[{name}] read from {target}")
    else:
        print(f"[{name}] python -m training {' '.join(command)}", flush=True)
        shutil.rmtree(target, ignore_errors=True)
        subprocess.run([sys.executable, "-m", "training", *command, "--data-dir", str(data_dir),
                        "--out-dir", str(target)], cwd=ROOT, check=True, env=os.environ | {"PYTHONPATH": str(ROOT)})
    metrics = json.loads(metrics_file.read_text())
    metrics["history"] = json.loads((target / lesson / "history.json").read_text())
    return metrics


def curve(metrics: dict) -> tuple[list[float], list[float]]:
    """(training seconds, test accuracy) after every epoch, ending on the reported final accuracy."""
    seconds = [row["train_seconds"] for row in metrics["history"]]
    accuracy = [row["test_accuracy"] for row in metrics["history"]]
    return [*seconds, metrics["train_seconds"]], [*accuracy, metrics["test_accuracy"]]


def seconds_to(metrics: dict, target: float) -> float | None:
    """Training seconds when the curve first reaches `target`% (linear between epochs)."""
    seconds, accuracy = curve(metrics)
    previous_s, previous_a = 0.0, 10.0  # chance, before any training
    for s, a in zip(seconds, accuracy, strict=True):
        if a >= target:
            return previous_s + (s - previous_s) * (target - previous_a) / max(a - previous_a, 1e-9)
        previous_s, previous_a = s, a
    return None


def plot(results: dict[str, dict], path: Path, precision: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 4.2), dpi=120)
    for name, metrics in results.items():
        seconds, accuracy = curve(metrics)
        axes.plot([s / 60 for s in seconds], accuracy, marker="o", markersize=3, label=name)
    axes.axhline(90, color="grey", linewidth=0.8, linestyle=":")
    axes.axhline(93, color="grey", linewidth=0.8, linestyle=":")
    axes.set(xlabel="training minutes", ylabel="test accuracy (%)", ylim=(40, 100),
             title=f"CIFAR-10 on {next(iter(results.values()))['device']}, mixed precision {precision}")
    axes.grid(alpha=0.3)
    axes.legend(loc="lower right")
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data-dir", type=Path, default=None, help="folder holding cifar10/ (default: found nearby)")
    p.add_argument("--out", type=Path, default=ROOT / "bench-results" / "speedrun")
    p.add_argument("--runs", default="curves", help=f"comma-separated groups of runs: {', '.join(RUNS)}")
    p.add_argument("--mixed-precision", choices=("no", "bf16"), default="no",
                   help="for every run (Accelerate's autocast; bf16 pays on CPUs with AMX, e.g. Xeon 4th gen+)")
    p.add_argument("--fresh", action="store_true", help="train every run again")
    p.add_argument("--docs", action="store_true", help="copy the curves to docs/cifar10-speedrun.png")
    args = p.parse_args(argv)
    data_dir = args.data_dir or find_datasets("cifar10/train")
    if data_dir is None:
        sys.exit("CIFAR-10 not found: pass --data-dir (a folder holding cifar10/train and cifar10/test)")
    if args.fresh:
        shutil.rmtree(args.out, ignore_errors=True)
    args.out.mkdir(parents=True, exist_ok=True)
    groups = [g.strip() for g in args.runs.split(",") if g.strip()]
    unknown = set(groups) - set(RUNS)
    if unknown:
        sys.exit(f"unknown --runs {', '.join(sorted(unknown))}; choose from {', '.join(RUNS)}")

    for group in groups:
        results = {name: run(name, command, data_dir, args.out, args.mixed_precision)
                   for name, command in RUNS[group].items()}
        print(f"\n## {group} ({next(iter(results.values()))['device']}, mixed precision {args.mixed_precision})\n")
        if group == "curves":
            baseline = results["resnet9 cpu"]
            print("| run | test accuracy | training seconds | seconds to 80% | to 90% |")
            print("|---|---|---|---|---|")
            for name, metrics in results.items():
                to80, to90 = seconds_to(metrics, 80), seconds_to(metrics, 90)
                base80 = seconds_to(baseline, 80)
                ratio = f" ({to80 / base80:.2f}x the baseline's)" if to80 and base80 and name != "resnet9 cpu" else ""
                print(f"| {name} | {metrics['test_accuracy']:.2f}% | {metrics['train_seconds']:.0f} | "
                      f"{f'{to80:.0f}' if to80 else '-'}{ratio} | {f'{to90:.0f}' if to90 else 'not reached'} |")
            png = args.out / f"speedrun-{args.mixed_precision}.png"
            plot(results, png, args.mixed_precision)
            print(f"\ncurves: {png}")
            if args.docs:
                shutil.copy(png, ROOT / "docs" / f"cifar10-speedrun-{args.mixed_precision}.png")
        elif group == "seeds":
            accuracies = [m["test_accuracy"] for m in results.values()]
            seconds = [m["train_seconds"] for m in results.values()]
            print(f"{next(iter(results))} over {len(accuracies)} seeds: test accuracy {statistics.mean(accuracies):.2f}% "
                  f"(std {statistics.stdev(accuracies):.2f}, min {min(accuracies):.2f}, max {max(accuracies):.2f}), "
                  f"training {statistics.mean(seconds):.0f} s (min {min(seconds):.0f}, max {max(seconds):.0f})")
        else:
            full = results["airbench paper widths"]["test_accuracy"]
            print("| method off | test accuracy | change | training seconds |")
            print("|---|---|---|---|")
            for name, metrics in results.items():
                change = "" if name == "airbench paper widths" else f"{metrics['test_accuracy'] - full:+.2f}"
                print(f"| {name} | {metrics['test_accuracy']:.2f}% | {change} | {metrics['train_seconds']:.0f} |")
            # --tta only changes the final evaluation, and the last per-epoch one is of the same final weights
            plain = results["airbench paper widths"]["history"][-1]["test_accuracy"]
            print(f"| no test-time augmentation (the full run's final weights) | {plain:.2f}% | {plain - full:+.2f} | - |")


if __name__ == "__main__":
    main()
