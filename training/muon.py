"""Muon (K. Jordan, 2024): momentum, then each weight matrix's update orthogonalised.

SGD's step on a weight matrix is dominated by its few largest singular directions. Muon takes
the momentum M = U S V^T of a matrix's gradients and steps along U V^T instead (every singular
value set to about 1), so every direction moves about as far; U V^T comes from a few matrix
products (a Newton-Schulz iteration), not an SVD. airbench94_muon uses it for the convolution
filters (each filter bank reshaped to out_channels x in_channels*k*k) and keeps Nesterov SGD
for everything else, reaching airbench94's 94% in 8 epochs of batch 2000 instead of about 10
of 1024 (0.29 PFLOPs instead of 0.36). Written from that description; `cifar10-airbench
--optimizer=muon` uses it.
"""

from __future__ import annotations

import torch

# A quintic iteration x <- a x + b (x x^T) x + c (x x^T)^2 x, with a steep slope at 0 (3.4445) so
# small singular values grow fast: they end in about [0.7, 1.2] rather than on exactly 1, which
# trains as well (Jordan's published coefficients). 3 steps do that for a random matrix, 5 for
# singular values spread over 2 orders of magnitude (tests/test_muon.py).
NEWTON_SCHULZ = (3.4445, -4.7750, 2.0315)


def orthogonalise(matrix: torch.Tensor, steps: int = 3, eps: float = 1e-7) -> torch.Tensor:
    """About U V^T for matrix = U S V^T (R, C): the same singular vectors, singular values near 1.

    Computed in float32 whatever the input's dtype (a CPU without bf16 units emulates bf16
    matrix products slowly; on filter banks of a few hundred rows this costs well under 1%
    of a training step).
    """
    a, b, c = NEWTON_SCHULZ
    x = matrix.float()
    tall = x.shape[0] > x.shape[1]
    if tall:  # iterate on the wide side: the Gram matrix x x^T is then the smaller one
        x = x.T
    x = x / (x.norm() + eps)  # the Frobenius norm bounds the largest singular value: all <= 1
    for _ in range(steps):
        gram = x @ x.T
        x = a * x + (b * gram + c * gram @ gram) @ x
    return x.T if tall else x


class Muon(torch.optim.Optimizer):
    """Muon for weights of 2 or more dimensions (their first dimension: outputs).

    Each step: buffer <- momentum * buffer + grad; the direction is grad + momentum * buffer
    (Nesterov) or the buffer; it is reshaped to (outputs, rest), orthogonalised, scaled by
    sqrt(max(1, rows / columns)) (a tall matrix's orthogonal update has smaller entries) and
    subtracted times lr. With `normalise` (airbench94_muon's choice, for filters a batchnorm
    follows) each weight is first rescaled to norm sqrt(outputs): the batchnorm makes its scale
    irrelevant to the function, and a fixed scale keeps the step's relative size fixed (in place
    of weight decay, which these weights then do not get).
    """

    def __init__(self, params, lr: float, momentum: float = 0.6, nesterov: bool = True,
                 steps: int = 3, normalise: bool = True):
        if lr < 0 or not 0 <= momentum < 1:
            raise ValueError(f"Muon needs lr >= 0 and 0 <= momentum < 1 (got lr={lr}, momentum={momentum})")
        super().__init__(params, dict(lr=lr, momentum=momentum, nesterov=nesterov, steps=steps, normalise=normalise))
        for group in self.param_groups:
            for p in group["params"]:
                if p.dim() < 2:
                    raise ValueError(f"Muon orthogonalises matrices and filters; got a parameter of shape "
                                     f"{tuple(p.shape)} (give biases and norms to another optimizer)")

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            momentum = group["momentum"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                buffer = self.state[p].setdefault("momentum_buffer", torch.zeros_like(p.grad))
                buffer.mul_(momentum).add_(p.grad)
                direction = p.grad.add(buffer, alpha=momentum) if group["nesterov"] else buffer
                if group["normalise"]:
                    p.mul_(len(p) ** 0.5 / p.norm().clamp_min(1e-12))
                matrix = direction.reshape(len(p), -1)
                scale = max(1.0, matrix.shape[0] / matrix.shape[1]) ** 0.5
                p.add_(orthogonalise(matrix, group["steps"]).view_as(p).to(p.dtype), alpha=-group["lr"] * scale)
        return loss
