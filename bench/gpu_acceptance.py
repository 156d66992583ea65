"""GPU acceptance: the course's GPU recipes, run for real through `accelerate launch`, in one table.

    python bench/gpu_acceptance.py --data-dir ../shared/datasets [--out-dir /tmp/gpu-acceptance] [--only NAME,...]

Needs a CUDA GPU (it says so and exits 0 without one). Each row is one real training run of
`python -m training` under `accelerate launch --config_file configs/accelerate/one_gpu.yaml`
(bf16), read back from its metrics.json: `train_seconds` (the batches) and `wall_seconds` (the
lesson from its start to its checkpoint, data, evaluation and test-time augmentation included).

| row | command | target |
|---|---|---|
| resnet9-course | `cifar10-resnet9 --profile course` | course: 90.5% in about 4.5 min (Colab GPU) |
| resnet9-fast | `cifar10-resnet9 --profile course --fast=true` | >= 94% in <= 30 s on one modern GPU |
| airbench | `cifar10-airbench --profile course` (the paper's airbench94 settings) | >= 94% in <= 10 s on one modern GPU |
| airbench-muon | the same with airbench94_muon's recipe (the lesson's `RECIPES`) | >= 94% in <= 10 s on one modern GPU |
| mnist-cnn | `mnist-cnn --profile cpu` | 99.5% (cpu profile: 191 s on a 2-core CPU) |
| dcgan-epoch | `anime-dcgan --profile course --epochs=1` | images/s of one epoch |
| resnet9-2gpu | `resnet9-course` on 2 GPUs (multi_gpu.yaml), when there are two | speed-up over 1 GPU |

Numbers go into the README with the GPU's name, which the table prints.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from training.config import as_flags
from training.lessons.cifar10_airbench import RECIPES

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs" / "accelerate"

RUNS = {  # name -> (config file, lesson and options, what the row is checked against)
    "resnet9-course": ("one_gpu.yaml", ["cifar10-resnet9", "--profile", "course"], "90.5% in ~270 s"),
    "resnet9-fast": ("one_gpu.yaml", ["cifar10-resnet9", "--profile", "course", "--fast=true"], ">= 94% in <= 30 s"),
    "airbench": ("one_gpu.yaml", ["cifar10-airbench", "--profile", "course"], ">= 94% in <= 10 s"),
    "airbench-muon": ("one_gpu.yaml", ["cifar10-airbench", "--profile", "course",
                                       *as_flags(RECIPES["airbench94_muon"])], ">= 94% in <= 10 s"),
    "mnist-cnn": ("one_gpu.yaml", ["mnist-cnn", "--profile", "cpu"], ">= 99.5%"),
    "dcgan-epoch": ("one_gpu.yaml", ["anime-dcgan", "--profile", "course", "--epochs=1"], "images/s"),
    "resnet9-2gpu": ("multi_gpu.yaml", ["cifar10-resnet9", "--profile", "course"], "speed-up over 1 GPU"),
}


def launch(name: str, data_dir: Path, out_dir: Path) -> dict:
    config, args, _ = RUNS[name]
    command = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(CONFIGS / config),
               *(["--num_processes", "2"] if config == "multi_gpu.yaml" else []),
               "-m", "training", *args, "--data-dir", str(data_dir), "--out-dir", str(out_dir / name)]
    print("$", " ".join(command), flush=True)
    subprocess.run(command, cwd=ROOT, check=True)
    return json.loads((out_dir / name / args[0] / "metrics.json").read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, default=Path("data"))
    parser.add_argument("--out-dir", type=Path, default=Path("/tmp/gpu-acceptance"))
    parser.add_argument("--only", default=",".join(RUNS), help="comma-separated rows to run")
    args = parser.parse_args()

    import torch

    if not torch.cuda.is_available():
        print("no CUDA GPU here: nothing to accept (run this on a GPU machine)")
        return
    gpus = torch.cuda.device_count()
    print(f"{gpus} x {torch.cuda.get_device_name(0)}, torch {torch.__version__}")
    names = [n for n in args.only.split(",") if n != "resnet9-2gpu" or gpus >= 2]
    rows = {name: launch(name, args.data_dir.resolve(), args.out_dir) for name in names}

    print(f"\n{'row':<16}{'accuracy / SWD':>16}{'train s':>10}{'wall s':>10}{'img/s':>10}{'precision':>11}  target")
    for name, metrics in rows.items():
        quality = metrics.get("test_accuracy", metrics.get("swd"))
        print(f"{name:<16}{quality!s:>16}{metrics['train_seconds']:>10}{metrics['wall_seconds']:>10}"
              f"{metrics['samples_per_second']:>10}{metrics['mixed_precision']:>11}  {RUNS[name][2]}")
    if "resnet9-2gpu" in rows and "resnet9-course" in rows:
        ratio = rows["resnet9-2gpu"]["samples_per_second"] / rows["resnet9-course"]["samples_per_second"]
        print(f"2-GPU speed-up (images/s, same global batch): {ratio:.2f}x")


if __name__ == "__main__":
    main()
