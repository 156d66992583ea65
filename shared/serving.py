"""What every Space does the same way to serve: its output files, its queue and its launch.

Output files. Gradio 6.31 saves an image returned as an array or a PIL image by rewriting its
cache file in place on every request, so two requests with the same output can be served a
half-written file (seen: 2 of 32 concurrent clients got a truncated download). A file returned
by path is copied into the cache atomically. So a Space hands Gradio finished files: written
under a temporary name and renamed, in a folder named after their content (identical outputs
share one), and pruned once Gradio has had its copy. `delete_cache` prunes Gradio's copies and
the uploads by age (an hour), and `prune_gradio_files` by size: at its peak (8.6 requests/s) the
faces Space wrote 2.2 MiB of copies a second, an hour of which is 8 GiB of the Space's disk.

Queue and launch. A public Space on a 2-core machine: a bounded queue, two requests at a time,
one torch thread per request (tiny models gain nothing from more, and on busy cores two threads
per request mostly wait for each other: measured 6x slower on the CIFAR-10 Space), small
uploads, errors shown only as the messages the app wrote, no monitoring endpoint.

Memory. glibc's malloc gives the threads that allocate arenas of their own, up to 8 per core,
and keeps what a request freed in an arena for later requests instead of giving it back: a
server whose requests run in Gradio's many worker threads grows by about a request's memory per
arena. Measured on the faces Space (2,000 requests from 16 clients): +125 MiB, 15 arenas holding
4-34 MiB each. `launch` stops malloc from making more arenas (past those the start-up made:
five on the faces Space, whose models load in threads) and calls `malloc_trim` every
TRIM_EVERY seconds, which returns the free pages of every arena: +47 MiB over 3,000 requests.

Housekeeping: `prune_folders` deletes a Space's own folders past an age, `prune_gradio_files`
bounds Gradio's files by size, and `every` runs such a task on a timer of the server (not of a
page: it runs with no visitor too).
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import io
import math
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

# Blocks(delete_cache=...): every 10 minutes, Gradio deletes uploads and outputs older than an hour.
DELETE_CACHE = (600, 3600)
# ... and every 30 s, while its copies and the uploads hold more than 2 GiB, the oldest go, but
# none younger than 2 minutes (a visitor may still click a download the answer just showed).
GRADIO_FILES_MAX_BYTES = 2 * 2**30
GRADIO_FILES_MIN_AGE = 120
GRADIO_FILES_EVERY = 30
MAX_QUEUE = 64
CONCURRENT_REQUESTS = 2
M_ARENA_MAX = -8  # glibc's <malloc.h>
MALLOC_ARENAS = 2  # as many as requests run at once; arenas the start-up made stay
TRIM_EVERY = 10  # seconds between malloc_trim calls (each takes 2-64 ms on the faces Space's heap, cores shared)


class OutputFiles:
    """Files for Gradio to serve, in a folder of this process: one subfolder per content.

    `write(data, name)` returns the path `<folder>/<digest of data>/<name>`; `name` is what a
    download is called. The folder is bounded by age, by count and by size: entries unused for
    `max_age` seconds go, and while there are more than `max_entries` entries or more than
    `max_bytes` bytes in all, the oldest go too, but never one younger than `min_age` seconds.

    Why `min_age` can be short: a browser never fetches these files. Gradio copies a returned file
    into its own cache before it answers the request (`save_file_to_cache`, in the postprocessing
    of the same request) and the page downloads that copy; ours only has to outlive the rest of
    the function and that copy, which takes milliseconds, a second or two on a loaded 2-core
    server. So under a burst the folder holds at most the larger of its bounds and `min_age`
    seconds of outputs (faces at 12 requests/s: about 30 MB), instead of a whole busy minute.

    Pruning scans the folder inside a write, every `prune_every` seconds, or sooner once an eighth
    of either bound has been written since the last scan; the folder itself goes when the process
    exits.
    """

    def __init__(self, app: str, *, max_age: float = 600, max_entries: int = 500, max_bytes: int = 64 * 2**20,
                 min_age: float = 10, prune_every: float = 60):
        self.folder = Path(tempfile.mkdtemp(prefix=f"zero-to-gans-{app}-"))
        atexit.register(shutil.rmtree, self.folder, ignore_errors=True)
        self.max_age, self.max_entries, self.max_bytes = max_age, max_entries, max_bytes
        self.min_age, self.prune_every = min_age, prune_every
        self._lock = threading.Lock()  # a prune never removes an entry while a write reuses it
        self._last_prune = time.monotonic()
        self._writes = self._bytes = 0  # since the last prune

    def write(self, data: bytes, name: str) -> str:
        entry = self.folder / hashlib.sha256(data).hexdigest()[:32]
        handle, partial = tempfile.mkstemp(dir=self.folder, prefix=".", suffix=".partial")
        try:
            with os.fdopen(handle, "wb") as file:
                file.write(data)
        except BaseException:  # a full disk, say: the request fails, no partial file stays
            os.unlink(partial)
            raise
        with self._lock:
            entry.mkdir(exist_ok=True)
            os.utime(entry)  # in use again: young for the pruning below
            # Atomic, even over the same file being read: a reader has the old one or the new one.
            os.replace(partial, entry / name)
            self._writes, self._bytes = self._writes + 1, self._bytes + len(data)
            if (time.monotonic() - self._last_prune >= self.prune_every or self._writes * 8 >= self.max_entries
                    or self._bytes * 8 >= self.max_bytes):
                self._prune()
        return str(entry / name)

    def png(self, image, name: str = "image.png", **options) -> str:
        """A PIL image as a PNG file (`options` go to `Image.save`)."""
        buffer = io.BytesIO()
        image.save(buffer, format="PNG", **options)
        return self.write(buffer.getvalue(), name)

    def _prune(self) -> None:
        self._last_prune, self._writes, self._bytes = time.monotonic(), 0, 0
        entries = []  # (last used, bytes, entry)
        for entry in self.folder.iterdir():
            if entry.name.startswith("."):  # a write in progress
                continue
            with contextlib.suppress(OSError):
                entries.append((entry.stat().st_mtime, sum(f.stat().st_size for f in entry.iterdir()), entry))
        for _, _, entry in oldest_over_bounds(entries, max_bytes=self.max_bytes, min_age=self.min_age,
                                              max_age=self.max_age, max_count=self.max_entries):
            shutil.rmtree(entry, ignore_errors=True)


def oldest_over_bounds(rows, *, max_bytes: float, min_age: float, max_age: float = math.inf,
                       max_count: float = math.inf):
    """The rows (last used, bytes, item) to delete, oldest first: every one unused for `max_age`
    seconds and, while more than `max_count` rows or `max_bytes` bytes remain, the oldest, but never
    one used in the last `min_age` seconds."""
    rows, now = sorted(rows, key=lambda row: row[0]), time.time()
    count, total = len(rows), sum(size for _, size, _ in rows)
    for row in rows:
        age = now - row[0]
        if not (age > max_age or (age > min_age and (count > max_count or total > max_bytes))):
            return  # the rest are younger still
        yield row
        count, total = count - 1, total - row[1]


def prune_folders(root: Path, max_age: float, keep=frozenset()) -> None:
    """Delete the folders in `root` untouched for `max_age` seconds, except those in `keep`."""
    now = time.time()
    for folder in root.glob("*") if root.is_dir() else []:
        with contextlib.suppress(OSError):
            if folder not in keep and now - folder.stat().st_mtime > max_age:
                shutil.rmtree(folder)


def prune_gradio_files(demo, max_bytes: int, min_age: float) -> int:
    """Delete the oldest of the files Gradio made for `demo` (its copies of outputs, the uploads)
    while they hold more than `max_bytes`, never one touched in the last `min_age` seconds nor one
    Gradio keeps (an example's); returns the bytes deleted.

    The same files and the same clock as `delete_cache` (Gradio's sets of the files it made, their
    ctime, which Gradio renews when it hands out a copy again), and, as there, a deleted file
    leaves Gradio's sets: only a bound on their total is added."""
    keep = set()
    for block in demo.blocks.values():
        keep.update(getattr(block, "keep_in_cache", ()))
    holders, rows = {}, []  # path -> the sets holding it; (ctime, bytes, path)
    for tracked in demo.temp_file_sets:
        for path in list(tracked):  # a copy: requests add to these sets while this runs
            if path in keep:
                continue
            if path not in holders:
                try:
                    stat = os.lstat(path)
                except OSError:  # gone already
                    tracked.discard(path)
                    continue
                holders[path] = []
                rows.append((stat.st_ctime, stat.st_size, path))
            holders[path].append(tracked)
    freed = 0
    for _, size, path in oldest_over_bounds(rows, max_bytes=max_bytes, min_age=min_age):
        with contextlib.suppress(FileNotFoundError):
            os.remove(path)
        with contextlib.suppress(OSError):  # Gradio's folder for the file (named after its content), if empty
            os.rmdir(Path(path).parent)
        for tracked in holders[path]:
            tracked.discard(path)
        freed += size
    return freed


def every(seconds: float, task, name: str) -> threading.Thread:
    """Run `task()` every `seconds` in a daemon thread of the server. Housekeeping must run whether
    or not anyone visits: a gr.Timer ticks in each open page instead (an event per visitor per tick,
    and none with nobody there). A failure is logged; the next round tries again."""
    def loop():
        while True:
            time.sleep(seconds)
            try:
                task()
            except Exception as error:  # noqa: BLE001
                print(f"[{name}] failed: {type(error).__name__}: {error}", file=sys.stderr)

    thread = threading.Thread(target=loop, name=name, daemon=True)
    thread.start()
    return thread


def _give_freed_memory_back() -> None:
    """Bound the memory glibc's malloc keeps after requests (see the module docstring); nothing
    where malloc is another (macOS, musl)."""
    import ctypes

    libc = ctypes.CDLL(None)  # the C library this process runs on
    mallopt, trim = getattr(libc, "mallopt", None), getattr(libc, "malloc_trim", None)
    if mallopt is None or trim is None:
        return
    mallopt(M_ARENA_MAX, MALLOC_ARENAS)  # before the server starts its threads, which would each make one
    every(TRIM_EVERY, lambda: trim(0), "malloc-trim")


def queue(demo, *, max_size: int = MAX_QUEUE):
    """The Space's queue: at most `max_size` waiting, CONCURRENT_REQUESTS at a time (one per core).
    Returns `demo`."""
    return demo.queue(max_size=max_size, default_concurrency_limit=CONCURRENT_REQUESTS)


def launch(demo, *, max_file_size: str = "10mb") -> None:
    """Serve `demo` as a public Space does (see the module docstring); $ZTG_TORCH_THREADS overrides
    the one torch thread per request, $ZTG_GRADIO_FILES_MB the bound on Gradio's files (MiB)."""
    import torch

    torch.set_num_threads(int(os.environ.get("ZTG_TORCH_THREADS", 1)))
    _give_freed_memory_back()
    max_bytes = int(float(os.environ.get("ZTG_GRADIO_FILES_MB", GRADIO_FILES_MAX_BYTES / 2**20)) * 2**20)
    every(GRADIO_FILES_EVERY, lambda: prune_gradio_files(demo, max_bytes, GRADIO_FILES_MIN_AGE), "prune-gradio-files")
    demo.launch(max_file_size=max_file_size, show_error=False, enable_monitoring=False)
