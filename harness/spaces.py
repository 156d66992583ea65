"""The Spaces run for real, as servers, for the tests and the benchmarks (see `harness`).

- `serve(app)`, `staged_space(space)`: start `python spaces/<app>/app.py` (or a staged copy) on a
  free port as its own process, wait until it answers, stop it afterwards (its log is kept for
  failure messages);
- `random_weights` / `trained_cnn`: model weights for an app, through its `ZTG_WEIGHTS_*` variables;
- `import_app`, `client`, `editor_value`: an app imported in-process, a gradio_client for a served
  one, and what such a client sends to a Sketchpad;
- `CHROMIUM`, `CHROMIUM_ARGS`, `HeldRequests`, `stays_absent`: Playwright driving Debian's Chromium;
  `PHONE`, `assert_fits_the_width`: the same page on a phone's touch screen, without sideways scrolling.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "artifacts"
CHROMIUM = Path("/usr/bin/chromium")
# A 390 x 844 CSS-pixel phone with a touch screen: Playwright's new_context(**PHONE).
PHONE = {"viewport": {"width": 390, "height": 844}, "has_touch": True, "is_mobile": True}
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


# ---- serving an app ---------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class RunningApp:
    url: str                    # e.g. http://127.0.0.1:40123/
    process: subprocess.Popen
    log_path: Path
    startup_seconds: float      # from process start to the first successful API answer

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def alive(self) -> bool:
        return self.process.poll() is None

    def rss_mb(self) -> tuple[float, float]:
        """(current, peak) resident memory of the server process, in MiB (Linux)."""
        fields = {}
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            fields[key] = value
        return (int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024)


def worker_lives(log: str) -> list[tuple[int, float, float | None]]:
    """(pid, start, exit) of every playground worker process, from the server's log, in start order."""
    from training.worker import LOG_LINE

    lives: dict[int, list] = {}
    for pid, _, what, at in LOG_LINE.findall(log):
        life = lives.setdefault(int(pid), [int(pid), None, None])
        life[1 if what == "started" else 2] = float(at)
    return [tuple(life) for life in sorted(lives.values(), key=lambda life: life[1])]


def app_env(extra: dict | None = None, *, inherit: bool = True) -> dict:
    """Environment for an app process: offline Hub, no analytics, unbuffered output."""
    env = dict(os.environ) if inherit else {k: os.environ[k] for k in ("PATH", "HOME", "LANG") if k in os.environ}
    env.update(HF_HUB_OFFLINE="1", GRADIO_ANALYTICS_ENABLED="False", PYTHONUNBUFFERED="1",
               GRADIO_SERVER_NAME="127.0.0.1")
    env.update(extra or {})
    return env


@contextlib.contextmanager
def serve(app: Path, env: dict | None = None, *, cwd: Path | None = None, python: str = sys.executable,
          timeout: float = 120, inherit_env: bool = True):
    """Run `python app.py` on a free port; yield a RunningApp once its API answers; stop it after."""
    port = free_port()
    log_path = Path(tempfile.mkstemp(prefix=f"{Path(app).parent.name}-", suffix=".log")[1])
    environment = app_env({**(env or {}), "GRADIO_SERVER_PORT": str(port)}, inherit=inherit_env)
    start = time.perf_counter()
    with open(log_path, "wb") as log:
        process = subprocess.Popen([python, str(app)], cwd=cwd or Path(app).parent, env=environment,
                                   stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}/"
    try:
        wait_until_ready(url, process, log_path, timeout)
        yield RunningApp(url, process, log_path, time.perf_counter() - start)
    finally:
        stop(process)


def wait_until_ready(url: str, process: subprocess.Popen, log_path: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"app exited with {process.returncode} before serving:\n"
                               f"{log_path.read_text(errors='replace')[-4000:]}")
        try:
            with urllib.request.urlopen(url + "gradio_api/info", timeout=2) as response:
                if response.status == 200:
                    json.load(response)
                    return
        except (OSError, ValueError):
            pass
        time.sleep(0.1)
    raise TimeoutError(f"app not ready after {timeout} s:\n{log_path.read_text(errors='replace')[-4000:]}")


def stop(process: subprocess.Popen) -> None:
    """SIGTERM the app's process group (it may have children), then SIGKILL if it lingers."""
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(10)


