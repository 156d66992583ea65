"""Lesson 6b: a deep convolutional GAN (DCGAN) that draws 64x64 anime faces.

    python -m training anime-dcgan --profile cpu --data-dir ../shared/datasets
    accelerate launch -m training anime-dcgan --profile course --data-dir ...

The course's DCGAN: the generator grows 128 random numbers into a face through transposed
convolutions (512-256-128-64-3 channels, 4x4 -> 64x64, BatchNorm and ReLU, Tanh out);
the discriminator mirrors it with strided convolutions and LeakyReLU(0.2). Each step
(1) updates the discriminator, then (2) updates the generator. Data: the Kaggle
`splcher/animefacedataset` faces (<data-dir>/animefacedataset/images/*.jpg), decoded once
into a uint8 tensor and cached under ~/.cache/zero-to-gans.

Several processes: each process trains on its own share of every batch with its own
noise. BatchNorm under DDP is the trap. Before each forward DDP copies rank 0's BatchNorm
buffers into every process, in place, so running the discriminator on real and then on
fake images before one backward fails on CUDA ("modified by an inplace operation", see
pytorch/pytorch#175024; on a CPU it happens to pass, so a CPU test cannot catch it). The
discriminator's real and fake halves therefore get one backward each (the gradients add
up, as in pytorch/examples' dcgan; `training.gan.update_discriminator`, the step both GAN
lessons share). The broadcast itself is wanted: every forward starts
from rank 0's running statistics (what the generator uses in eval mode: the grids, the
Space), so the checkpoint rank 0 writes is the state of the whole run. Batch statistics stay
per process, over the per-process batch the course's single GPU saw (SyncBatchNorm would
normalise over the global batch and change the model with the number of processes).

Before training, as the notebook does, the run saves `real.png` (64 training faces) and
`samples/epoch_000.png` (the untrained generator's faces). Every epoch writes
`samples/epoch_NNN.png` (64 faces from fixed noise), the losses, the
mean scores D(x) and D(G(z)), and the sliced Wasserstein distance (SWD, lower is better)
between generated faces and a fixed set of real ones; the end adds `timelapse.gif`,
the curves, and FID when the Inception weights are in the local cache.
On purpose unlike the notebook: the discriminator's real and fake halves get a backward each
(above), and the cpu profile is its own recipe for a 2-core CPU (below).

The cpu profile's recipe, what makes 10 epochs of 15,896 faces look like faces: a generator
wider than the discriminator (width 48 against 32), DiffAugment's shift and cut-out (Zhao et
al. 2020: every image the discriminator sees, real or generated, is shifted by up to 8 pixels
and has a 32x32 square zeroed, differentiably, so D cannot memorise the small dataset and win
the game), and a published moving average of the generator (decay 0.999). Without DiffAugment
the same networks collapsed to grey noise in epoch 3 (D(x) 0.99, D(G(z)) 0.01). DiffAugment's
third change, colour (`--augment=color,translation,cutout`, the recipe before), is left out:
it hides the faces' colours from D, and the coarse colours were most of the distance (the SWD
at 16 pixels ended at 37-55 in three 26-epoch runs with it, and was 17-21 after 10 epochs
without). SWD after 12 epochs: 27.8-30.7 with colour, 18.8-20.6 without (three seeds each, bf16).

Expect, cpu profile on a 2-core Intel Xeon (AMX), alone: eyes, hair and face shapes from
epoch 3; in fp32 SWD 85.6 after epoch 1, below 30 from epoch 5 and 19.64 after 10 (seed 0),
90 s of training an epoch, 16 min 51 s in all. With `--mixed-precision bf16` (AMX): SWD 19.02,
21.09 and 19.84 for seeds 0-2 (mean 19.98), 48 s of training an epoch, 9 min 21 s in all.
The real-against-real floor is 7.7. The old cpu profile (width 32, 5 epochs, no augmentation)
ended at SWD 68.5; the colour recipe at 25.8 after 20 epochs (seed 0). Course profile (one
GPU, all 63,565 faces, 25 epochs, width 64, no augmentation or averaging): the course's recipe
and results. `--lr_decay=F` lets both rates fall linearly to 0 over the run's last share F.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import torch

from shared.models import build_model
from shared.models.gan import from_pixels, sample_grid, sample_grids
from training.anime_faces_data import anime_faces, data_problem
from training.averaging import decay_at, update_average
from training.config import Count, Decay, Fraction, Positive, Seed, Size
from training.gan import (
    Augmented,
    augment_policy,
    fixed_latents,
    generate,
    step_latents,
    update_discriminator,
    update_generator,
)
from training.gan_metrics import SlicedWasserstein, fid
from training.plots import image_grid, timelapse
from training.report import Reference


@dataclass
class Config:
    latent_dim: Count = 128
    width: Count = 64  # the course's network; channels are 8w-4w-2w-w
    generator_width: Size = 0  # 0: the same as width (the course); wider: a stronger generator, D unchanged
    epochs: Count = 25
    batch_size: Count = 128
    lr: Positive = 2e-4
    lr_decay: Fraction = 0.0  # the run's last share over which both learning rates fall linearly to 0; 0: constant
    augment: str = ""  # DiffAugment before the discriminator: comma-separated color,translation,cutout; "" off
    betas: list[Decay] = field(default_factory=lambda: [0.5, 0.999])
    average_decay: Decay = 0.0  # > 0: publish and measure a moving average of the generator's weights
    swd_images: Count = 2048  # generated vs real faces for the per-epoch SWD
    fid_images: Count = 2048
    synthetic_data: bool = False  # tiny generated data instead of the dataset (the smoke profile's)
    seed: Seed = 0

    def __post_init__(self):  # a bad --augment stops the command line before any face is decoded
        augment_policy(self.augment)


PROFILES = {
    "smoke": dict(width=8, epochs=2, batch_size=32, swd_images=64, fid_images=64, average_decay=0.99,
                  augment="color,translation,cutout", synthetic_data=True),
    # the faces recipe (the docstring's "Expect"): a wider generator, DiffAugment without colour,
    # a slower average; 10 epochs: about half an hour in fp32 on a 2-core CPU without bf16 units
    "cpu": dict(width=32, generator_width=48, augment="translation,cutout", epochs=10, batch_size=64,
                average_decay=0.999),
    "course": dict(swd_images=4096, fid_images=10_000),
}

TASK = dict(type="unconditional-image-generation", dataset="huggan/anime-faces",  # or the source found
            dataset_name="Anime faces (huggan/anime-faces, CC0)", pipeline_tag="unconditional-image-generation",
            split="train",  # the dataset has no test split: SWD and FID compare with training faces
            metrics={"swd": "Sliced Wasserstein distance x1e3 (lower is better)", "fid": "FID"},
            summary="DCGAN that draws 64x64 anime faces: lesson 6 of Zero to GANs. "
                    "The generator maps 128 standard normal numbers to a 64x64 RGB face in [-1, 1].")
DATA = data_problem

# The averaged generator after the profile's 10 epochs in fp32 (seed 0); seconds: the whole run (wall_seconds).
REFERENCE = Reference("swd", 19.64, spread=3, seconds=1007, higher_is_better=False,
                      measured_on="2-core Intel Xeon (AMX), fp32",
                      spread_is="about 3 standard deviations between seeds (1.05 for seeds 0-2 in bf16)")


def train(run):
    cfg = run.config
    faces = anime_faces(run)  # uint8 (N, 3, 64, 64) on the device
    held = torch.randperm(len(faces), generator=torch.Generator().manual_seed(cfg.seed))
    reference = faces.inputs[held[: cfg.swd_images]]  # the fixed real faces the SWD compares with

    generator = build_model("anime-dcgan", latent_dim=cfg.latent_dim, width=cfg.generator_width or cfg.width)
    discriminator = build_model("anime-dcgan-discriminator", width=cfg.width)
    optimizer_g = torch.optim.Adam(generator.parameters(), lr=cfg.lr, betas=tuple(cfg.betas))
    optimizer_d = torch.optim.Adam(discriminator.parameters(), lr=cfg.lr, betas=tuple(cfg.betas))
    steps = cfg.epochs * run.steps_per_epoch(faces, cfg.batch_size)
    decaying = max(1.0, cfg.lr_decay * steps)  # --lr_decay: the last steps, over which both rates fall to 0

    def factor(step: int) -> float:
        return min(1.0, (steps - step) / decaying) if cfg.lr_decay else 1.0

    scheduler_g, scheduler_d = (torch.optim.lr_scheduler.LambdaLR(opt, factor) for opt in (optimizer_g, optimizer_d))
    # With averaging, the average is the published generator; the raw one goes to generator/ for --resume.
    average = run.keep(generator_average=copy.deepcopy(generator) if cfg.average_decay else None)
    generator, discriminator, optimizer_g, optimizer_d, scheduler_g, scheduler_d = run.prepare(
        generator=generator, discriminator=discriminator, optimizer_g=optimizer_g, optimizer_d=optimizer_d,
        scheduler_g=scheduler_g, scheduler_d=scheduler_d, publish="generator" if average is None else "generator_average")
    published = average if average is not None else generator  # what the grids, SWD and the Space see

    grid_latents = fixed_latents(64, cfg.latent_dim, cfg.seed, run.device)
    swd_latents = fixed_latents(len(reference), cfg.latent_dim, cfg.seed + 1, run.device)
    swd = SlicedWasserstein(reference, levels=3)  # 64, 32 and 16 pixels
    unwrap = run.accelerator.unwrap_model
    if cfg.augment:  # from here on the step calls D through the augmentation (the checkpoint keeps plain D)
        discriminator = Augmented(discriminator, cfg.augment, run)

    if run.global_step == 0:  # a fresh run (a resumed one keeps its own): before any training, as the notebook
        run.add_file(sample_grid(0), image_grid(generate(run, published, grid_latents), value_range=(0, 255)))
        run.add_file("real.png", image_grid(faces.inputs[:64], value_range=(0, 255)))

    for epoch in run.epochs():
        for images, _ in run.batches(faces, cfg.batch_size):
            real = from_pixels(images)  # (B, 3, 64, 64) in [-1, 1]
            latent_d, latent_g = step_latents(run, 2, len(real), cfg.latent_dim)
            # (1) update D: real images -> 1, generated ones -> 0; (2) update G: new fakes -> 1 by the new D
            loss_d, real_score, fake_score = update_discriminator(run, discriminator, optimizer_d, real,
                                                                  generator, latent_d)
            loss_g = update_generator(run, generator, discriminator, optimizer_g, latent_g)
            scheduler_g.step()
            scheduler_d.step()
            if average is not None:
                update_average(unwrap(average), unwrap(generator), decay_at(run.global_step, cfg.average_decay))
            run.log_step(loss_d=loss_d, loss_g=loss_g, real_score=real_score, fake_score=fake_score)

        run.add_file(sample_grid(epoch), image_grid(generate(run, published, grid_latents), value_range=(0, 255)))
        live = {"swd_live": swd(generate(run, generator, swd_latents))["swd"]} if average is not None else {}
        run.end_epoch(**swd(generate(run, published, swd_latents)), **live)
        run.save_checkpoint()

    if run.is_main:  # the grids are files of the main process's checkpoint folder
        run.add_file("timelapse.gif", timelapse(sample_grids(run.folder)))
    floor = swd(faces.inputs[held[cfg.swd_images: 2 * cfg.swd_images]])["swd"]  # other real faces
    fakes = generate(run, published, fixed_latents(cfg.fid_images, cfg.latent_dim, cfg.seed + 2, run.device))
    last = {k: v for k, v in run.history[-1].items() if k.startswith("swd")}
    return run.finish(**last, swd_floor=floor, **fid(faces.inputs[held[: cfg.fid_images]], fakes))
