"""The model card: README.md whose YAML lists the final metrics as model-index results."""

from __future__ import annotations

import json

from huggingface_hub import EvalResult, ModelCard, ModelCardData

TEMPLATE = """---
{{ card_data }}
---

# {{ lesson }}

{{ summary }}

Trained with [zero-to-gans](https://github.com/zero-to-gans/zero-to-gans), lesson `{{ lesson }}`:

```bash
python -m training {{ lesson }} --profile {{ profile }}
```

## Results

{{ results }}

## Load it

```python
from shared.models import MODELS

model = MODELS["{{ model_name }}"].from_pretrained("{{ repo_hint }}")  # strict, safetensors only, eval() mode
```

## Training configuration

```json
{{ config }}
```
"""


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
    card_data = ModelCardData(
        library_name="pytorch", license="mit", tags=["zero-to-gans", task["type"], "pytorch_model_hub_mixin"],
        datasets=[task["dataset"]], pipeline_tag=task.get("pipeline_tag"),
        model_name=snapshot.lesson, eval_results=results or None,
    )
    lines = [f"| {label} | {metrics[key]} |" for key, label in task.get("metrics", {}).items() if key in metrics]
    for key in ("train_seconds", "samples_per_second", "device", "epochs"):
        if key in metrics:
            lines.append(f"| {key.replace('_', ' ')} | {metrics[key]} |")
    results_md = "| metric | value |\n|---|---|\n" + "\n".join(lines) if lines else "(training in progress)"
    if not snapshot.complete:
        results_md = f"Checkpoint after epoch {snapshot.progress.epoch} (training not finished).\n\n" + results_md
    return ModelCard.from_template(
        card_data, template_str=TEMPLATE, lesson=snapshot.lesson, summary=task["summary"],
        profile=snapshot.profile, results=results_md, model_name=snapshot.lesson,
        repo_hint=f"<org>/{snapshot.lesson}", config=json.dumps(snapshot.config, indent=2),
    )
