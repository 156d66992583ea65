"""Lesson 4: a convolutional network on CIFAR-10, and what over- and underfitting look like.

    python -m training cifar10-cnn --profile cpu --data-dir ../shared/datasets
    accelerate launch -m training cifar10-cnn --profile course     # the course's network, on a GPU

The course's network: three blocks of two 3x3 convolutions (32-64, 128-128, 256-256), each
block ending in a 2x2 max pool, then linear layers 4096-1024-512-10; Adam at 0.001 for
10 epochs on 45,000 images, a seeded 5,000 held out for validation. No augmentation and
no regularisation, on purpose: read `curves.png`. In the first epochs both losses fall
(the network underfits: it has not learnt all it can), then the training loss keeps
falling while the validation loss turns up and the gap between training and validation
accuracy widens (it overfits: it learns the 45,000 images rather than pictures in general).
Lesson 5 (`cifar10-resnet9`) is what to do about it. Besides the curves, the confusion matrix
and misclassified test images, the checkpoint shows what the convolutions learnt: `kernels.png`
(the first layer's 3x3 kernels) and `feature_maps.png` (a test image after the first two
convolutions). On purpose unlike the notebook: inputs are normalised with the CIFAR-10 channel
statistics that lesson 5 uses (the notebook feeds ToTensor's [0, 1]).

Expect, on the JPEG copy of CIFAR-10: cpu profile (the course's layout at a quarter of
the channels, 8 to 64, and its 10 epochs) 71.6% test accuracy after 249 s of training
on a 2-core AMD EPYC (1,800 img/s); validation loss lowest after epoch 6, then rising while
training accuracy climbs to 88% and validation accuracy stays at 71%. Course profile
(`--profile course`, full width): the course reports 75-78%; not measured here yet.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from shared.models import build_model
from shared.models.cifar10 import CLASSES
from training.cifar10_data import cifar_splits, conv_input, data_problem
from training.config import Count, Positive, Seed, Size
from training.evaluate import evaluate_classifier, report_test_set, test_metrics
from training.plots import feature_maps_figure, kernels_figure
from training.report import Reference


@dataclass
class Config:
    width: Count = 32  # channels of the first convolution; 32 is the course's network
    hidden_sizes: list[Count] = field(default_factory=lambda: [1024, 512])
    epochs: Count = 10
    batch_size: Count = 128
    lr: Positive = 1e-3
    val_size: Size = 5_000
    synthetic_data: bool = False  # tiny generated data instead of the dataset (the smoke profile's)
    seed: Seed = 0


PROFILES = {
    "smoke": dict(width=4, hidden_sizes=[32], epochs=2, batch_size=64, val_size=128, synthetic_data=True),
    "cpu": dict(width=8),  # a quarter of the channels; the course's 10 epochs
    "course": dict(),
}

TASK = dict(type="image-classification", dataset="uoft-cs/cifar10", dataset_name="CIFAR-10",
            metrics={"test_accuracy": "Test accuracy"},
            summary="The course's convolutional network on CIFAR-10 (no augmentation, so it "
                    "overfits): lesson 4 of Zero to GANs.")
DATA = data_problem

REFERENCE = Reference("test_accuracy", 71.62, spread=1.5, seconds=249.4)


@torch.no_grad()
def draw_kernels_and_feature_maps(run, model, test_set):
    """What the convolutions learnt: the first layer's kernels, and one test image after each of
    the first two convolutions (+ ReLU), one grey tile per channel."""
    model.eval()
    image = test_set.inputs[:1]  # (1, 3, 32, 32) uint8
    first = model.features[:2](conv_input(image))   # (1, w, 32, 32)
    second = model.features[2:4](first)             # (1, 2w, 32, 32)
    run.add_file("kernels.png", kernels_figure(model.features[0].weight, "cifar10-cnn: first layer's 3x3 kernels"))
    run.add_file("feature_maps.png", feature_maps_figure(
        image[0].float() / 255, {"conv 1 + ReLU": first[0], "conv 2 + ReLU": second[0]},
        f"cifar10-cnn: feature maps of a test image ({CLASSES[test_set.labels[0]]})"))


def train(run):
    cfg = run.config
    train_set, val_set, test_set = cifar_splits(run)

    model = build_model("cifar10-cnn", width=cfg.width, hidden_sizes=cfg.hidden_sizes)
    model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)  # constant rate, as in the course
    model, optimizer = run.prepare(model=model, optimizer=optimizer)

    for _ in run.epochs():
        model.train()
        for images, labels in run.batches(train_set, cfg.batch_size):
            logits = model(conv_input(images))
            loss = F.cross_entropy(logits, labels)
            run.accelerator.backward(loss)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            # Accuracy on the batches trained on: compared with val_accuracy, it shows the overfitting.
            run.log_step(loss=loss, accuracy=100 * (logits.argmax(1) == labels).float().mean())
        val = evaluate_classifier(run, model, val_set, conv_input)
        run.end_epoch(val_loss=val["loss"], val_accuracy=val["accuracy"])
        run.save_checkpoint()

    test = report_test_set(run, model, test_set, conv_input, CLASSES)
    draw_kernels_and_feature_maps(run, run.accelerator.unwrap_model(model), test_set)
    best = min(run.history, key=lambda row: row["val_loss"])
    run.print(f"[cifar10-cnn] lowest validation loss after epoch {best['epoch']} of {cfg.epochs}; "
              "after that the network overfits (see curves.png)")
    return run.finish(**test_metrics(test, model), best_val_loss_epoch=best["epoch"])
