"""How good a GAN's images are, as numbers: sliced Wasserstein distance and FID.

- `SlicedWasserstein`: the progressive-GAN paper's quality metric (Karras et al. 2018,
  appendix D): sliced Wasserstein distance between 7x7 patches of the Laplacian pyramids of
  real and generated images. Needs no downloaded weights, so it runs offline every epoch.
- `fid(...)`: Frechet Inception Distance through torch-fidelity, when the Inception weights
  are already in the local cache; otherwise a note saying why it was skipped.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

# ---- quality: sliced Wasserstein distance (offline) ----------------------------------------------

_BINOMIAL = torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0])
_GAUSSIAN = torch.outer(_BINOMIAL, _BINOMIAL) / 256  # the 5x5 filter of a Gaussian pyramid


def _blur(images: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
    c = images.shape[1]
    kernel = (_GAUSSIAN * scale).to(images).expand(c, 1, 5, 5)
    return F.conv2d(F.pad(images, (2, 2, 2, 2), mode="reflect"), kernel, groups=c)


def laplacian_pyramid(images: torch.Tensor, levels: int) -> list[torch.Tensor]:
    """Float (B, C, H, W) -> `levels` band-pass images, full resolution first, the coarsest last."""
    gaussians = [images]
    for _ in range(levels - 1):
        gaussians.append(_blur(gaussians[-1])[:, :, ::2, ::2])
    pyramid = []
    for fine, coarse in zip(gaussians, gaussians[1:], strict=False):
        up = torch.zeros_like(fine)
        up[:, :, ::2, ::2] = coarse
        pyramid.append(fine - _blur(up, scale=4.0))  # what the coarser level cannot explain
    return pyramid + [gaussians[-1]]


def sorted_rows(values: torch.Tensor) -> torch.Tensor:
    """Each row of a 2-D tensor in ascending order. On a CPU through numpy, whose vectorised sort
    (AVX2 or AVX-512) took 0.16 s against torch.sort's 1.17 s for the 512 x 65,536 values of one
    pyramid level (a 2-core Xeon): the same result, and most of what the per-epoch SWD cost."""
    if values.device.type == "cpu":
        return torch.from_numpy(np.sort(values.numpy(), axis=1))
    return values.sort(dim=1).values


def _patches(level: torch.Tensor, per_image: int, size: int, g: torch.Generator) -> torch.Tensor:
    """`per_image` random size x size neighbourhoods of every image -> (B * per_image, C * size * size),
    each colour channel normalised to zero mean and unit deviation over the whole set."""
    b, c, h, w = level.shape
    half = size // 2
    image = torch.arange(b).repeat_interleave(per_image)
    cy = torch.randint(half, h - half, (len(image),), generator=g)
    cx = torch.randint(half, w - half, (len(image),), generator=g)
    offsets = torch.arange(-half, half + 1)
    ys, xs = (cy[:, None] + offsets).to(level.device), (cx[:, None] + offsets).to(level.device)
    patches = level[image.to(level.device)[:, None, None], :, ys[:, :, None], xs[:, None, :]]  # (M, k, k, C)
    patches = patches - patches.mean(dim=(0, 1, 2))
    patches = patches / patches.std(dim=(0, 1, 2)).clamp_min(1e-8)
    return patches.permute(0, 3, 1, 2).flatten(1)


class SlicedWasserstein:
    """Sliced Wasserstein distance (x1e3) between a fixed set of real images and generated ones.

    Per pyramid level (64, 32 and 16 pixels for 64x64 images): `patches_per_image` random 7x7
    neighbourhoods per image, normalised per channel, projected on `directions` random unit
    vectors (512, as in the paper); the distance is the mean over directions of the 1-D
    Wasserstein-1 distance of the projections, read from 1,024 quantiles. The directions and
    patch positions are fixed by `seed`, so epoch-to-epoch changes come from the generator. The
    metric's own precision: on one DCGAN checkpoint, three seeds of 256 directions over 1,024
    images gave 68.2-70.5, so read differences of about 1 as no change; more directions and
    images narrow that.
    Lower is better; called on a second real sample it gives the floor, the value a perfect
    generator would get at this sample size.
    """

    QUANTILES = 1024

    def __init__(self, real: torch.Tensor, levels: int = 3, patches_per_image: int = 32,
                 patch_size: int = 7, directions: int = 512, seed: int = 0):
        self.levels, self.per_image, self.patch_size, self.seed = levels, patches_per_image, patch_size, seed
        channels = real.shape[1]
        g = torch.Generator().manual_seed(seed)
        dirs = torch.randn(levels, channels * patch_size**2, directions, generator=g)
        self.directions = (dirs / dirs.norm(dim=1, keepdim=True)).to(real.device)
        self.resolutions = [real.shape[-1] >> i for i in range(levels)]
        self.real = self._quantiles(real)

    @torch.no_grad()
    def _quantiles(self, images: torch.Tensor) -> list[torch.Tensor]:
        g = torch.Generator().manual_seed(self.seed + 1)  # the same patch positions for every call
        result = []
        for i, level in enumerate(laplacian_pyramid(images.float(), self.levels)):
            patches = _patches(level, self.per_image, self.patch_size, g)      # (M, C * 49)
            projected = sorted_rows(self.directions[i].T @ patches.T)  # (dirs, M), each row sorted
            at = ((torch.arange(self.QUANTILES) + 0.5) * projected.shape[1] / self.QUANTILES).long()
            result.append(projected[:, at.to(projected.device)])                # (dirs, QUANTILES)
        return result

    def __call__(self, images: torch.Tensor) -> dict[str, float]:
        """uint8 images (B, C, H, W) -> {"swd": mean over levels, "swd_64": ..., "swd_32": ..., ...}."""
        distances = [(a - b).abs().mean().item() * 1e3 for a, b in zip(self.real, self._quantiles(images), strict=True)]
        result = {"swd": round(sum(distances) / len(distances), 3)}
        result.update({f"swd_{r}": round(d, 3) for r, d in zip(self.resolutions, distances, strict=True)})
        return result


# ---- quality: FID (needs the Inception weights, never downloaded here) -----------------------------

INCEPTION_FILE = "weights-inception-2015-12-05-6726825d.pth"  # torch-fidelity's file in the torch hub cache


def inception_weights() -> Path | None:
    """The Inception weights torch-fidelity uses, if already on disk ($ZTG_INCEPTION_WEIGHTS or the torch hub cache)."""
    if os.environ.get("ZTG_INCEPTION_WEIGHTS"):
        path = Path(os.environ["ZTG_INCEPTION_WEIGHTS"])
        return path if path.is_file() else None
    path = Path(torch.hub.get_dir()) / "checkpoints" / INCEPTION_FILE
    return path if path.is_file() else None


@torch.no_grad()
def fid(real: torch.Tensor, fake: torch.Tensor, batch_size: int = 64) -> dict:
    """{"fid": value, "fid_images": n} for uint8 image sets, or {"fid_note": why it was skipped}."""
    weights = inception_weights()
    if weights is None:
        # No path here: the note is published in metrics.json, and a path would show this machine's.
        return {"fid_note": f"FID skipped: the Inception weights are not in the local cache (torch-fidelity's "
                            f"{INCEPTION_FILE} in the torch hub checkpoints folder); "
                            "set ZTG_INCEPTION_WEIGHTS to the file or download it once to measure FID"}
    try:
        from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3
    except ImportError:
        return {"fid_note": "FID skipped: torch-fidelity is not installed (pip install torch-fidelity)"}
    # torch-fidelity unpickles the file; load it first with weights_only=True so that only a
    # plain tensor state dict (nothing executable) ever reaches it.
    torch.load(weights, map_location="cpu", weights_only=True)
    extractor = FeatureExtractorInceptionV3("inception-v3-compat", ["2048"], feature_extractor_weights_path=str(weights))
    extractor = extractor.to(real.device)

    def statistics(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if images.shape[1] == 1:  # grey digits -> RGB
            images = images.expand(-1, 3, -1, -1)
        features = torch.cat([extractor(images[i:i + batch_size])[0].double().cpu()
                              for i in range(0, len(images), batch_size)])
        return features.mean(dim=0), torch.cov(features.T)

    (mu1, sigma1), (mu2, sigma2) = statistics(real), statistics(fake)
    # tr(sqrt(S1 S2)) from the eigenvalues of S1 S2, which are real and non-negative up to rounding.
    covmean_trace = torch.linalg.eigvals(sigma1 @ sigma2).sqrt().real.sum()
    value = (mu1 - mu2).square().sum() + sigma1.trace() + sigma2.trace() - 2 * covmean_trace
    return {"fid": round(value.item(), 3), "fid_images": len(fake)}
