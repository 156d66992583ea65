"""`python -m training`, `accelerate launch -m training`, `torchrun -m training`: where a training
process starts."""

import os

from training import keep_freed_memory, sleeping_openmp_waits


def main() -> None:
    keep_freed_memory()
    # torchrun and accelerate launch say how many processes share this machine; with several, their
    # threads must not spin on each other's cores. Before training.cli imports torch.
    if int(os.environ.get("LOCAL_WORLD_SIZE", "1")) > 1:
        sleeping_openmp_waits()
    from training.cli import main as command_line

    command_line()


if __name__ == "__main__":
    main()
