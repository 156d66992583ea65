"""Evaluation split across processes, counting every sample exactly once."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from training.data import TensorData


@torch.no_grad()
def evaluate_classifier(run, model, data: TensorData, preprocess, batch_size: int = 256,
                        return_predictions: bool = False) -> dict:
    """Mean cross-entropy and accuracy (in %) over all of `data`.

    Process r takes samples r, r+W, r+2W, ... (no padding, no duplicates); the sums are
    reduced over processes, so `samples` equals len(data) however many processes run.
    With return_predictions, every process also gets all predicted labels in dataset order.
    A model may return a dict of logits by view (`MultiCrop(..., plain_too=True)`): the first
    view is the one reported; each other view adds its own loss and accuracy under its name.
    """
    world, rank = run.accelerator.num_processes, run.accelerator.process_index
    was_training = model.training
    model.eval()
    index = torch.arange(rank, len(data), world, device=data.inputs.device)
    sums, predictions = None, []  # sums: per view, its loss sum and its count of correct
    # A process without samples still passes one empty batch, so every process reduces the same views.
    for start in range(0, max(len(index), 1), batch_size):
        batch = index[start:start + batch_size]
        labels = data.labels[batch]
        with run.accelerator.autocast():  # the run's precision, for kept modules too (Run.keep)
            out = model(preprocess(data.inputs[batch]))
        views = out if isinstance(out, dict) else {"": out}
        names = list(views)
        if sums is None:
            sums = torch.zeros(len(views), 2, device=run.device)
        for i, logits in enumerate(views.values()):
            logits = logits.float()
            predicted = logits.argmax(dim=1)
            sums[i, 0] += F.cross_entropy(logits, labels, reduction="sum")
            sums[i, 1] += (predicted == labels).sum()
            if i == 0:
                predictions.append(predicted)
    model.train(was_training)
    count = torch.tensor([float(len(index))], device=run.device)
    totals = run.accelerator.reduce(torch.cat([sums.flatten(), count]))
    samples = int(totals[-1].item())
    per_view = {name: {"loss": loss / samples, "accuracy": 100 * correct / samples}
                for name, (loss, correct) in zip(names, totals[:-1].view(-1, 2).tolist(), strict=True)}
    first, *others = names
    result = {**per_view[first], "samples": samples} | {name: per_view[name] for name in others}
    if return_predictions:
        mine = torch.cat(predictions)
        padded = run.accelerator.pad_across_processes(mine, pad_index=-1)
        gathered = run.accelerator.gather(padded).view(world, -1)  # row r: process r's samples
        everything = torch.empty(len(data), dtype=torch.long, device=gathered.device)
        for r in range(world):
            count = len(range(r, len(data), world))
            everything[r::world] = gathered[r, :count]
        result["predictions"] = everything
    return result


def test_metrics(test: dict, model: torch.nn.Module | None = None) -> dict:
    """What a classifier's metrics.json reports of `evaluate_classifier`'s result on the test set."""
    metrics = {"test_accuracy": round(test["accuracy"], 2), "test_loss": test["loss"], "test_samples": test["samples"]}
    if model is not None:
        metrics["parameters"] = sum(p.numel() for p in model.parameters())
    return metrics


def report_test_set(run, model, test_set: TensorData, preprocess, class_names) -> dict:
    """Test loss/accuracy, plus confusion_matrix.png and misclassified.png in the checkpoint."""
    from training.plots import confusion_figure, predictions_figure

    test = evaluate_classifier(run, model, test_set, preprocess, return_predictions=True)
    predicted, labels = test.pop("predictions").cpu(), test_set.labels.cpu()
    run.add_file("confusion_matrix.png", confusion_figure(labels, predicted, class_names, f"{run.lesson}: test set"))
    wrong = (predicted != labels).nonzero().flatten()
    # A seeded sample, in test-set order: the first 32 would all be airplanes (the folder order).
    shown = wrong[torch.randperm(len(wrong), generator=torch.Generator().manual_seed(0))[:32]].sort().values
    title = f"{run.lesson}: misclassified test images"
    if not len(shown):  # a perfect score still gets its picture
        shown, title = torch.arange(min(32, len(labels))), f"{run.lesson}: no test image misclassified"
    run.add_file("misclassified.png", predictions_figure(
        test_set.inputs[shown.to(test_set.inputs.device)].float() / 255, labels[shown].tolist(),
        predicted[shown].tolist(), class_names, title))
    return test
