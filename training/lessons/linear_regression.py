"""Lesson 1: tensors, autograd and gradient descent, then the same with torch.nn.

    python -m training linear-regression

First the basics of the course's first notebook, printed as numbered sections and checked
as they run: creating tensors, their dtype and shape, the ValueError a ragged nested list
gives, NumPy both ways (`from_numpy` and `.numpy()` share memory, `torch.tensor` copies),
and autograd on y = w*x + b.

Then predict crop yields (apples, oranges) from temperature, rainfall and humidity in 15
regions. By hand first: a weight matrix and a bias, the mean squared error, gradients
from autograd (checked against the formula derived on paper), and updates under
`torch.no_grad()`. Then with `nn.Linear`, `TensorDataset`, `DataLoader`, `F.mse_loss` and
`torch.optim.SGD`. The data is small enough to live in this file, so no --data-dir.

Expect (any CPU, a second or two): the loss falls from thousands to a few tens and the
region [75, 63, 44] is predicted around [55, 69].
"""

from __future__ import annotations

import ast
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from shared.models import build_model
from training.config import Count, Positive, Seed
from training.playground import Number, PlaygroundSettings, fitted_values
from training.report import Reference

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
    scratch_epochs: Count = 100  # part 1: gradient descent by hand
    epochs: Count = 100  # part 2: nn.Linear + DataLoader
    lr: Positive = 1e-5
    batch_size: Count = 5
    seed: Seed = 42


PROFILES = {"smoke": dict(scratch_epochs=5, epochs=5), "cpu": dict(), "course": dict()}

TASK = dict(type="tabular-regression", dataset="crop-yields", dataset_name="Crop yields (course lesson 1)",
            metrics={"final_loss": "MSE on the training data"},
            summary="Linear regression of crop yields on weather, lesson 1 of Zero to GANs.")

# MSE after 100 epochs; the run is deterministic (seed 42): the spread allows for other CPUs and versions.
REFERENCE = Reference("final_loss", 44.57, spread=1.0, seconds=1, higher_is_better=False)

# In the playground Space: part 2 with the visitor's settings (part 1 at its 100 epochs); the
# picture is the fitted yields against the true ones.
PLAYGROUND = PlaygroundSettings(
    lr=Number("lr", 1e-5, 1e-7, 1e-4), epochs=Number("epochs", 100, 1, 500, integer=True),
    batch_size=Number("batch_size", 5, 1, 15, integer=True), fixed=("--scratch_epochs=100",),
    picture=fitted_values(INPUTS, TARGETS, ["apples (t/ha)", "oranges (t/ha)"]))


def mse(predictions: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    difference = predictions - targets
    return torch.sum(difference * difference) / difference.numel()


def mse_gradients(inputs, targets, w, b):
    """dMSE/dw and dMSE/db on paper: with e = x w^T + b - y over n entries, 2/n e^T x and 2/n sum(e)."""
    error = inputs @ w.t() + b - targets  # (15, 2)
    return 2 / error.numel() * error.t() @ inputs, 2 / error.numel() * error.sum(dim=0)


def basics(run) -> dict:
    """Part 0, the first notebook: tensors, dtype and shape, NumPy both ways, autograd.

    Printed as numbered sections and checked as it goes; returns what it found for the tests.
    """
    facts = {}
    run.print("1. Tensors: a number, a vector, a matrix, a 3-d array; integers stay integers")
    for text in ("4.", "[1., 2, 3, 4]", "[[5., 6], [7, 8], [9, 10]]",
                 "[[[11, 12, 13], [13, 14, 15]], [[15, 16, 17], [17, 18, 19.]]]", "[1, 2, 3]"):
        t = torch.tensor(ast.literal_eval(text))
        facts[text] = (t.dtype, tuple(t.shape))
        run.print(f"   torch.tensor({text}): dtype {t.dtype}, shape {tuple(t.shape)}")

    run.print("2. A tensor is rectangular: a ragged nested list is refused")
    try:
        torch.tensor([[5.0, 6, 11], [7, 8]])
    except ValueError as error:
        facts["ragged_error"] = str(error)
    run.print(f"   torch.tensor([[5., 6, 11], [7, 8]]) -> ValueError: {facts['ragged_error']}")

    run.print("3. NumPy both ways: from_numpy and .numpy() share memory, torch.tensor copies")
    array = np.array([[1, 2], [3, 4.0]])
    shared, copied = torch.from_numpy(array), torch.tensor(array)
    array[0, 0] = 100  # seen through the tensor that shares the buffer, not through the copy
    facts |= {"from_numpy_dtype": shared.dtype, "from_numpy_shares_memory": shared[0, 0].item() == 100,
              "tensor_copies": copied[0, 0].item() == 1, "numpy_shares_memory": np.shares_memory(shared.numpy(), array)}
    assert facts["from_numpy_shares_memory"] and facts["tensor_copies"] and facts["numpy_shares_memory"]
    run.print(f"   np.array float64 -> torch.from_numpy: {shared.dtype}; after array[0, 0] = 100 it reads "
              f"{shared[0, 0].item():g}, the torch.tensor copy still {copied[0, 0].item():g}; "
              f".numpy() shares memory: {facts['numpy_shares_memory']}")

    run.print("4. Autograd on y = w*x + b, with x = 3, w = 4, b = 5")
    x = torch.tensor(3.0)
    w = torch.tensor(4.0, requires_grad=True)
    b = torch.tensor(5.0, requires_grad=True)
    y = w * x + b
    run.accelerator.backward(y)
    facts |= {"y": y.item(), "dy_dw": w.grad.item(), "dy_db": b.grad.item(), "dy_dx": x.grad}
    assert (facts["dy_dw"], facts["dy_db"], facts["dy_dx"]) == (3.0, 1.0, None)
    run.print(f"   y = {y.item():g}; dy/dw = {w.grad.item():g} (= x), dy/db = {b.grad.item():g}, "
              "dy/dx = None (x does not require grad)")
    return facts


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
        basics(run)
        from_scratch(run, inputs, targets)

    # Part 2: the same model with the building blocks of torch.nn.
    # Accelerate gives every process a DataLoader of its own: each takes its part of the global batch.
    loader = DataLoader(TensorDataset(inputs, targets), batch_size=run.local_batch(cfg.batch_size), shuffle=True)
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
        run.save_checkpoint()

    with torch.no_grad():
        final_loss = F.mse_loss(model(inputs), targets).item()
        apples, oranges = model(torch.tensor([NEW_REGION], device=run.device))[0].tolist()
    run.print(f"nn.Linear: loss after {cfg.epochs} epochs {final_loss:.1f}; "
              f"region {NEW_REGION} -> {apples:.1f} t/ha apples, {oranges:.1f} t/ha oranges")
    return run.finish(final_loss=round(final_loss, 3),
                      prediction_75_63_44=[round(apples, 2), round(oranges, 2)])
