"""shared/serving.py: the output files every Space hands to Gradio, and the settings they share."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from PIL import Image

from shared.serving import OutputFiles, prune_gradio_files

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def outputs():
    return OutputFiles("test", max_age=600, max_entries=3, min_age=60, prune_every=0)


def age(path: str, seconds: float) -> None:
    """Make the entry holding `path` look `seconds` old."""
    then = time.time() - seconds
    os.utime(Path(path).parent, (then, then))


def test_files_are_named_by_content_and_keep_their_name(outputs):
    first = outputs.write(b"seed 42", "anime-dcgan-seed42.png")
    assert Path(first).name == "anime-dcgan-seed42.png" and Path(first).read_bytes() == b"seed 42"
    assert outputs.write(b"seed 42", "anime-dcgan-seed42.png") == first  # same content, same file
    assert Path(outputs.write(b"seed 7", "anime-dcgan-seed42.png")).parent != Path(first).parent
    picture = outputs.png(Image.new("L", (4, 4), 255), "input.png")
    assert Image.open(picture).size == (4, 4)


def test_concurrent_writes_leave_whole_files_and_nothing_else(outputs):
    data = os.urandom(1 << 20)
    with ThreadPoolExecutor(8) as pool:  # an exception in a write is raised here
        paths = list(pool.map(lambda _: outputs.write(data, "same.bin"), range(40)))
    assert len(set(paths)) == 1 and Path(paths[0]).read_bytes() == data
    assert [p.name for p in outputs.folder.rglob("*") if p.is_file()] == ["same.bin"]  # no partial files


def test_old_entries_go_and_the_folder_stays_bounded(outputs):
    stale = outputs.write(b"an hour ago", "a.png")
    age(stale, 3600)
    recent = [outputs.write(str(i).encode(), "b.png") for i in range(4)]
    for i, path in enumerate(recent):
        age(path, 120 - i)  # older than min_age, the first the oldest
    fresh = outputs.write(b"now", "c.png")  # this write prunes
    assert not Path(stale).exists()  # past max_age
    left = {path for path in [*recent, fresh] if Path(path).exists()}
    assert left == {recent[2], recent[3], fresh}  # max_entries = 3: the newest stay


def test_entries_younger_than_min_age_stay_whatever_their_number(outputs):
    paths = [outputs.write(str(i).encode(), "x.png") for i in range(6)]
    assert all(Path(p).exists() for p in paths)  # Gradio may not have copied them yet


def folder_bytes(outputs) -> int:
    return sum(p.stat().st_size for p in outputs.folder.rglob("*") if p.is_file())


def test_the_folder_is_bounded_by_size_oldest_first_never_a_young_entry():
    """A 3 MiB bound and 1 MiB outputs (a faces ZIP is a tenth of that): pruning does not wait for
    `prune_every`, the oldest go first, a burst younger than `min_age` stays whole, and once it has
    aged the next write brings the folder back within the bound."""
    outputs = OutputFiles("test", max_entries=1000, max_bytes=3 * 2**20, min_age=5, prune_every=3600)
    first = [outputs.write(os.urandom(2**20), "grid.png") for _ in range(3)]
    for i, path in enumerate(first):
        age(path, 60 - i)  # the first the oldest
    fourth = outputs.write(os.urandom(2**20), "grid.png")
    assert [Path(p).exists() for p in first] == [False, True, True] and Path(fourth).exists()
    assert folder_bytes(outputs) == 3 * 2**20

    burst = [outputs.write(os.urandom(2**20), "faces.zip") for _ in range(4)]
    assert not any(Path(p).exists() for p in first)  # old enough to go
    assert all(Path(p).exists() for p in [fourth, *burst])  # younger than min_age: Gradio may not have its copy
    assert folder_bytes(outputs) == 5 * 2**20
    for path in [fourth, *burst]:
        age(path, 30)
    last = outputs.write(os.urandom(2**20), "faces.zip")
    assert Path(last).exists() and Path(burst[-1]).exists() and not Path(burst[0]).exists()
    assert folder_bytes(outputs) == 3 * 2**20


def test_the_folder_goes_when_the_process_exits(tmp_path):
    code = "from shared.serving import OutputFiles; o = OutputFiles('exit'); print(o.write(b'x', 'x.png'))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                            cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert not Path(result.stdout.strip()).parent.parent.exists()


RETAINED = """
import sys, threading, time
from shared import serving
if sys.argv[1] == "launch":  # what serving.launch does before the server starts its threads
    serving.TRIM_EVERY = 0.2
    serving._give_freed_memory_back()

