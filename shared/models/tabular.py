"""Assignment 2's model: yearly medical charges (USD) from a person's details, one nn.Linear.

The model describes itself. Its config.json holds the feature names, which also say how
each feature is encoded ("age" is the number as it is, "smoker=yes" is 1.0 for "yes" and
0.0 for anything else), plus the means and standard deviations of the training split.
So `encode(rows, model.feature_names)` followed by `model(...)` turns raw CSV rows into
charges with nothing else to look up.
"""

from __future__ import annotations

import torch
from torch import nn

from .registry import HubModel, register_model

# Every column of insurance.csv except the target. Each categorical column is one-hot
# encoded with its first category (female, no, northeast) left out as the baseline: a
# column for every category would add up to the bias column, and least squares would
# then have no single solution.
INSURANCE_FEATURES = ["age", "sex=male", "bmi", "children", "smoker=yes",
                      "region=northwest", "region=southeast", "region=southwest"]


def encode(rows: list[dict], feature_names: list[str]) -> torch.Tensor:
    """Raw rows (column -> value, as read from the CSV) -> float features (N, F)."""
    def value(row: dict, name: str) -> float:
        column, is_category, category = name.partition("=")
        return float(row[column] == category) if is_category else float(row[column])

    return torch.tensor([[value(row, name) for name in feature_names] for row in rows], dtype=torch.float32)


@register_model("insurance-regression")
class InsuranceRegression(HubModel):
    """Standardise the encoded features, apply nn.Linear, and scale the output back to USD."""

    def __init__(self, feature_names: list[str] = tuple(INSURANCE_FEATURES),
                 feature_means: list[float] | None = None, feature_stds: list[float] | None = None,
                 target_mean: float = 0.0, target_std: float = 1.0):
        super().__init__()
        self.feature_names = list(feature_names)
        self.input_shape = (len(self.feature_names),)
        width = len(self.feature_names)
        # Not persistent: config.json is the one place these numbers live, and
        # model.safetensors holds only what training learnt.
        self.register_buffer("feature_means", torch.tensor(feature_means or [0.0] * width), persistent=False)
        self.register_buffer("feature_stds", torch.tensor(feature_stds or [1.0] * width), persistent=False)
        self.target_mean, self.target_std = target_mean, target_std
        self.linear = nn.Linear(width, 1)

    def forward(self, features):
        standardised = (features - self.feature_means) / self.feature_stds  # (B, F)
        return self.linear(standardised) * self.target_std + self.target_mean  # (B, 1) charges in USD
