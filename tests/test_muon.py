"""Muon against what it claims: the singular vectors of the momentum, singular values near 1, and a resumable state."""

from __future__ import annotations

import pytest
import torch

from training.muon import Muon, orthogonalise


@pytest.mark.parametrize("shape", [(64, 216), (128, 576), (48, 12)])
def test_newton_schulz_keeps_the_singular_vectors_and_brings_the_values_near_one(shape):
    torch.manual_seed(0)
    # A random matrix, in the 3 steps airbench94_muon takes: the quintic trades exact convergence
    # for speed, so the values land in about [0.7, 1.2] rather than on 1.
    singular = torch.linalg.svdvals(orthogonalise(torch.randn(shape), steps=3))
    assert singular.min() > 0.5 and singular.max() < 1.25, singular
    # Singular values spread over 2 orders of magnitude, as a gradient's are, in 5 steps.
    u, _ = torch.linalg.qr(torch.randn(shape[0], min(shape)))
    v, _ = torch.linalg.qr(torch.randn(shape[1], min(shape)))
    matrix = u @ torch.diag(torch.logspace(0, -2, min(shape))) @ v.T
    result = orthogonalise(matrix, steps=5)
    singular = torch.linalg.svdvals(result)
    assert singular.min() > 0.65 and singular.max() < 1.22, singular
    # ... along the input's singular vectors: result = u diag(s') v^T with s' near 1
    in_basis = u.T @ result @ v
    torch.testing.assert_close(in_basis, torch.diag(torch.diagonal(in_basis)), atol=1e-3, rtol=0)
    assert torch.nn.functional.cosine_similarity((u @ v.T).flatten(), result.flatten(), dim=0) > 0.98


def test_a_step_moves_filters_orthogonally_and_keeps_their_norm():
    torch.manual_seed(1)
    conv = torch.nn.Conv2d(16, 32, 3, bias=False)
    conv.weight.grad = torch.randn_like(conv.weight)
    before = conv.weight.detach().clone()
    optimizer = Muon(conv.parameters(), lr=0.1, momentum=0.6)
    optimizer.step()
    assert conv.weight.shape == (32, 16, 3, 3)
    # normalised to norm sqrt(outputs) before the step; the step is 0.1 x an orthogonal (32, 144) matrix
    normalised = before * 32**0.5 / before.norm()
    step = (normalised - conv.weight.detach()).reshape(32, -1) / 0.1
    assert torch.linalg.svdvals(step).min() > 0.5 and torch.linalg.svdvals(step).max() < 1.5
    with pytest.raises(ValueError, match="biases"):
        Muon([torch.nn.Parameter(torch.zeros(8))], lr=0.1)


def test_the_state_dict_round_trip_continues_identically():
    def fresh():
        torch.manual_seed(2)
        model = torch.nn.Conv2d(4, 8, 3, bias=False)
        return model, Muon(model.parameters(), lr=0.05, momentum=0.6)

    grads = [torch.randn(8, 4, 3, 3, generator=torch.Generator().manual_seed(i)) for i in range(4)]

    def train(model, optimizer, steps):
        for grad in steps:
            model.weight.grad = grad.clone()
            optimizer.step()

    straight, straight_opt = fresh()
    train(straight, straight_opt, grads)
    first, first_opt = fresh()
    train(first, first_opt, grads[:2])
    state, weights = first_opt.state_dict(), first.state_dict()
    assert set(state["state"][0]) == {"momentum_buffer"}
    resumed, resumed_opt = fresh()
    resumed.load_state_dict(weights)
    resumed_opt.load_state_dict(state)
    train(resumed, resumed_opt, grads[2:])
    assert torch.equal(resumed.weight, straight.weight)
