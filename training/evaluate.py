"""Evaluation split across processes, counting every sample exactly once."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from training.data import TensorData


@torch.no_grad()
def evaluate_classifier(run, model, data: TensorData, preprocess, batch_size: int = 1000,
                        return_predictions: bool = False) -> dict:
    """Mean cross-entropy and accuracy (in %) over all of `data`.

    Process r takes samples r, r+W, r+2W, ... (no padding, no duplicates); the sums are
    reduced over processes, so `samples` equals len(data) however many processes run.
    With return_predictions, every process also gets all predicted labels in dataset order.
    """
    world, rank = run.accelerator.num_processes, run.accelerator.process_index
    was_training = model.training
    model.eval()
    index = torch.arange(rank, len(data), world, device=data.inputs.device)
    loss_sum = torch.zeros((), device=run.device)
    correct = torch.zeros((), device=run.device)
    predictions = []
    for start in range(0, len(index), batch_size):
        batch = index[start:start + batch_size]
        labels = data.labels[batch]
        logits = model(preprocess(data.inputs[batch])).float()
        loss_sum += F.cross_entropy(logits, labels, reduction="sum")
        predicted = logits.argmax(dim=1)
        correct += (predicted == labels).sum()
        predictions.append(predicted)
    model.train(was_training)
    totals = run.accelerator.reduce(torch.stack([loss_sum, correct, torch.tensor(float(len(index)), device=run.device)]))
    samples = int(totals[2].item())
    result = {"loss": totals[0].item() / samples, "accuracy": 100 * totals[1].item() / samples, "samples": samples}
    if return_predictions:
        mine = torch.cat(predictions) if predictions else torch.zeros(0, dtype=torch.long, device=run.device)
        padded = run.accelerator.pad_across_processes(mine, pad_index=-1)
        gathered = run.accelerator.gather(padded).view(world, -1)  # row r: process r's samples
        everything = torch.empty(len(data), dtype=torch.long, device=gathered.device)
        for r in range(world):
            count = len(range(r, len(data), world))
            everything[r::world] = gathered[r, :count]
        result["predictions"] = everything
    return result
