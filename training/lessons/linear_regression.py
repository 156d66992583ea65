"""Lesson 1: tensors, autograd and gradient descent, then the same with torch.nn.

    python -m training linear-regression

Predict crop yields (apples, oranges) from temperature, rainfall and humidity in 15
regions. First by hand: a weight matrix and a bias, the mean squared error, gradients
from autograd (checked against the formula derived on paper), and updates under
`torch.no_grad()`. Then with `nn.Linear`, `TensorDataset`, `DataLoader`, `F.mse_loss` and
`torch.optim.SGD`. The data is small enough to live in this file, so no --data-dir.

Expect (any CPU, a second or two): the loss falls from thousands to a few tens and the
region [75, 63, 44] is predicted around [53, 67].
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from shared.models import build_model

# Temperature (F), rainfall (mm), humidity (%) -> apples, oranges (tons per hectare).
INPUTS = [[73, 67, 43], [91, 88, 64], [87, 134, 58], [102, 43, 37], [69, 96, 70],
          [74, 66, 43], [91, 87, 65], [88, 134, 59], [101, 44, 37], [68, 96, 71],
          [73, 66, 44], [92, 87, 64], [87, 135, 57], [103, 43, 36], [68, 97, 70]]
TARGETS = [[56, 70], [81, 101], [119, 133], [22, 37], [103, 119],
           [57, 69], [80, 102], [118, 132], [21, 38], [104, 118],
           [57, 69], [82, 100], [118, 134], [20, 38], [102, 120]]
NEW_REGION = [75.0, 63.0, 44.0]


@dataclass
class Config:
    scratch_epochs: int = 100  # part 1: gradient descent by hand
    epochs: int = 100  # part 2: nn.Linear + DataLoader
    lr: float = 1e-5
    batch_size: int = 5
    seed: int = 42


PROFILES = {"smoke": dict(scratch_epochs=5, epochs=5), "cpu": dict(), "course": dict()}

TASK = dict(type="tabular-regression", dataset="crop-yields", dataset_name="Crop yields (course lesson 1)",
            metrics={"final_loss": "MSE on the training data"},
            summary="Linear regression of crop yields on weather, lesson 1 of Zero to GANs.")


def mse(predictions: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    difference = predictions - targets
    return torch.sum(difference * difference) / difference.numel()


def mse_gradients(inputs, targets, w, b):
    """dMSE/dw and dMSE/db on paper: with e = x w^T + b - y over n entries, 2/n e^T x and 2/n sum(e)."""
    error = inputs @ w.t() + b - targets  # (15, 2)
    return 2 / error.numel() * error.t() @ inputs, 2 / error.numel() * error.sum(dim=0)


def autograd_warmup(run) -> None:
    """Part 0: autograd on y = w * x + b gives dy/dw = x and dy/db = 1."""
    x = torch.tensor(3.0)
    w = torch.tensor(4.0, requires_grad=True)
    b = torch.tensor(5.0, requires_grad=True)
    y = w * x + b
    run.accelerator.backward(y)
    run.print(f"y = w*x + b = {y.item()}; dy/dw = {w.grad.item()} (= x), dy/db = {b.grad.item()}")


def from_scratch(run, inputs, targets) -> None:
    """Part 1: a model as two tensors, trained with gradients that autograd computes."""
    cfg = run.config
    w = torch.randn(2, 3, device=run.device, requires_grad=True)
    b = torch.randn(2, device=run.device, requires_grad=True)
    run.print(f"from scratch: loss before {mse(inputs @ w.t() + b, targets).item():.1f}")
    for _ in range(cfg.scratch_epochs):
        loss = mse(inputs @ w.t() + b, targets)
        run.accelerator.backward(loss)
        expected_w, expected_b = mse_gradients(inputs, targets, w.detach(), b.detach())
        assert torch.allclose(w.grad, expected_w, rtol=1e-4) and torch.allclose(b.grad, expected_b, rtol=1e-4)
        with torch.no_grad():
            w -= cfg.lr * w.grad
            b -= cfg.lr * b.grad
            w.grad.zero_()
            b.grad.zero_()
    run.print(f"from scratch: loss after {cfg.scratch_epochs} epochs {mse(inputs @ w.t() + b, targets).item():.1f}"
              " (autograd matched the formula at every step)")


def train(run):
    cfg = run.config
    inputs = torch.tensor(INPUTS, dtype=torch.float32, device=run.device)
    targets = torch.tensor(TARGETS, dtype=torch.float32, device=run.device)
    if run.epoch == 0 and run.step == 0:  # parts 0 and 1 are not checkpointed; skip them on --resume
        autograd_warmup(run)
        from_scratch(run, inputs, targets)

    # Part 2: the same model with the building blocks of torch.nn.
    loader = DataLoader(TensorDataset(inputs, targets), batch_size=cfg.batch_size, shuffle=True)
    model = build_model("linear-regression")
    optimizer = torch.optim.SGD(model.parameters(), lr=cfg.lr)
    model, optimizer = run.prepare(model=model, optimizer=optimizer)
    loader = run.accelerator.prepare(loader)
    run.print(f"nn.Linear: loss before {F.mse_loss(model(inputs), targets).item():.1f}")

    for _ in run.epochs():
        for batch_inputs, batch_targets in run.batches(loader):
            loss = F.mse_loss(model(batch_inputs), batch_targets)
            run.accelerator.backward(loss)
            optimizer.step()
            optimizer.zero_grad()
            run.log_step(loss=loss)
        run.end_epoch()

    with torch.no_grad():
        final_loss = F.mse_loss(model(inputs), targets).item()
        apples, oranges = model(torch.tensor([NEW_REGION], device=run.device))[0].tolist()
    run.print(f"nn.Linear: loss after {cfg.epochs} epochs {final_loss:.1f}; "
              f"region {NEW_REGION} -> {apples:.1f} t/ha apples, {oranges:.1f} t/ha oranges")
    return run.finish(final_loss=round(final_loss, 3),
                      prediction_75_63_44=[round(apples, 2), round(oranges, 2)])
