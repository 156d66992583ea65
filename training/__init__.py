"""Every lesson of the course as a program run through Hugging Face Accelerate.

    python -m training <lesson> [--profile smoke|cpu|course] [--key=value ...]
    accelerate launch -m training <lesson> ...
    python -m training all

How the spine works (what a new lesson writes; training/lessons/mnist_logistic.py is the
shortest example):

1. `Config`, a dataclass of every hyperparameter, and `PROFILES = {"smoke": ..., "cpu": ...,
   "course": ...}`, each a dict of fields to change. Profiles are only data: `smoke` sets
   `synthetic_data=True` and small sizes, and every field can be changed with `--key=value`.
   A string setting with fixed choices is a `Literal[...]`; a number's type says its valid
   range (`epochs: Count`, `lr: Positive`, `dropout: Fraction`, see training/config.py). The
   parser checks both before any data is read.
2. `TASK`, what the model card says: task type (the Hub's pipeline tag unless `pipeline_tag`
   says otherwise), dataset (a Hub dataset id such as `ylecun/mnist` where the data is on the
   Hub, else a plain name that the card names in its text only), metrics, summary. A data
   loader may add which copy it read (`dataset_copy`, and `dataset_original=False` for a lossy
   one: training.card). `DATA`, the dataset's check (None when it is on disk or downloadable,
   else what to do), which `cli.check_data` runs for every lesson before the first one trains;
   a lesson that brings its own data has no `DATA`. `REFERENCE`, a `training.report.Reference`
   (or None): the README's measurement of the headline metric, which `all`'s results page
   compares a run of the same profile with, and whose time `all` uses to estimate the time left.
3. `train(run)`, the loop, top to bottom. `cli.run_lesson` builds the config, the
   Accelerator and the `Run` (with `checkpoint.load(folder)` on --resume) and calls it.
   Inside, in this order:
   - data: `mnist_splits(run)` / `cifar_splits(run)` / ... (uint8 tensors on the device);
   - `run.prepare(model=..., optimizer=..., scheduler=..., publish=NAME)`: Accelerate wraps
     them; on --resume they come back as they were saved. `publish` names the module that
     the Hub and the Spaces load (not needed with one model). A moving average of the
     weights, never trained by a gradient, goes to `run.keep(average=...)` first instead:
     saved and restored the same way, not wrapped by Accelerate;
   - `for epoch in run.epochs():` then `for inputs, labels in run.batches(data, batch_size):`
     a step: forward, `run.accelerator.backward(loss)`, `optimizer.step()`, and
     `run.log_step(loss=loss)`; `run.global_step` counts batches over the whole run;
   - `run.end_epoch(val_accuracy=...)`: averages, prints; then `run.save_checkpoint()`, the
     write a resumed run starts from, where a stop request is honoured too (see training/run.py
     for everything `batches` and `end_epoch` do besides: NaN checks, the save a stop makes);
   - `run.add_file(name, figure)` for pictures (the next write holds them; a GAN's grid after
     each epoch under `shared.models.gan.sample_grid(epoch)`, where the faces Space finds it);
     `return run.finish(test_accuracy=...)`, which writes the final checkpoint.
4. Register it: one line in `LESSONS` (training/lessons/__init__.py), its name and module.
   The command line, `all` (its data check first, then the lesson in course order, then the
   results page) and the smoke sweep in tests/test_lessons.py find it there; a new
   architecture is registered in `shared/models/`, where the Spaces find it too.
5. Optionally `PLAYGROUND = PlaygroundSettings(...)` (training/playground.py): what a visitor
   of the playground Space may change, within what bounds, and the picture after each epoch;
   a lesson that declares it is on that page.

A checkpoint flows one way: `Run.snapshot()` -> `checkpoint.save` -> folder ->
`checkpoint.load` -> the next `Run`. Each dataset has a module named for it and its layer
(`mnist_data`, `cifar10_data`, `anime_faces_data`, `insurance_data`, `folder_data`: a
module's name ends in `_data` where it loads data, as the models in shared/models/ are
named for their architecture and the lessons for the lesson), augmentation is in `augment`,
evaluation in `evaluate`, figures in `plots`, GAN noise in `gan` and GAN metrics in
`gan_metrics`; what a person following a run reads (number formats, time left, the results
page) in `report`.
"""

import os

M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4  # glibc's mallopt parameters (malloc.h)


def keep_freed_memory() -> None:
    """Make glibc's malloc keep the memory a training step frees for the next step, instead of
    handing every large block back to the OS and faulting it in again, one zeroed page at a time:
    for a training process (the command line, the playground's worker), never on import. Does
    nothing on another C library, with ZTG_KEEP_FREED_MEMORY=0 (glibc's own behaviour), or where
    MALLOC_MMAP_MAX_ or MALLOC_TRIM_THRESHOLD_ is set (whoever tuned glibc wins).

    glibc maps each block over its mmap threshold (128 KiB, rising to 32 MiB at most) on its
    own and unmaps it on free; a batch's activations are such blocks (about 47 MB for a part of
    256 images after airbench's first convolution). With the heap serving them and never
    trimmed, the steps reuse the same memory: bench/bench_allocator.py measures the speed, the page faults and the
    peak memory against glibc's own behaviour (the README's "Memory kept between steps").
    """
    import ctypes  # here, not at the top: only a training process needs them, not every import of training
    import platform

    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return
    if os.environ.get("ZTG_KEEP_FREED_MEMORY") == "0" or "MALLOC_MMAP_MAX_" in os.environ \
            or "MALLOC_TRIM_THRESHOLD_" in os.environ:
        return
    libc = ctypes.CDLL("libc.so.6")
    libc.mallopt(M_MMAP_MAX, 0)  # no mapping per large block: the heap serves them
    libc.mallopt(M_TRIM_THRESHOLD, -1)  # and keeps what is freed at its top (mallopt(3): -1 never trims)


def sleeping_openmp_waits() -> None:
    """Make OpenMP threads sleep, not spin, while they wait: for a process whose cores other
    processes need (the playground's worker beside its server, several training processes on
    one machine), called before torch loads, never on import; an explicit setting wins.

    Spinning threads burn the cores other processes need, and crawl when those processes take
    the cores: measured on a shared 2-core machine, ResNet9 trained 2-3x faster with sleeping
    waits. A lone training process keeps OpenMP's default (spin a moment, then sleep): sleeping
    after every operation halved the MNIST lessons' speed on a free 2-core Intel Xeon (mnist-mlp
    59,100 img/s against 118,700 with the default; bench/bench_mnist_training.py), while the
    CIFAR-10 networks' large operations ran the same either way (within 4%).
    """
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
