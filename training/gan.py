"""What the two GAN lessons share: anime-face data, noise, samples, and quality measured.

- `anime_faces(run)`: the Kaggle anime faces decoded once into uint8 (N, 3, 64, 64), cached
  as safetensors under ~/.cache/zero-to-gans (never a pickle), or synthetic faces for smoke.
- `step_latents(run, ...)`: the noise of one training step, a function of (seed, epoch,
  step, process) only, so same-seed runs and resumed runs draw the same noise and every
  process of a multi-process run draws its own.
- `generate(...)`: images from a generator in eval mode, as uint8, for grids and metrics.
- `SlicedWasserstein`: the progressive-GAN paper's quality metric (Karras et al. 2018,
  appendix D): sliced Wasserstein distance between 7x7 patches of the Laplacian pyramids of
  real and generated images. Needs no downloaded weights, so it runs offline every epoch.
- `fid(...)`: Frechet Inception Distance through torch-fidelity, when the Inception weights
  are already in the local cache; otherwise a note saying why it was skipped.
- `timelapse(...)`: the per-epoch sample grids as one animated GIF.
"""

from __future__ import annotations

import hashlib
import io
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch
import torch.nn.functional as F

from shared.models.gan import to_pixels
from training.data import DataNotFound, TensorData, cache_dir, read_cache, write_cache

# ---- data --------------------------------------------------------------------------------------

ANIME_FOLDER = "animefacedataset"  # <data-dir>/animefacedataset/images/*.jpg, the Kaggle layout
KAGGLE_DATASET = "splcher/animefacedataset"


def anime_faces(run) -> TensorData:
    """The training faces on the device: the real dataset, or synthetic faces for the smoke profile."""
    if run.profile == "smoke":
        return run.to_device(synthetic_faces(256, seed=run.seed))
    with run.accelerator.main_process_first():  # one process decodes and caches, the others read
        return run.to_device(load_anime_faces(run.data_dir))


def load_anime_faces(data_dir: Path, size: int = 64) -> TensorData:
    """Every face of <data_dir>/animefacedataset/images/*.jpg as uint8 (N, 3, size, size); labels 0.

    Decoded once (resize of the shorter side and centre crop, as the course's transforms),
    then read from a safetensors cache keyed by the files' names, sizes and times.
    """
    folder = Path(data_dir) / ANIME_FOLDER / "images"
    files = sorted(folder.glob("*.jpg")) if folder.is_dir() else []
    if not files:
        folder = download_anime_faces(folder)
        files = sorted(folder.glob("*.jpg"))
    key = hashlib.sha1(str(folder.resolve()).encode())
    for f in files:
        stat = f.stat()
        key.update(f"{f.name}:{stat.st_size}:{stat.st_mtime_ns}\n".encode())
    cached = cache_dir() / f"animefaces-{size}px-{len(files)}-{key.hexdigest()[:16]}.safetensors"
    if cached.is_file():
        return read_cache(cached)
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:  # Pillow decodes without the GIL
        decoded = [image for image in pool.map(lambda f: _decode(f, size), files) if image is not None]
    if not decoded:
        raise DataNotFound(f"none of the {len(files)} JPEG files in {folder} could be decoded")
    if len(decoded) < len(files):
        print(f"[anime faces] skipped {len(files) - len(decoded)} unreadable files in {folder}", file=sys.stderr)
    faces = TensorData(torch.stack(decoded), torch.zeros(len(decoded), dtype=torch.long))  # (N, 3, size, size)
    write_cache(cached, faces)
    return faces


def _decode(path: Path, size: int) -> torch.Tensor | None:
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            image = image.convert("RGB")
    except (OSError, UnidentifiedImageError):  # a truncated or broken file: skip it
        return None
    if image.size != (size, size):
        image = ImageOps.fit(image, (size, size), Image.Resampling.BILINEAR)
    return torch.frombuffer(bytearray(image.tobytes()), dtype=torch.uint8).view(size, size, 3).permute(2, 0, 1)


def download_anime_faces(expected: Path) -> Path:
    """Download the Kaggle dataset with kagglehub (into its own cache); the `images` folder it holds."""
    try:
        import kagglehub

        root = Path(kagglehub.dataset_download(KAGGLE_DATASET))
        found = root / "images"
        if not any(found.glob("*.jpg")):
            raise FileNotFoundError(f"no images/*.jpg in the download at {root}")
        return found
    except Exception as error:  # not installed, offline, no Kaggle access
        reason = str(error).splitlines()[0] if str(error) else error.__class__.__name__
        raise DataNotFound(
            f"anime faces not found in {expected}/ and could not be downloaded ({reason}).\n"
            f"Expected the Kaggle '{KAGGLE_DATASET}' layout: {expected}/*.jpg (64x64 or larger RGB JPEGs).\n"
            "Point --data-dir (or $ZTG_DATA_DIR) at a folder that has animefacedataset/images/, "
            "or `pip install kagglehub` and run once with network access to download it."
        ) from error


