"""Figures written into checkpoints: training curves and image grids."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # no display on servers and CI
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402
from torchvision.utils import make_grid  # noqa: E402

SKIP = {"epoch", "epoch_seconds", "samples_per_second"}
FAMILIES = ("loss", "accuracy", "score", "swd")  # metrics whose name holds one share a panel


def plot_curves(history: list[dict], title: str):
    """One panel per family of metrics (losses, accuracies, GAN scores, SWD), one per other metric."""
    keys = [k for k in history[0] if k not in SKIP and isinstance(history[0][k], (int, float))]
    groups = {family: [k for k in keys if family in k] for family in FAMILIES}
    groups.update({k: [k] for k in keys if not any(family in k for family in FAMILIES)})
    groups = {name: ks for name, ks in groups.items() if ks}
    fig, axes = plt.subplots(1, len(groups), figsize=(5 * len(groups), 3.5), squeeze=False)
    epochs = [row["epoch"] for row in history]
    for ax, (name, ks) in zip(axes[0], groups.items(), strict=True):
        for k in ks:
            ax.plot(epochs, [row.get(k) for row in history], marker="o", label=k)
        ax.set_xlabel("epoch")
        ax.set_title(name)
        ax.legend()
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    return fig


def image_grid(images: torch.Tensor, nrow: int = 8, value_range=(0, 1)) -> Image.Image:
    """(B, C, H, W) float images in `value_range` -> one PIL grid image."""
    low, high = value_range
    grid = make_grid(((images.detach().float().cpu() - low) / (high - low)).clamp(0, 1), nrow=nrow, padding=2)
    return Image.fromarray((grid.permute(1, 2, 0) * 255).round().byte().numpy())


def predictions_figure(images: torch.Tensor, labels, predictions, class_names, title: str, cmap="gray"):
    """A grid of images titled 'true / predicted', wrong ones in red."""
    n = len(images)
    cols = min(8, n)
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(1.6 * cols, 1.9 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, image, label, pred in zip(axes.flat, images, labels, predictions, strict=False):
        picture = image.permute(1, 2, 0).squeeze(-1).cpu().numpy()
        ax.imshow(picture, cmap=cmap if picture.ndim == 2 else None)
        ax.set_title(f"{class_names[label]} / {class_names[pred]}", fontsize=8,
                     color="black" if label == pred else "red")
    fig.suptitle(f"{title} (true / predicted)")
    fig.tight_layout()
    return fig
