"""Every registered model: shapes, finite outputs, gradients everywhere, Hub round trip."""

from __future__ import annotations

import pytest
import torch

from shared.models import MODELS, build_model


@pytest.mark.parametrize("name", sorted(MODELS))
def test_registered_model(name, tmp_path):
    torch.manual_seed(0)
    model = build_model(name)
    inputs = torch.randn(3, *model.input_shape)

    outputs = model(inputs)
    assert outputs.shape[0] == 3
    assert torch.isfinite(outputs).all()

    (outputs.float() ** 2).mean().backward()
    no_grad = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not no_grad, f"parameters without gradient: {no_grad}"

    model.save_pretrained(tmp_path)
    assert {"config.json", "model.safetensors"} <= {p.name for p in tmp_path.iterdir()}
    reloaded = MODELS[name].from_pretrained(tmp_path)
    assert not reloaded.training
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(reloaded(inputs), model(inputs))


def test_loading_is_strict_and_safetensors_only(tmp_path):
    model = build_model("mnist-mlp", hidden_sizes=[16])
    model.save_pretrained(tmp_path / "good")
    # A config that disagrees with the weights (a missing layer) must fail, not load half a model.
    bad = tmp_path / "mismatch"
    model.save_pretrained(bad)
    (bad / "config.json").write_text('{"in_features": 784, "hidden_sizes": [16, 10], "num_classes": 10}')
    with pytest.raises(RuntimeError, match="Missing key"):
        MODELS["mnist-mlp"].from_pretrained(bad)
    with pytest.raises(ValueError, match="strict"):
        MODELS["mnist-mlp"].from_pretrained(tmp_path / "good", strict=False)
    # Pickled weights are never read.
    pickled = tmp_path / "pickled"
    pickled.mkdir()
    (pickled / "config.json").write_text((tmp_path / "good" / "config.json").read_text())
    torch.save(model.state_dict(), pickled / "pytorch_model.bin")
    with pytest.raises(FileNotFoundError, match="safetensors"):
        MODELS["mnist-mlp"].from_pretrained(pickled)


def test_unknown_model_names_the_registered_ones():
    with pytest.raises(KeyError, match="mnist-cnn"):
        build_model("no-such-model")
