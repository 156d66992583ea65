"""The model card: README.md whose YAML lists the final metrics as model-index results.

The YAML says what the Hub indexes: the same `library_name`, `license` and tags as the
models' mixin (shared/models/registry.py), the `pipeline_tag` (the task type unless TASK
names one), `datasets:` only where the dataset is on the Hub (a TASK `dataset` with a slash,
e.g. `ylecun/mnist`), and `model-index` results only where they were measured on that Hub
dataset itself. The model-index spec requires a dataset `type`, a Hub dataset id, so a
dataset that is not on the Hub (`insurance`, `crop-yields`, a user's `imagefolder`) is named
in the card's text with its results, never given an id it does not have. Neither are results
on a copy whose pixels differ from the Hub's (the JPEG copy of CIFAR-10: the data loader sets
`dataset_copy` and `dataset_original` in the task) nor on the smoke profile's synthetic data.

The card says where the code is and how to install it (`CODE_URL`, the one place that names
it), so its "Load it" snippet works for anyone who finds the repo on the Hub.

The card of an unfinished checkpoint (a run stopped by Ctrl-C, SIGTERM or the playground's
Stop, or one still training) says so first: where the run stopped out of how many epochs,
the last validation numbers, and that no test metric belongs to these weights. Such a folder can be
published on purpose (`training.hub --allow-unfinished`), so the card must not pass for a
finished model's.
"""

from __future__ import annotations

import json
import re

from huggingface_hub import EvalResult, ModelCard, ModelCardData

from shared.models.registry import CODE_URL, LIBRARY_NAME, LICENSE, TAGS, registered_name

TEMPLATE = """---
{{ card_data }}
---

# {{ lesson }}

{{ summary }}

Trained by the `{{ lesson }}` lesson of [zero-to-gans]({{ code_url }}), the course "Deep Learning
with PyTorch: Zero to GANs" as Hugging Face Accelerate programs:

```bash
python -m training {{ lesson }} --profile {{ profile }}
```

## Data

{{ data }}

## Results

{{ results }}

## Load it

The model's class is in the `shared` package of [zero-to-gans]({{ code_url }}), the code that
trained it. Install it with pip (it brings PyTorch and huggingface_hub), then load the weights:

```bash
pip install "zero-to-gans @ git+{{ code_url }}"
```

```python
from shared.models import MODELS

model = MODELS["{{ model_name }}"].from_pretrained("{{ repo_id }}")  # strict, safetensors only, eval() mode
```

## Training configuration

```json
{{ config }}
```
"""

# The load line of a card that is not on the Hub yet; `for_repo` puts the real repo id in.
_LOAD_LINE = re.compile(r'(\]\.from_pretrained\(")[^"\n]*("\))')


def model_card(snapshot, metrics: dict) -> ModelCard:
    """The card of a checkpoint.Snapshot, with `metrics` (final, or carried over mid-run)."""
    task = snapshot.task
    hub_id = task["dataset"] if "/" in task["dataset"] else None
    synthetic = bool(snapshot.config.get("synthetic_data"))
    measured_on_hub = hub_id is not None and not synthetic and task.get("dataset_original", True)
    copy = f", {task['dataset_copy']}" if task.get("dataset_copy") else ""
    results = []
    for key, label in task.get("metrics", {}).items():
        if measured_on_hub and isinstance(metrics.get(key), (int, float)):
            results.append(EvalResult(
                task_type=task["type"], task_name=task["type"].replace("-", " ").title(),
                dataset_type=hub_id, dataset_name=task["dataset_name"] + copy, dataset_split=task.get("split", "test"),
                metric_type=key.rsplit("_", 1)[-1], metric_name=label, metric_value=metrics[key]))
    card_data = ModelCardData(
        library_name=LIBRARY_NAME, license=LICENSE,
        tags=sorted({*TAGS, "pytorch_model_hub_mixin", "model_hub_mixin", task["type"]}),
        datasets=[hub_id] if hub_id and not synthetic else None, pipeline_tag=task.get("pipeline_tag", task["type"]),
        model_name=snapshot.lesson if results else None, eval_results=results or None,  # the name heads model-index
    )
    lines = [f"| {label} | {metrics[key]} |" for key, label in task.get("metrics", {}).items() if key in metrics]
    for key in ("train_seconds", "wall_seconds", "samples_per_second", "device", "epochs"):
        if key in metrics:
            lines.append(f"| {key.replace('_', ' ')} | {metrics[key]} |")
    table = "| metric | value |\n|---|---|\n" + "\n".join(lines) if lines else ""
    if snapshot.complete:
        results_md = table or "(no metrics recorded)"
    else:
        results_md = "\n\n".join(part for part in (unfinished_note(snapshot, metrics), table) if part)
    published = snapshot.modules.get(snapshot.published)
    model_name = (registered_name(type(published)) if published is not None else None) or snapshot.lesson
    return ModelCard.from_template(
        card_data, template_str=TEMPLATE, lesson=snapshot.lesson, summary=task["summary"], code_url=CODE_URL,
        data=data_text(task, hub_id, synthetic), profile=snapshot.profile, results=results_md,
        model_name=model_name, repo_id=f"<org>/{snapshot.lesson}", config=json.dumps(snapshot.config, indent=2),
    )