def isolated_python(folder: Path) -> str:
    """A Python that sees the project's dependencies but not the project itself.

    A venv (no pip) whose only link to the project venv is a .pth line naming its site-packages:
    .pth files inside that folder (the editable install of this repository) are not processed,
    so `import shared` works only from the app's own folder (a script's folder leads its import path).
    """
    import sysconfig

    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(folder)], check=True)
    site = folder / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"
    (site / "project_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return str(folder / "bin" / "python")


@contextlib.contextmanager
def staged_space(space: str, env: dict, tmp_path: Path, weights_org: str | None = None):
    """Stage spaces/<space> as a deploy would (app + a copy of shared/) and serve it from another
    folder, with a Python that cannot import this checkout and nothing inherited from our environment."""
    from spaces import (
        deploy,  # spaces/deploy.py, with the repository root on the import path (pytest's)
    )

    staged = deploy.stage(space, tmp_path / "space", weights_org)
    python = isolated_python(tmp_path / "venv")
    # The environment the server gets below: nothing inherited (a PYTHONPATH would reach shared/).
    check = subprocess.run([python, "-c", "import shared"], cwd=tmp_path, capture_output=True,
                           env=app_env(inherit=False))
    assert check.returncode != 0, "the isolated Python must not see the project's shared/ package"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    with serve(staged / "app.py", env, cwd=elsewhere, python=python, inherit_env=False) as running:
        yield running
        assert str(ROOT) not in running.log()


# ---- weights ----------------------------------------------------------------------------------


def random_weights(folder: Path, names: list[str]) -> dict:
    """Untrained weights for each model in `folder/<name>/`; returns the ZTG_WEIGHTS_* variables."""
    from shared.models import build_model
    from shared.weights import env_var

    env = {}
    for name in names:
        target = Path(folder) / name
        if not (target / "model.safetensors").is_file():
            build_model(name).save_pretrained(target)
        env[env_var(name)] = str(target)
    return env


_TRAINED: dict[str, Path] = {}


def trained_cnn(datasets: Path | None, epochs: int | None = 3) -> Path:
    """A trained mnist-cnn checkpoint folder: $ZTG_TEST_CNN, else checkpoints/mnist-cnn/ when
    complete (`make train-all`), else trained once.

    Training (`python -m training mnist-cnn --profile cpu --epochs=3`: the cpu profile shortened;
    enough for the sketch-accuracy target) goes to artifacts/test-checkpoints/, which later runs
    reuse. Raises LookupError when there is neither a checkpoint nor a dataset.
    """
    if "mnist-cnn" in _TRAINED:
        return _TRAINED["mnist-cnn"]
    if os.environ.get("ZTG_TEST_CNN"):  # a checkpoint folder to use as it is
        _TRAINED["mnist-cnn"] = Path(os.environ["ZTG_TEST_CNN"])
        return _TRAINED["mnist-cnn"]
    for folder in (ROOT / "checkpoints" / "mnist-cnn", ARTIFACTS / "test-checkpoints" / "mnist-cnn"):
        if _complete(folder):
            _TRAINED["mnist-cnn"] = folder
            return folder
    if datasets is None:
        raise LookupError("no trained mnist-cnn (checkpoints/mnist-cnn) and no dataset cache to train one")
    out = ARTIFACTS / "test-checkpoints"
    command = [sys.executable, "-m", "training", "mnist-cnn", "--profile", "cpu", "--data-dir", str(datasets),
               "--out-dir", str(out)] + ([f"--epochs={epochs}"] if epochs else [])
    start = time.perf_counter()
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=1800)
    if result.returncode != 0 or not _complete(out / "mnist-cnn"):
        raise RuntimeError(f"training mnist-cnn failed:\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}")
    print(f"[harness] trained mnist-cnn in {time.perf_counter() - start:.0f} s", file=sys.stderr)
    _TRAINED["mnist-cnn"] = out / "mnist-cnn"
    return _TRAINED["mnist-cnn"]


def _complete(folder: Path) -> bool:
    try:
        return json.loads((folder / "metrics.json").read_text()).get("complete", False) and \
            (folder / "model.safetensors").is_file()
    except (OSError, ValueError):
        return False


# ---- a browser --------------------------------------------------------------------------------


class HeldRequests:
    """Holds the page's requests to `url` (a glob) that `match`, as a very slow connection would,
    until `release()`; other requests go through."""

    def __init__(self, page, url: str, match=lambda request: True):
        self.page, self.url, self.match, self.routes, self.holding = page, url, match, [], True
        page.route(url, self._handle)

    def _handle(self, route) -> None:
        if self.holding and self.match(route.request):
            self.routes.append(route)
        else:
            route.continue_()

    def release(self) -> None:
        self.holding = False
        for route in self.routes:
            route.continue_()
        self.page.unroute(self.url, self._handle)


def assert_fits_the_width(page, *selectors: str) -> None:
    """The page scrolls only up and down, and every element of `selectors` lies within the
    viewport's width: reachable without scrolling sideways."""
    for selector in selectors:
        page.locator(selector).wait_for()
    widths = page.evaluate("""selectors => ({
      page: document.scrollingElement.scrollWidth, viewport: window.innerWidth,
      elements: selectors.map((s) => { const r = document.querySelector(s).getBoundingClientRect();
                                       return [s, r.left, r.right, r.width]; })})""", list(selectors))
    assert widths["page"] <= widths["viewport"], f"the page scrolls sideways: {widths}"
    for selector, left, right, width in widths["elements"]:
        assert width > 0 and left >= 0 and right <= widths["viewport"], f"{selector} is off the screen: {widths}"


def stays_absent(page, selector: str, seconds: float) -> bool:
    """Whether nothing matches `selector` on the page for `seconds` (a late answer would add it)."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    try:
        page.wait_for_selector(selector, state="attached", timeout=seconds * 1000)
    except PlaywrightTimeout:
        return True
    return False


# ---- importing and calling an app -------------------------------------------------------------


def import_app(app: Path, env: dict):
    """Import spaces/<name>/app.py as a module (it loads its models on import) with `env` set."""
    import importlib.util

    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        spec = importlib.util.spec_from_file_location(f"space_{Path(app).parent.name}", app)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    return module


def client(url: str, download_dir: Path | None = None, headers: dict | None = None):
    """A gradio_client Client for a local app: quiet, no analytics, outputs downloaded to a tmp dir;
    `headers` go with every request (say the session cookie of a visitor who signed in)."""
    from gradio_client import Client

    return Client(url, verbose=False, analytics_enabled=False, headers=headers,
                  download_files=str(download_dir or tempfile.mkdtemp(prefix="client-")))


def editor_value(path) -> dict:
    """What a client sends to a Sketchpad: the canvas file as the composite."""
    from gradio_client import handle_file

    return {"background": None, "layers": [], "composite": handle_file(str(path))}
