"""Figures written into checkpoints: training curves, image grids, confusion matrices, kernels and
feature maps, learning rates, timelapses."""

from __future__ import annotations

import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display on servers and CI
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from PIL import Image, ImageDraw  # noqa: E402
from torchvision.utils import make_grid  # noqa: E402

SKIP = {"epoch", "epoch_seconds", "samples_per_second", "train_seconds", "wall_seconds"}
FAMILIES = ("loss", "accuracy", "score", "swd")  # metrics whose name holds one share a panel


def plot_curves(history: list[dict], title: str):
    """One panel per family of metrics (losses, accuracies, GAN scores, SWD), one per other metric."""
    # every metric of any row, in order of first appearance: some are measured only in some epochs
    keys = list(dict.fromkeys(k for row in history for k, v in row.items()
                              if k not in SKIP and isinstance(v, (int, float))))
    groups = {family: [k for k in keys if family in k] for family in FAMILIES}
    groups.update({k: [k] for k in keys if not any(family in k for family in FAMILIES)})
    groups = {name: ks for name, ks in groups.items() if ks}
    fig, axes = plt.subplots(1, len(groups), figsize=(5 * len(groups), 3.5), squeeze=False)
    for ax, (name, ks) in zip(axes[0], groups.items(), strict=True):
        for k in ks:
            measured = [row for row in history if k in row]
            ax.plot([row["epoch"] for row in measured], [row[k] for row in measured], marker="o", label=k)
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
    """A grid of images (B, C, H, W) in [0, 1] titled 'true / predicted', wrong ones in red;
    with predictions=None, titled with their labels only (a look at the data)."""
    n = len(images)
    cols = min(8, n)
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(1.6 * cols, 1.9 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, image, label, pred in zip(axes.flat, images, labels, labels if predictions is None else predictions, strict=False):
        picture = image.permute(1, 2, 0).squeeze(-1).cpu().numpy()
        ax.imshow(picture, cmap=cmap if picture.ndim == 2 else None)
        name = class_names[label] if predictions is None else f"{class_names[label]} / {class_names[pred]}"
        ax.set_title(name, fontsize=8, color="black" if label == pred else "red")
    fig.suptitle(title if predictions is None else f"{title} (true / predicted)")
    fig.tight_layout()
    return fig


def kernels_figure(weight: torch.Tensor, title: str):
    """First-layer kernels (C_out, 3, k, k) as colour tiles: grey is 0, each kernel scaled to its own range."""
    weight = weight.detach().float().cpu()
    scale = weight.abs().amax(dim=(1, 2, 3), keepdim=True).clamp_min(1e-12)
    tiles = weight / scale / 2 + 0.5  # [-max, max] -> [0, 1]
    cols = min(16, len(tiles))
    rows = (len(tiles) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(0.8 * cols, 0.8 * rows + 0.6), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, tile in zip(axes.flat, tiles, strict=False):
        ax.imshow(tile.permute(1, 2, 0).numpy(), interpolation="nearest")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def feature_maps_figure(image: torch.Tensor, maps: dict[str, torch.Tensor], title: str, per_row: int = 16):
    """One input image (3, H, W) in [0, 1], then each named stage's feature maps (C, h, w) as grey tiles."""
    rows = [(len(m) + per_row - 1) // per_row for m in maps.values()]
    fig = plt.figure(figsize=(per_row * 0.9 + 2.2, 0.9 * sum(rows) + 0.8 * len(maps)))
    grid = fig.add_gridspec(sum(rows), per_row + 2)
    ax = fig.add_subplot(grid[:, :2])
    ax.imshow(image.permute(1, 2, 0).float().cpu().numpy())
    ax.set_title("input", fontsize=9)
    ax.axis("off")
    row = 0
    for (name, stage), height in zip(maps.items(), rows, strict=True):
        for i, channel in enumerate(stage.detach().float().cpu()):
            ax = fig.add_subplot(grid[row + i // per_row, 2 + i % per_row])
            ax.imshow(channel.numpy(), cmap="gray")
            ax.axis("off")
            if i == 0:
                ax.set_title(name, fontsize=9, loc="left")
        row += height
    fig.suptitle(title, fontsize=10)
    return fig


def learning_rate_figure(rates: list[float], title: str):
    """The learning rate of every optimizer step."""
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(range(1, len(rates) + 1), rates)
    ax.set_xlabel("step")
    ax.set_ylabel("learning rate")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def confusion_figure(labels: torch.Tensor, predicted: torch.Tensor, class_names, title: str):
    """Class-by-class counts, rows the true class and columns the predicted one, as a matplotlib figure."""
    import matplotlib.pyplot as plt

    counts = torch.bincount(labels * len(class_names) + predicted, minlength=len(class_names) ** 2)
    counts = counts.view(len(class_names), len(class_names))
    fig, ax = plt.subplots(figsize=(7, 6))
    ax.imshow(counts.numpy(), cmap="Blues")
    for (i, j), count in zip(torch.cartesian_prod(torch.arange(len(class_names)), torch.arange(len(class_names))).tolist(),
                             counts.flatten().tolist(), strict=True):
        ax.text(j, i, count, ha="center", va="center", fontsize=7,
                color="white" if count > counts.max() / 2 else "black")
    ax.set_xticks(range(len(class_names)), class_names, rotation=45, ha="right")
    ax.set_yticks(range(len(class_names)), class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"{title} ({100 * counts.diag().sum() / counts.sum():.1f}% correct)")
    fig.tight_layout()
    return fig


def timelapse(grids: dict[int, Path], frame_ms: int = 400, last_frame_ms: int = 2000) -> bytes | None:
    """The grids ({epoch: PNG file}, `shared.models.gan.sample_grids`) as one looping GIF with the
    epoch written above each; None if none."""
    frames = []
    for epoch, path in sorted(grids.items()):
        with Image.open(path) as grid:
            frame = Image.new("RGB", (grid.width, grid.height + 16), "white")
            frame.paste(grid.convert("RGB"), (0, 16))
        ImageDraw.Draw(frame).text((4, 2), f"epoch {epoch}", fill="black")
        frames.append(frame)
    if not frames:
        return None
    buffer = io.BytesIO()
    frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:], loop=0,
                   duration=[frame_ms] * (len(frames) - 1) + [last_frame_ms])
    return buffer.getvalue()
