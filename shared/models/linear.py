"""Lesson 1's model: crop yields (apples, oranges) from temperature, rainfall and humidity."""

from __future__ import annotations

from torch import nn

from .registry import HubModel, register_model


@register_model("linear-regression")
class LinearRegression(HubModel):
    input_shape = (3,)

    def __init__(self, in_features: int = 3, out_features: int = 2):
        super().__init__()
        self.linear = nn.Linear(in_features, out_features)

    def forward(self, inputs):
        return self.linear(inputs)  # (B, 3) -> (B, 2)
