"""Every lesson of the course as a program run through Hugging Face Accelerate.

    python -m training <lesson> [--profile smoke|cpu|course] [--key=value ...]
    accelerate launch -m training <lesson> ...
    python -m training all
"""

# Lesson name -> module under training/lessons, in course order (`python -m training all`).
LESSONS: dict[str, str] = {
    "linear-regression": "linear_regression",
    "mnist-logistic": "mnist_logistic",
    "mnist-mlp": "mnist_mlp",
    "mnist-cnn": "mnist_cnn",
}
