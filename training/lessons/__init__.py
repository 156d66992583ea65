"""The lessons: one module each (training/__init__.py says what a lesson module declares).

`LESSONS` is the registry, the one place that lists them: lesson name -> the module that is the
lesson, in course order (the order `python -m training all` runs them). A lesson is its module
plus its line here; the command line, `all`'s data check and results page, and the playground
Space find it through this line and read everything else from the module.
"""

LESSONS: dict[str, str] = {
    "linear-regression": "training.lessons.linear_regression",
    "mnist-logistic": "training.lessons.mnist_logistic",
    "insurance-regression": "training.lessons.insurance_regression",
    "mnist-mlp": "training.lessons.mnist_mlp",
    "mnist-cnn": "training.lessons.mnist_cnn",
    "cifar10-mlp": "training.lessons.cifar10_mlp",
    "cifar10-cnn": "training.lessons.cifar10_cnn",
    "cifar10-resnet9": "training.lessons.cifar10_resnet9",
    "cifar10-airbench": "training.lessons.cifar10_airbench",  # beyond the course: the speedrun methods
    "mnist-gan": "training.lessons.mnist_gan",
    "anime-dcgan": "training.lessons.anime_dcgan",
    "image-folder": "training.lessons.image_folder",  # the course project, last: the lesson 5 recipe on any folder
}
