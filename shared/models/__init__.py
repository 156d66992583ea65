"""Every architecture of the project, registered by name (see `registry.py`)."""

from . import airbench, cifar10, folder_resnet9, gan, linear, mnist, tabular  # noqa: F401  (importing registers the models)
from .registry import MODELS, HubModel, build_model, register_model

__all__ = ["MODELS", "HubModel", "build_model", "register_model"]