def data_text(task: dict, hub_id: str | None, synthetic: bool) -> str:
    """The card's "Data" section: which data, which copy of it, and why results are or are not metadata."""
    name = task["dataset_name"]
    if synthetic:
        return (f"Trained and evaluated on small synthetic stand-in data (`--synthetic_data`, as the smoke "
                f"profile does), not on {name}: these weights and numbers only show that the code runs, "
                "so the card's metadata claims no result.")
    if hub_id is None:
        return (f"Trained on {name}, which is not a Hugging Face Hub dataset: its results are in the table "
                "below, not in the card's metadata (whose model-index takes Hub dataset ids).")
    text = f"Trained on {name} ([`{hub_id}`](https://huggingface.co/datasets/{hub_id}) on the Hub)"
    if task.get("dataset_copy"):
        text += f", read from {task['dataset_copy']}"
    if not task.get("dataset_original", True):
        text += (f". The results were measured on that copy, not on `{hub_id}`'s own pixels, so the card's "
                 "metadata lists none of them; they are in the table below")
    return text + "."


def stopped_at(epochs_done: int, step: int, epochs_planned: int | None) -> str:
    """Where a run stands, in words: "after epoch 1 of 3" or "12 batches into epoch 2 of 3"
    (`step`: batches done in the epoch in progress, as in `checkpoint.Progress`)."""
    of = f" of {epochs_planned}" if epochs_planned else ""
    if step:
        return f"{step} batch{'es' if step > 1 else ''} into epoch {epochs_done + 1}{of}"
    return f"after epoch {epochs_done}{of}"


def unfinished_note(snapshot, metrics: dict) -> str:
    """The first lines of an unfinished checkpoint's results: where it stopped and what was measured."""
    progress = snapshot.progress
    where = stopped_at(progress.epoch, progress.step, snapshot.config.get("epochs"))
    note = [f"**Unfinished run: training stopped {where}.** "
            "These are the weights of that moment."]
    tested = [key for key in snapshot.task.get("metrics", {}) if key in metrics]
    if tested and "epochs" in metrics:  # carried over from a finish before a --resume with more epochs
        note.append(f"The results below were measured when the run first finished, after epoch {metrics['epochs']}.")
    else:
        note.append("They were not evaluated on the test set.")
    last = progress.history[-1] if progress.history else {}
    shown = [f"{key.replace('_', ' ')} {value:.4g}" for key, value in last.items() if isinstance(value, (int, float))
             and key not in ("epoch", "epoch_seconds", "samples_per_second") and not key.startswith("train_")]
    if shown:
        note.append(f"After epoch {last['epoch']}: {', '.join(shown)}.")
    return " ".join(note)


def for_repo(card_text: str, repo_id: str) -> str:
    """The card as published to `repo_id`: its "Load it" snippet names that repo."""
    return _LOAD_LINE.sub(lambda m: f"{m[1]}{repo_id}{m[2]}", card_text, count=1)