def rss():
    return int(open("/proc/self/status").read().split("VmRSS:")[1].split()[0]) / 1024

def request(kept):  # a request's worth of allocations in a thread of its own, most freed at its end
    chunks = [bytearray(64 * 1024) for _ in range(512)]  # 32 MiB, in malloc's arenas (not mmap)
    kept.extend(chunks[::16])  # a few outlive it, scattered: an arena cannot shrink from its top

start, kept = rss(), []
threads = [threading.Thread(target=request, args=(kept,)) for _ in range(8)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
time.sleep(1)
print(rss() - start)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc, read from /proc")
def test_memory_freed_by_requests_in_many_threads_goes_back_to_the_system():
    """Eight threads, each allocating 32 MiB and freeing 15/16 of it: a plain process keeps most of
    the freed memory (in eight arenas); one that did what `launch` does gives it back."""
    def retained(mode: str) -> float:
        result = subprocess.run([sys.executable, "-c", RETAINED, mode], capture_output=True, text=True, check=True,
                                cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
        return float(result.stdout)

    plain, served = retained("plain"), retained("launch")
    assert plain > 80 and served < plain / 3, (plain, served)


def test_gradio_files_are_bounded_by_size_oldest_first_never_a_young_or_kept_one(tmp_path, monkeypatch):
    """A real Gradio server and client: five 1 MiB outputs (the first three 2 s older) and a
    1 MiB initial value Gradio keeps. A 3 MiB bound deletes the two oldest copies; a 1 MiB bound
    only the third, as the last two are younger than `min_age`; the kept file stays; a deleted
    output asked for again is copied and served again."""
    import gradio as gr
    from gradio_client import Client

    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path / "gradio"))  # Gradio's cache: read when a block is made
    outputs, made = OutputFiles("test"), {}
    kept = tmp_path / "kept.bin"
    kept.write_bytes(os.urandom(2**20))

    def output(name: str) -> str:
        made.setdefault(name, os.urandom(2**20))
        return outputs.write(made[name], f"{name}.bin")

    with gr.Blocks() as demo:
        gr.File(value=str(kept))
        name, result = gr.Textbox(), gr.File()
        name.submit(output, name, result, api_name="output")
    demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", quiet=True)
    try:
        api = Client(demo.local_url, verbose=False, analytics_enabled=False, download_files=str(tmp_path / "client"))

        def copies() -> dict[str, str]:  # output name -> Gradio's copy, from the sets Gradio keeps
            paths = {path for tracked in demo.temp_file_sets for path in tracked}
            return {name: path for name, data in made.items() for path in paths
                    if Path(path).is_file() and Path(path).read_bytes() == data}

        for name in "abc":
            api.predict(name, api_name="/output")
        time.sleep(2)
        for name in "de":
            api.predict(name, api_name="/output")
        before = copies()
        assert set(before) == set("abcde")
        made_at = {name: os.stat(path).st_ctime for name, path in before.items()}

        def min_age() -> float:  # c older than this, d younger: whatever the machine's speed, 2 s apart
            return time.time() - (made_at["c"] + made_at["d"]) / 2

        assert prune_gradio_files(demo, max_bytes=3 * 2**20, min_age=min_age()) == 2 * 2**20
        assert set(copies()) == set("cde") and not Path(before["a"]).exists()
        assert prune_gradio_files(demo, max_bytes=2**20, min_age=min_age()) == 2**20  # d and e are too young
        assert set(copies()) == set("de")
        assert not any(before[name] in tracked for name in "abc" for tracked in demo.temp_file_sets)
        kept_copies = [path for block in demo.blocks.values() for path in getattr(block, "keep_in_cache", ())]
        assert kept_copies and all(Path(path).read_bytes() == kept.read_bytes() for path in kept_copies)

        assert Path(api.predict("a", api_name="/output")).read_bytes() == made["a"]
        assert "a" in copies()
    finally:
        demo.close()
