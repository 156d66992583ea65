"""`python -m training`, `accelerate launch -m training`, `torchrun -m training`: where a training
process starts."""

from training import sleeping_openmp_waits


def main() -> None:
    sleeping_openmp_waits()  # before training.cli imports torch
    from training.cli import main as command_line

    command_line()


if __name__ == "__main__":
    main()
