"""airbench96_faster's data selection: each batch trains on its hardest share, as a small proxy
network judges it.

Images that even a small network already classifies well teach a big one little. A proxy of
a fraction of the size (widths 32-64-64: a few percent of airbench96's compute per image)
sees every batch first; the images with the highest loss under it, `keep` of the batch (half
in airbench96_faster), are what the main network learns from. The proxy learns alongside, on
the same selected images, with a backward pass only every `LEARN_EVERY`-th batch (the rest are
forward passes for ranking), so its ranking keeps up with training.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

LEARN_EVERY = 4  # batches; airbench96_faster's


class HardestShare:
    """Called with an augmented batch, returns its hardest `keep` share (images, labels)."""

    def __init__(self, run, proxy, optimizer, scheduler, keep: float, label_smoothing: float):
        """`proxy`, `optimizer`, `scheduler`: prepared by `run.prepare` (so saved and resumed);
        the scheduler steps every batch, as the main network's does."""
        self.run, self.proxy, self.optimizer, self.scheduler = run, proxy, optimizer, scheduler
        self.keep, self.label_smoothing = keep, label_smoothing

    def __call__(self, images: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        learn = self.run.global_step % LEARN_EVERY == 0  # by the run's step: the same after --resume
        self.proxy.train()
        with torch.set_grad_enabled(learn):
            losses = F.cross_entropy(self.proxy(images).float(), labels, reduction="none",
                                     label_smoothing=self.label_smoothing)
        hardest = losses.detach().topk(max(1, round(len(labels) * self.keep))).indices
        if learn:
            self.run.accelerator.backward(losses[hardest].mean())
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)
        self.scheduler.step()
        return images[hardest], labels[hardest]
