"""Digits drawn the way people draw them, shared by every test and benchmark of the sketchpad.

- `STROKES`: pen strokes of a few digits, in relative coordinates;
- `drawing`, `png`, `huge_png_header`: those digits as images (as a browser or an API client
  sends them) and as file bytes, and a PNG too large to decode;
- `draw_on_canvas`, `draw_with_finger`: the same strokes drawn with the mouse, or with a finger
  on a touch screen, through Playwright; `ink`: how much of a canvas on the page is ink.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable

import numpy as np
from PIL import Image, ImageDraw

# Digits as pen strokes in relative coordinates (x, y in 0..1 of a square box), drawn the way
# people write them; every test and the browser test draw the same shapes.
STROKES: dict[str, list[list[tuple[float, float]]]] = {
    "1": [[(0.42, 0.22), (0.55, 0.1), (0.55, 0.9)]],
    "7": [[(0.2, 0.12), (0.8, 0.12), (0.42, 0.9)]],
    "4": [[(0.6, 0.1), (0.18, 0.62), (0.85, 0.62)], [(0.64, 0.35), (0.64, 0.92)]],
    "0": [[(0.5 + 0.3 * math.sin(t / 12 * math.tau), 0.5 - 0.4 * math.cos(t / 12 * math.tau))
           for t in range(13)]],
    "2": [[(0.22, 0.3), (0.3, 0.16), (0.5, 0.1), (0.7, 0.16), (0.76, 0.32), (0.68, 0.5), (0.22, 0.9),
           (0.82, 0.9)]],
}


def drawing(digit: str, size: tuple[int, int] = (560, 560), box: tuple[float, float, float, float] = (0.2, 0.15, 0.6, 0.7),
            width: int = 28, transparent: bool = False, ink=(0, 0, 0), paper=(255, 255, 255)) -> Image.Image:
    """An RGBA canvas with `digit` drawn in `box` (x, y, w, h as fractions of the canvas).

    transparent=False: what a browser sends (opaque paper, ink strokes); True: what an API client
    may send (alpha 0 around, the ink opaque).
    """
    image = Image.new("RGBA", size, (0, 0, 0, 0) if transparent else (*paper, 255))
    pen = ImageDraw.Draw(image)
    bx, by, bw, bh = box
    for stroke in STROKES[digit]:
        points = [((bx + x * bw) * size[0], (by + y * bh) * size[1]) for x, y in stroke]
        pen.line(points, fill=(*ink, 255), width=width, joint="curve")
        for x, y in (points[0], points[-1]):  # round caps, like a brush
            pen.ellipse((x - width / 2, y - width / 2, x + width / 2, y + width / 2), fill=(*ink, 255))
    return image


def png(image: Image.Image, format: str = "PNG", **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=format, **options)
    return buffer.getvalue()


def huge_png_header(width: int = 20_000, height: int = 20_000) -> bytes:
    """A PNG whose header declares width x height but holds one row: decoding it would need
    gigabytes, reading the header takes microseconds."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit greyscale
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(b"\x00" * (width + 1))) + chunk(b"IEND", b""))


# ---- the same digits drawn with the mouse -----------------------------------------------------


def draw_on_canvas(page, canvas, digit: str, box=(0.25, 0.15, 0.5, 0.7), step_px: float = 40,
                   strokes: slice = slice(None)) -> None:
    """Draw `digit` (or only `strokes` of it) with the mouse in `box` of the square centred in the
    `canvas` locator (a sketchpad's own element, `#elem_id`: its drawing square fills it).

    The pointer moves about `step_px` screen pixels at a time (the brush joins the points): each
    move waits for a browser that renders the canvas in software, about half a second on a busy
    2-core machine, so fewer moves keep the test fast.
    """
    at = _square(canvas.bounding_box(), box)
    for stroke in STROKES[digit][strokes]:
        page.mouse.move(*at(*stroke[0]))
        page.mouse.down()
        for x, y in _moves(stroke, at, step_px):
            page.mouse.move(x, y)
        page.mouse.up()


def _moves(stroke, at, step_px: float):
    """The page points a pointer passes through along `stroke`, about `step_px` apart (not its start)."""
    for start, end in zip(stroke, stroke[1:], strict=False):
        (x0, y0), (x1, y1) = at(*start), at(*end)
        steps = max(1, math.ceil(math.hypot(x1 - x0, y1 - y0) / step_px))
        for i in range(1, steps + 1):
            yield x0 + (x1 - x0) * i / steps, y0 + (y1 - y0) * i / steps


def _square(area: dict, box) -> Callable[[float, float], tuple[float, float]]:
    """Relative (x, y) of a digit in `box` -> page coordinates in the square centred in `area`."""
    side = min(area["width"], area["height"])
    left = area["x"] + (area["width"] - side) / 2
    top = area["y"] + (area["height"] - side) / 2
    bx, by, bw, bh = box
    return lambda x, y: (left + (bx + x * bw) * side, top + (by + y * bh) * side)


def draw_with_finger(page, canvas, stroke: list[tuple[float, float]], step_px: float = 40) -> None:
    """Draw one `stroke` (x, y in 0..1 of the square centred in the `canvas` locator) with a finger:
    real touch events (touchstart, touchmove, touchend) through the Chrome DevTools protocol, as a
    phone's screen sends them, in a context made with has_touch=True."""
    at = _square(canvas.bounding_box(), (0, 0, 1, 1))
    session = page.context.new_cdp_session(page)
    try:
        def touch(kind: str, x: float, y: float) -> None:
            points = [] if kind == "touchEnd" else [{"x": x, "y": y, "radiusX": 4, "radiusY": 4, "force": 1}]
            session.send("Input.dispatchTouchEvent", {"type": kind, "touchPoints": points})

        touch("touchStart", *at(*stroke[0]))
        for x, y in _moves(stroke, at, step_px):
            touch("touchMove", x, y)
        touch("touchEnd", 0, 0)
    finally:
        session.detach()


def ink(canvas, region=(0.15, 0.15, 0.85, 0.85)) -> float:
    """The fraction of `region` (left, top, right, bottom as fractions of the square centred in the
    `canvas` locator) that is ink (dark), read from the pixels the page shows.

    The default region leaves out a border where the editor's toolbars and label float over the
    drawing (their icons are dark too)."""
    pixels = np.asarray(Image.open(io.BytesIO(canvas.screenshot())).convert("L"))
    height, width = pixels.shape
    side = min(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    x0, y0, x1, y1 = (round(f * side) for f in region)
    return float((pixels[top + y0:top + y1, left + x0:left + x1] < 128).mean())


def wait_for_sketchpad(page, elem_id: str):
    """The locator of the sketchpad `#elem_id` once it is ready to draw on: its brush picked and its
    drawing square filling the component (see `shared.sketchpad`)."""
    canvas = page.locator(f"#{elem_id}")
    page.wait_for_function(
        """id => {
          const block = document.getElementById(id);
          const brush = block && block.querySelector('button[aria-label="Brush"]');
          const box = block && block.getBoundingClientRect();
          return brush && brush.classList.contains("highlight")
            && box.width > 0 && Math.abs(box.width - box.height) < 2;
        }""", arg=elem_id)
    return canvas