def synthetic_faces(n: int, seed: int, size: int = 64) -> TensorData:
    """Cartoon faces for the smoke profile: a skin-toned disc, hair on top, two coloured eyes.

    Learnable in seconds and clearly structured, so a smoke run exercises the whole lesson.
    """
    g = torch.Generator().manual_seed(seed)
    y, x = torch.meshgrid(torch.linspace(-1, 1, size), torch.linspace(-1, 1, size), indexing="ij")

    def rand(*shape, low=0.0, high=1.0):
        return low + (high - low) * torch.rand(*shape, generator=g)

    background, skin, hair, eyes = rand(n, 3, 1, 1), rand(n, 3, 1, 1, low=0.7), rand(n, 3, 1, 1), rand(n, 3, 1, 1)
    cx, cy, radius = rand(n, 1, 1, low=-0.15, high=0.15), rand(n, 1, 1, low=0.0, high=0.2), rand(n, 1, 1, low=0.5, high=0.7)
    face = ((x - cx) ** 2 + (y - cy) ** 2 < radius**2).unsqueeze(1)                   # (n, 1, H, W)
    top = (face & (y < cy - 0.45 * radius).unsqueeze(1))
    eye_y, eye_dx = cy.unsqueeze(1), 0.4 * radius.unsqueeze(1)
    eye = torch.zeros_like(face)
    for side in (-1, 1):
        eye |= ((x - cx.unsqueeze(1) - side * eye_dx) ** 2 / 0.012 + (y - eye_y) ** 2 / 0.025) < 1
    images = torch.where(face, skin, background)
    images = torch.where(top, hair, images)
    images = torch.where(eye & face, eyes, images)
    images = images + 0.03 * torch.randn(images.shape, generator=g)
    return TensorData((images.clamp(0, 1) * 255).round().to(torch.uint8), torch.zeros(n, dtype=torch.long))


# ---- noise and samples -------------------------------------------------------------------------


def fixed_latents(count: int, latent_dim: int, seed: int, device) -> torch.Tensor:
    """(count, latent_dim) standard normal vectors drawn on the CPU from `seed`: the same on any hardware."""
    return torch.randn(count, latent_dim, generator=torch.Generator().manual_seed(seed)).to(device)


def step_latents(run, count: int, batch_size: int, latent_dim: int) -> torch.Tensor:
    """(count, batch_size, latent_dim) noise for this step of this process.

    A function of (seed, epoch, step, process) only: two runs with one seed draw the same
    noise, a resumed run draws what the uninterrupted one did, and the processes of a
    multi-process run draw different noise (one global seed would give them all the same).
    """
    key = ((run.seed * 1_000_003 + run.epoch) * 1_000_003 + run.step) * 1_009 + run.accelerator.process_index
    g = torch.Generator(device=run.device).manual_seed(key % (2**63))
    return torch.randn(count, batch_size, latent_dim, generator=g, device=run.device)


@torch.no_grad()
def generate(run, generator, latents: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """uint8 images (B, C, H, W) from `latents`, with the generator in eval mode as the Space runs it.

    Uses the unwrapped module, so no process waits on the others (no DDP buffer broadcast).
    """
    module = run.accelerator.unwrap_model(generator)
    was_training = module.training
    module.eval()
    images = torch.cat([to_pixels(module(latents[i:i + batch_size])) for i in range(0, len(latents), batch_size)])
    module.train(was_training)
    return images


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
            projected = (self.directions[i].T @ patches.T).sort(dim=1).values  # (dirs, M), sorted rows
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
        return {"fid_note": f"FID skipped: the Inception weights are not in the local cache "
                            f"({Path(torch.hub.get_dir()) / 'checkpoints' / INCEPTION_FILE}); "
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


# ---- timelapse -----------------------------------------------------------------------------------


def timelapse(folder: Path, frame_ms: int = 400, last_frame_ms: int = 2000) -> bytes | None:
    """The grids folder/epoch_NNN.png as one looping GIF with the epoch written above each; None if none."""
    from PIL import Image, ImageDraw

    frames = []
    for path in sorted(Path(folder).glob("epoch_*.png")):
        with Image.open(path) as grid:
            frame = Image.new("RGB", (grid.width, grid.height + 16), "white")
            frame.paste(grid.convert("RGB"), (0, 16))
        ImageDraw.Draw(frame).text((4, 2), f"epoch {int(path.stem.split('_')[1])}", fill="black")
        frames.append(frame)
    if not frames:
        return None
    buffer = io.BytesIO()
    frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:], loop=0,
                   duration=[frame_ms] * (len(frames) - 1) + [last_frame_ms])
    return buffer.getvalue()
