"""The model card: README.md whose YAML lists the final metrics as model-index results.

The YAML says what the Hub indexes: the same `library_name`, `license` and tags as the
models' mixin (shared/models/registry.py), the `pipeline_tag` (the task type unless TASK
names one), and `datasets:` only where the dataset is on the Hub (a TASK `dataset` with a
slash, e.g. `ylecun/mnist`; a plain name such as `insurance` is not linked anywhere). The
card links only to places that exist: the project's own URL when its metadata has one
(`[project.urls]` in pyproject.toml; none today), nothing invented.

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

from shared.models.registry import LIBRARY_NAME, LICENSE, TAGS, registered_name

TEMPLATE = """---
{{ card_data }}
---

# {{ lesson }}

{{ summary }}

Trained by the `{{ lesson }}` lesson of {{ project }}, the course "Deep Learning with PyTorch:
Zero to GANs" as Hugging Face Accelerate programs:

```bash
python -m training {{ lesson }} --profile {{ profile }}
```

## Results

{{ results }}

## Load it

With the `shared/` package of zero-to-gans on the Python path:

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
    results = []
    for key, label in task.get("metrics", {}).items():
        if isinstance(metrics.get(key), (int, float)):
            results.append(EvalResult(
                task_type=task["type"], task_name=task["type"].replace("-", " ").title(),
                dataset_type=task["dataset"], dataset_name=task["dataset_name"], dataset_split=task.get("split", "test"),
                metric_type=key.rsplit("_", 1)[-1], metric_name=label, metric_value=metrics[key]))
    on_hub = "/" in task["dataset"]
    card_data = ModelCardData(
        library_name=LIBRARY_NAME, license=LICENSE,
        tags=sorted({*TAGS, "pytorch_model_hub_mixin", "model_hub_mixin", task["type"]}),
        datasets=[task["dataset"]] if on_hub else None, pipeline_tag=task.get("pipeline_tag", task["type"]),
        model_name=snapshot.lesson, eval_results=results or None,
    )
    lines = [f"| {label} | {metrics[key]} |" for key, label in task.get("metrics", {}).items() if key in metrics]
    for key in ("train_seconds", "samples_per_second", "device", "epochs"):
        if key in metrics:
            lines.append(f"| {key.replace('_', ' ')} | {metrics[key]} |")
    table = "| metric | value |\n|---|---|\n" + "\n".join(lines) if lines else ""
    if snapshot.complete:
        results_md = table or "(no metrics recorded)"
    else:
        results_md = "\n\n".join(part for part in (unfinished_note(snapshot, metrics), table) if part)
    published = snapshot.modules.get(snapshot.published)
    model_name = (registered_name(type(published)) if published is not None else None) or snapshot.lesson
    url = project_url()
    return ModelCard.from_template(
        card_data, template_str=TEMPLATE, lesson=snapshot.lesson, summary=task["summary"],
        project=f"[zero-to-gans]({url})" if url else "zero-to-gans",
        profile=snapshot.profile, results=results_md, model_name=model_name,
        repo_id=f"<org>/{snapshot.lesson}", config=json.dumps(snapshot.config, indent=2),
    )


def stopped_at(progress, epochs_planned: int | None) -> str:
    """Where a run stands, in words: "after epoch 1 of 3" or "12 batches into epoch 2 of 3"."""
    of = f" of {epochs_planned}" if epochs_planned else ""
    if progress.step:
        return f"{progress.step} batch{'es' if progress.step > 1 else ''} into epoch {progress.epoch + 1}{of}"
    return f"after epoch {progress.epoch}{of}"


def unfinished_note(snapshot, metrics: dict) -> str:
    """The first lines of an unfinished checkpoint's results: where it stopped and what was measured."""
    progress = snapshot.progress
    note = [f"**Unfinished run: training stopped {stopped_at(progress, snapshot.config.get('epochs'))}.** "
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


def project_url() -> str | None:
    """The project's source URL from its installed metadata ([project.urls]), or None."""
    from importlib import metadata

    try:
        urls = metadata.metadata("zero-to-gans").get_all("Project-URL") or []
    except metadata.PackageNotFoundError:
        return None
    found = dict(entry.split(", ", 1) for entry in urls if ", " in entry)
    for label in ("Source", "Repository", "Homepage"):
        if found.get(label, "").startswith("https://"):
            return found[label]
    return None
