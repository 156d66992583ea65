"""Digits drawn the way people draw them, shared by every test and benchmark of the sketchpad.

- `STROKES`: pen strokes of a few digits, in relative coordinates;
- `drawing`, `png`, `huge_png_header`: those digits as images (as a browser or an API client
  sends them) and as file bytes, and a PNG too large to decode;
- `draw_on_canvas`: the same strokes drawn with the mouse, through Playwright.
"""

from __future__ import annotations

import io
import math

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
    """Draw `digit` (or only `strokes` of it) with the mouse on a Playwright `canvas` locator.

    The pointer moves about `step_px` screen pixels at a time (the brush joins the points): each
    move waits for a browser that renders the canvas in software, about half a second on a busy
    2-core machine, so fewer moves keep the test fast.
    """
    area = canvas.bounding_box()
    side = min(area["width"], area["height"])
    left = area["x"] + (area["width"] - side) / 2
    top = area["y"] + (area["height"] - side) / 2
    bx, by, bw, bh = box

    def at(x, y):
        return left + (bx + x * bw) * side, top + (by + y * bh) * side

    for stroke in STROKES[digit][strokes]:
        page.mouse.move(*at(*stroke[0]))
        page.mouse.down()
        for start, end in zip(stroke, stroke[1:], strict=False):
            (x0, y0), (x1, y1) = at(*start), at(*end)
            steps = max(1, math.ceil(math.hypot(x1 - x0, y1 - y0) / step_px))
            for i in range(1, steps + 1):
                page.mouse.move(x0 + (x1 - x0) * i / steps, y0 + (y1 - y0) * i / steps)
        page.mouse.up()
