"""Every lesson of the course as a program run through Hugging Face Accelerate.

    python -m training <lesson> [--profile smoke|cpu|course] [--key=value ...]
    accelerate launch -m training <lesson> ...
    python -m training all
"""

import os

# OpenMP threads that spin while they wait for each other burn the cores other processes need,
# and crawl when those processes take the cores: measured on a shared 2-core machine, ResNet9
# trained 2-3x faster with sleeping waits. Read once, when torch loads; an explicit setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

# Lesson name -> module under training/lessons, in course order (`python -m training all`).
LESSONS: dict[str, str] = {
    "linear-regression": "linear_regression",
    "mnist-logistic": "mnist_logistic",
    "insurance-regression": "insurance_regression",
    "mnist-mlp": "mnist_mlp",
    "mnist-cnn": "mnist_cnn",
    "cifar10-mlp": "cifar10_mlp",
    "cifar10-cnn": "cifar10_cnn",
    "cifar10-resnet9": "cifar10_resnet9",
    "mnist-gan": "mnist_gan",
    "anime-dcgan": "anime_dcgan",
}
