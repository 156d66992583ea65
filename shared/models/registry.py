"""Model registry and the Hub base class every architecture derives from.

Each model is registered under a name (for the model a lesson trains, the lesson's name),
built from JSON-serialisable keyword arguments, and round-trips through the Hub with
`save_pretrained` / `from_pretrained`. Loading is safetensors-only and strict.

A saved model says what it is: config.json holds its constructor arguments plus
`"model_type": "<registered name>"`, which `from_pretrained` does not pass to the constructor.
`model_name_of(config)` reads it back, so a repo named `my-org/sketch-cnn` can be checked to
hold `mnist-cnn` (checkpoints saved before the key existed give None and still load).
"""

from __future__ import annotations

from pathlib import Path

import safetensors.torch
from huggingface_hub import PyTorchModelHubMixin, hf_hub_download
from torch import nn

MODELS: dict[str, type[HubModel]] = {}
MODEL_KEY = "model_type"  # config.json's name for the registered model, as in transformers' configs
# The Hub metadata of every checkpoint, in the mixin here and in the cards of training/card.py.
LIBRARY_NAME, LICENSE = "zero-to-gans", "mit"
TAGS = ("zero-to-gans",)  # the mixin adds "pytorch_model_hub_mixin" and "model_hub_mixin"
# Where the code lives, so a card's reader can install the classes its weights need. The one
# place that says it: pyproject.toml's [project.urls] repeats it (tests/test_hub.py checks they
# agree), the mixin's cards link it, and training/card.py builds the pip line from it.
CODE_URL = "https://github.com/zero-to-gans/zero-to-gans"


class HubModel(nn.Module, PyTorchModelHubMixin, library_name=LIBRARY_NAME, license=LICENSE, tags=list(TAGS),
               repo_url=CODE_URL, docs_url=f"{CODE_URL}#readme"):
    """`nn.Module` that saves its constructor arguments as config.json next to model.safetensors.

    Subclasses set `input_shape`, the shape of one input without the batch dimension,
    so tools and tests can build example batches for any registered model.
    """

    input_shape: tuple[int, ...]

    def save_pretrained(self, save_directory, *, config: dict | None = None, **kwargs):
        """The mixin's save, with the registered name in config.json (see `model_name_of`)."""
        config = dict(self._hub_mixin_config or {}) if config is None else dict(config)
        name = registered_name(type(self))
        if name is not None:
            config[MODEL_KEY] = name
        return super().save_pretrained(save_directory, config=config, **kwargs)

    @classmethod
    def _from_pretrained(cls, *, model_id, revision, cache_dir, force_download, local_files_only,
                         token, map_location="cpu", strict=True, **model_kwargs):
        # The mixin defaults to strict=False and falls back to pickled weights; we allow neither.
        # These are the keywords huggingface_hub >= 1.0 passes (pyproject.toml's lower bound):
        # 0.x also passed `proxies` and `resume_download`, which would land in `model_kwargs`
        # and reach the model's constructor as unknown arguments.
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


def registered_name(cls: type) -> str | None:
    """The name `cls` was registered under (a subclass does not inherit its parent's)."""
    return next((name for name, registered in MODELS.items() if registered is cls), None)


def model_name_of(config: dict) -> str | None:
    """The registered model a checkpoint holds, from its config.json; None if it does not say.

    None means a checkpoint saved before config.json carried the name, or not one of ours:
    the caller decides (the weights still load with `from_pretrained` when the class matches).
    """
    name = config.get(MODEL_KEY) if isinstance(config, dict) else None
    return name if isinstance(name, str) and name else None


def build_model(name: str, **kwargs) -> HubModel:
    try:
        cls = MODELS[name]
    except KeyError:
        raise KeyError(f"unknown model {name!r}; registered: {', '.join(sorted(MODELS))}") from None
    return cls(**kwargs)
