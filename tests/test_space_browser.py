"""The digit sketchpad in a real browser: Playwright drives Debian's Chromium, draws with the mouse
(without touching the Brush button first) and reads the prediction from the page.

Screenshots go to artifacts/ (kept by CI); with ZTG_UPDATE_DOCS=1, or when it is missing,
docs/digits-space.png (the README's picture) is rewritten too.
"""

from __future__ import annotations

import os
import re
import shutil

import pytest
from conftest import find_datasets
from spaces_util import (
    ARTIFACTS,
    ROOT,
    draw_on_canvas,
    drawing,
    random_weights,
    serve,
    trained_cnn,
)

pytestmark = pytest.mark.browser

APP = ROOT / "spaces" / "digits" / "app.py"
DOCS_SCREENSHOT = ROOT / "docs" / "digits-space.png"
TIMEOUT_MS = 60_000  # a busy 2-core machine runs browser, server and model together


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    env = random_weights(tmp_path_factory.mktemp("weights"), ["mnist-mlp", "mnist-logistic"])
    try:
        env["ZTG_WEIGHTS_MNIST_CNN"] = str(trained_cnn(find_datasets()))
    except LookupError:
        pytest.skip("needs a trained mnist-cnn (checkpoints/mnist-cnn or the dataset cache to train one)")
    with serve(APP, env) as running:
        yield running


@pytest.fixture
def page(server, browser):
    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(server.url)
    page.locator("#digit-canvas canvas").first.wait_for()
    yield page
    page.close()


def prediction(page, previous: str | None = None) -> str:
    """The predicted digit shown on the page, once it shows one (different from `previous`)."""
    value = page.locator('#prediction [data-testid="label-output-value"]')
    page.wait_for_function(
        """([el, previous]) => { const t = el && el.textContent.trim(); return /^[0-9]$/.test(t) && t !== previous; }""",
        arg=[value.element_handle(), previous], timeout=TIMEOUT_MS)
    return value.inner_text().strip()


def message(page) -> str:
    return page.locator("#message").inner_text()


def screenshot(page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / name), full_page=True)


def test_draw_a_digit_without_selecting_the_brush(page):
    # The app selects the brush itself: Gradio 6.31's sketchpad starts with no tool selected.
    brush = page.locator('#digit-canvas button[aria-label="Brush"]')
    page.wait_for_function("el => el.classList.contains('highlight')", arg=brush.element_handle())
    draw_on_canvas(page, page.locator("#digit-canvas canvas").first, "7")
    assert prediction(page) == "7"
    assert "mnist-cnn" in message(page)
    assert page.locator("#model-input img").count() == 1  # the 28x28 input, enlarged
    screenshot(page, "digits-browser-7.png")
    if os.environ.get("ZTG_UPDATE_DOCS") or not DOCS_SCREENSHOT.exists():
        DOCS_SCREENSHOT.parent.mkdir(exist_ok=True)
        shutil.copyfile(ARTIFACTS / "digits-browser-7.png", DOCS_SCREENSHOT)


def test_prediction_follows_each_stroke_and_clear(page):
    canvas = page.locator("#digit-canvas canvas").first
    draw_on_canvas(page, canvas, "4", strokes=slice(0, 1))  # the first stroke of a 4: some guess
    first_guess = prediction(page)
    draw_on_canvas(page, canvas, "4", strokes=slice(1, None))  # the second stroke: now a 4
    assert prediction(page, previous=first_guess if first_guess != "4" else None) == "4"
    page.locator("#clear-button").click()
    page.wait_for_function("el => el.textContent.includes('Draw a digit')",
                           arg=page.locator("#message").element_handle())
    # Still no click on the brush: after clearing, the next drawing works at once.
    draw_on_canvas(page, canvas, "0")
    assert prediction(page) == "0"
    screenshot(page, "digits-browser-cleared-0.png")


def test_model_picker(page):
    draw_on_canvas(page, page.locator("#digit-canvas canvas").first, "1", box=(0.3, 0.15, 0.4, 0.7))
    assert prediction(page) == "1"
    page.get_by_label("mnist-logistic").check()
    page.wait_for_function("el => el.textContent.includes('mnist-logistic')",
                           arg=page.locator("#message").element_handle())
    assert re.fullmatch(r"\d", page.locator('#prediction [data-testid="label-output-value"]').inner_text().strip())


def test_photo_upload(page, tmp_path):
    photo = drawing("7", size=(800, 600), box=(0.3, 0.15, 0.4, 0.7), width=24).convert("RGB")
    path = tmp_path / "digit-on-paper.jpg"
    photo.save(path, quality=85)
    page.get_by_role("tab", name="Photo").click()
    page.locator("#digit-photo input[type=file]").set_input_files(str(path))
    assert prediction(page) == "7"
    screenshot(page, "digits-browser-photo.png")
