"""What `training.keep_freed_memory` (glibc keeping freed memory for the next step) changes, in one run.

    python bench/bench_allocator.py --data-dir ../shared/datasets [--rounds 2]
        [--lessons "cifar10-airbench --epochs=1 --tta=0;mnist-mlp --epochs=1 --augment=false"]

Each lesson runs through its real command line, `python -m training LESSON ... --profile cpu`, as
a process of its own, twice a round: once as `python -m training` starts it (the allocator
keeps freed memory) and once with ZTG_KEEP_FREED_MEMORY=0, glibc's own behaviour (the baseline
is the command as it ran before; setting any MALLOC_* variable instead would not be: glibc stops
raising its mmap threshold when one is set). The two take turns, so a drift of the machine's pace hits both
alike. Reported per lesson: the median `samples_per_second` and `wall_seconds` of its
metrics.json, the ratio, and per process the minor page faults and the peak resident memory
(from wait4). Run it alone: another job on the cores changes the times.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from training.checkpoint import cpu_name

SETTINGS = {"kept": {}, "glibc's own": {"ZTG_KEEP_FREED_MEMORY": "0"}}


def run_lesson(words: list[str], data_dir: Path, extra_env: dict) -> dict:
    """One `python -m training` process: its metrics.json, with its page faults and peak memory."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_") and k != "ZTG_KEEP_FREED_MEMORY"}
    env |= extra_env
    with tempfile.TemporaryDirectory() as out:
        command = [sys.executable, "-m", "training", *words, "--profile", "cpu", "--data-dir", str(data_dir),
                   "--out-dir", out]
        process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        stderr = process.stderr.read()
        _, status, usage = os.wait4(process.pid, 0)
        if os.waitstatus_to_exitcode(status) != 0:
            raise SystemExit(f"{shlex.join(command)} failed:\n{stderr[-2000:]}")
        metrics = json.loads((Path(out) / words[0] / "metrics.json").read_text())
    return {"samples_per_second": metrics["samples_per_second"], "wall_seconds": metrics["wall_seconds"],
            "faults": usage.ru_minflt, "peak_mib": usage.ru_maxrss / 1024}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", type=Path, default=Path("data"))
    p.add_argument("--lessons", default="cifar10-airbench --epochs=1 --tta=0;mnist-mlp --epochs=1 --augment=false",
                   help="lesson commands separated by ';' (each gets --profile cpu and the data folder)")
    p.add_argument("--rounds", type=int, default=2)
    args = p.parse_args()

    print(f"{cpu_name()}, fp32, {args.rounds} rounds, the settings taking turns")
    print("| command | setting | samples/s | wall s | page faults | peak MiB | samples/s vs glibc's own |")
    print("|---|---|---|---|---|---|---|")
    for lesson in args.lessons.split(";"):
        words = shlex.split(lesson)
        runs = {name: [] for name in SETTINGS}
        for _ in range(args.rounds):
            for name, extra_env in SETTINGS.items():
                runs[name].append(run_lesson(words, args.data_dir, extra_env))
        median = {name: {key: statistics.median(r[key] for r in rows) for key in rows[0]}
                  for name, rows in runs.items()}
        base = median["glibc's own"]["samples_per_second"]
        for name, m in median.items():
            print(f"| `{lesson}` | {name} | {m['samples_per_second']:,.0f} | {m['wall_seconds']:.1f} | "
                  f"{m['faults']:,.0f} | {m['peak_mib']:,.0f} | {m['samples_per_second'] / base:.2f}x |", flush=True)


if __name__ == "__main__":
    main()
