"""Fixtures shared by the test suite: the dataset cache, running lessons, a real browser."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness.datasets import find_datasets  # noqa: F401  (tests import it from here)

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def datasets() -> Path:
    found = find_datasets()
    if found is None:
        pytest.skip("dataset cache not found (set ZTG_DATA_DIR or put ../shared/datasets beside the repo)")
    return found


def train(lesson: str, out_dir: Path, *args: str) -> dict:
    """Run a lesson in this process (smoke profile unless args say otherwise); return metrics.json."""
    from training.cli import main

    argv = [lesson, "--out-dir", str(out_dir), *args]
    if "--profile" not in args:
        argv += ["--profile", "smoke"]
    main(argv)
    return json.loads((out_dir / lesson / "metrics.json").read_text())


def run_training(*args: str, env: dict | None = None, timeout: int = 600, check: bool = True,
                 python: list[str] | None = None) -> subprocess.CompletedProcess:
    """Run `python -m training ...` as its own process, as a user would."""
    command = (python or [sys.executable, "-m", "training"]) + list(args)
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                            env={**os.environ, **(env or {})})
    if check and result.returncode != 0:
        raise AssertionError(f"{command} exited {result.returncode}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return result


@pytest.fixture(scope="module")
def browser():
    """Debian's Chromium driven by Playwright (its own browser download does not work offline)."""
    from harness.spaces import CHROMIUM, CHROMIUM_ARGS

    if not CHROMIUM.exists():
        pytest.skip(f"Debian's Chromium is not installed at {CHROMIUM} (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def phone(browser):
    """A page of the browser above on a phone (`harness.spaces.PHONE`: 390 x 844, touch screen)."""
    from harness.spaces import PHONE

    context = browser.new_context(**PHONE)
    page = context.new_page()
    page.set_default_timeout(60_000)
    yield page
    context.close()
