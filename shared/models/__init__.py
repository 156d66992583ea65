"""Every architecture of the project, registered by name (see `registry.py`)."""

from . import mnist  # noqa: F401  (registers the MNIST models)
from .registry import MODELS, HubModel, build_model, register_model

__all__ = ["MODELS", "HubModel", "build_model", "register_model"]
