"""Model registry and the Hub base class every architecture derives from.

Each model is registered under a name (for the model a lesson trains, the lesson's name),
built from JSON-serialisable keyword arguments, and round-trips through the Hub with
`save_pretrained` / `from_pretrained`. Loading is safetensors-only and strict.
"""

from __future__ import annotations

from pathlib import Path

import safetensors.torch
from huggingface_hub import PyTorchModelHubMixin, hf_hub_download
from torch import nn

MODELS: dict[str, type[HubModel]] = {}


class HubModel(
    nn.Module,
    PyTorchModelHubMixin,
    library_name="zero-to-gans",
    tags=["zero-to-gans", "pytorch_model_hub_mixin"],
    license="mit",
):
    """`nn.Module` that saves its constructor arguments as config.json next to model.safetensors.

    Subclasses set `input_shape`, the shape of one input without the batch dimension,
    so tools and tests can build example batches for any registered model.
    """

    input_shape: tuple[int, ...]

    @classmethod
    def _from_pretrained(cls, *, model_id, revision, cache_dir, force_download, local_files_only,
                         token, map_location="cpu", strict=True, **model_kwargs):
        # The mixin defaults to strict=False and falls back to pickled weights; we allow neither.
        if not strict:
            raise ValueError("zero-to-gans models load with strict=True only")
        if Path(model_id).is_dir():
            weights = Path(model_id) / "model.safetensors"
            if not weights.is_file():
                raise FileNotFoundError(f"{weights} not found (only safetensors weights are loaded)")
        else:
            weights = hf_hub_download(
                repo_id=model_id, filename="model.safetensors", revision=revision,
                cache_dir=cache_dir, force_download=force_download,
                local_files_only=local_files_only, token=token,
            )
        model = cls(**model_kwargs)
        safetensors.torch.load_model(model, str(weights), strict=True, device=str(map_location))
        return model.eval()


def register_model(name: str):
    """Class decorator: make `build_model(name, ...)` and `MODELS[name]` find this class."""

    def add(cls: type[HubModel]) -> type[HubModel]:
        if name in MODELS:
            raise ValueError(f"model {name!r} registered twice")
        if not issubclass(cls, HubModel):
            raise TypeError(f"{cls.__name__} must derive from HubModel")
        MODELS[name] = cls
        return cls

    return add


def build_model(name: str, **kwargs) -> HubModel:
    try:
        cls = MODELS[name]
    except KeyError:
        raise KeyError(f"unknown model {name!r}; registered: {', '.join(sorted(MODELS))}") from None
    return cls(**kwargs)
