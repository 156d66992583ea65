"""`shared.images`: every source, mode and format decodes; bad files get a message, never a trace."""

from __future__ import annotations

import base64
import io
import time

import numpy as np
import pytest
from PIL import Image

from harness.drawings import drawing, huge_png_header, png
from shared.images import (
    MAX_PIXELS,
    ImageError,
    check_header,
    describe_error,
    editor_image,
    flatten,
    install_decoder_limits,
    open_image,
)

EIGHT_BIT = ("L", "LA", "RGB", "RGBA")


def gradient(mode: str, size=(48, 32)) -> Image.Image:
    """A left-to-right ramp (dark to light) in `mode`, its last column at the mode's full scale."""
    ramp = np.tile(np.linspace(0, 1, size[0]), (size[1], 1))
    if mode == "I;16":
        return Image.fromarray((ramp * 65535).astype(np.uint16))  # 16-bit, as a 16-bit PNG opens
    if mode == "I":
        return Image.fromarray((ramp * 65535).astype(np.int32))
    if mode == "F":
        return Image.fromarray(ramp.astype(np.float32))
    return Image.fromarray((ramp * 255).astype(np.uint8)).convert(mode)


@pytest.mark.parametrize("mode", ["1", "L", "LA", "P", "RGB", "RGBA", "CMYK", "I;16", "I", "F", "YCbCr"])
def test_every_mode_becomes_8_bit_with_the_same_picture(mode):
    image = gradient(mode)
    decoded = open_image(image)
    assert decoded.mode in EIGHT_BIT and decoded.size == (48, 32)
    grey = np.asarray(decoded.convert("L"), dtype=int)
    if mode == "1":  # dithered: only the average brightness survives
        assert grey[:, :12].mean() < 100 < grey[:, -12:].mean()
    else:  # dark on the left, full scale on the right: 16-bit and float scaled, not clipped
        assert grey[:, 0].max() <= 10 and grey[:, -1].min() >= 240
        assert 100 < grey[:, 24].mean() < 160


@pytest.mark.parametrize(("mode", "format"), [
    ("1", "PNG"), ("L", "PNG"), ("LA", "PNG"), ("P", "PNG"), ("RGBA", "PNG"), ("I;16", "PNG"),
    ("RGB", "JPEG"), ("CMYK", "JPEG"), ("L", "WEBP"), ("RGBA", "WEBP"), ("P", "GIF"), ("RGB", "BMP"),
    ("CMYK", "TIFF"), ("I", "TIFF"), ("F", "TIFF"), ("RGB", "PPM"),
])
def test_every_format_from_bytes_path_and_file(mode, format, tmp_path):
    data = png(gradient(mode), format)
    path = tmp_path / f"image.{format.lower()}"
    path.write_bytes(data)
    for source in (data, path, str(path), io.BytesIO(data), bytearray(data), memoryview(data)):
        decoded = open_image(source)
        assert decoded.mode in EIGHT_BIT and decoded.size == (48, 32)


def test_palette_transparency_is_kept():
    image = Image.new("P", (8, 8), 0)
    image.putpalette([255, 255, 255, 0, 0, 0])
    image.info["transparency"] = 0
    assert open_image(png(image)).mode == "RGBA"


def test_exif_orientation_is_applied():
    """A phone photo stored sideways with orientation 6 (rotate 90 degrees clockwise to view)."""
    stored = Image.new("RGB", (60, 40), "white")
    stored.paste((0, 0, 0), (0, 0, 10, 10))  # a mark in the stored top-left corner
    exif = Image.Exif()
    exif[0x0112] = 6
    upright = open_image(png(stored, "JPEG", exif=exif, quality=95))
    assert upright.size == (40, 60)
    grey = np.asarray(upright.convert("L"))
    assert grey[:10, -10:].mean() < 60 and grey[-10:, :10].mean() > 200  # the mark is now top-right


def test_huge_image_is_refused_from_its_header_fast():
    data = huge_png_header(20_000, 20_000)
    start = time.perf_counter()
    with pytest.raises(ImageError, match="too large") as error:
        open_image(data)
    assert time.perf_counter() - start < 0.5
    assert "megapixels" in str(error.value)
    with pytest.raises(ImageError, match="too large"):
        check_header(data)


def test_pil_decompression_bomb_limit_is_reported_as_too_large():
    """Above twice PIL's own limit, PIL refuses inside Image.open; the message is the same."""
    before = Image.MAX_IMAGE_PIXELS
    try:
        install_decoder_limits(1_000_000)
        assert Image.MAX_IMAGE_PIXELS == 1_000_000
        with pytest.raises(ImageError, match="too large"):
            open_image(huge_png_header(2000, 2000), max_pixels=10**9)
    finally:
        Image.MAX_IMAGE_PIXELS = before


def test_size_limit_is_a_parameter():
    assert open_image(png(Image.new("L", (100, 100))), max_pixels=10_000).size == (100, 100)
    with pytest.raises(ImageError, match=r"too large \(101 x 100 pixels\)"):
        open_image(png(Image.new("L", (101, 100))), max_pixels=10_000)
    with pytest.raises(ImageError, match="too large"):
        open_image(np.zeros((10, 2000), np.uint8), max_pixels=10_000)
    assert MAX_PIXELS >= 48_000_000  # a 48-megapixel phone photo is accepted


@pytest.mark.parametrize("format", ["PNG", "JPEG", "WEBP", "GIF", "TIFF"])
def test_truncated_files_are_refused(format):
    data = png(drawing("7", size=(300, 300)).convert("RGB"), format)
    with pytest.raises(ImageError, match="damaged|truncated|not an image"):
        open_image(data[: len(data) // 2])


@pytest.mark.parametrize("data", [
    b"", b"hello world", b"%PDF-1.7\n1 0 obj\n", b'<svg xmlns="http://www.w3.org/2000/svg"></svg>',
    b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, b"GIF89a", bytes(range(256)) * 10,
])
def test_non_images_are_refused_with_a_message(data):
    with pytest.raises(ImageError) as error:
        open_image(data)
    assert "not an image" in str(error.value) or "damaged" in str(error.value)


def test_messages_never_show_paths(tmp_path):
    secret = tmp_path / "private-folder"
    secret.mkdir()
    (secret / "notes.png").write_text("not an image")
    for source in (secret / "notes.png", secret / "missing.png", secret):
        with pytest.raises(ImageError) as error:
            open_image(source)
        assert "private-folder" not in str(error.value) and "Traceback" not in str(error.value)


def test_arrays_of_every_dtype_and_layout():
    assert open_image(np.zeros((5, 6), bool)).mode == "L"
    assert open_image(np.zeros((5, 6, 1), np.uint8)).mode == "L"
    assert open_image(np.zeros((5, 6, 2), np.uint8)).mode == "LA"
    assert open_image(np.zeros((5, 6, 3), np.float32)).mode == "RGB"
    assert np.asarray(open_image(np.full((5, 6), 65535, np.uint16))).min() == 255
    assert np.asarray(open_image(np.full((5, 6), 0.5, np.float64))).max() == 128
    assert np.asarray(open_image(np.array([[np.nan, 1.0]]))).tolist() == [[0, 255]]
    with pytest.raises(ImageError):
        open_image(np.zeros((5, 6, 5), np.uint8))
    with pytest.raises(ImageError):
        open_image(np.zeros((5,), np.uint8))
    with pytest.raises(ImageError):
        open_image(np.zeros((0, 6), np.uint8))


def test_gradio_values(tmp_path):
    path = tmp_path / "d.png"
    path.write_bytes(png(drawing("1", transparent=True)))
    assert open_image({"path": str(path), "meta": {"_type": "gradio.FileData"}}).size == (560, 560)
    url = "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode()
    assert open_image(url).mode == "RGBA"
    assert open_image({"path": None, "url": url}).mode == "RGBA"
    # A Sketchpad value: the composite when present, else background and layers merged.
    assert editor_image({"background": None, "layers": [], "composite": str(path)}).size == (560, 560)
    merged = editor_image({"background": Image.new("RGB", (560, 560), "white"), "layers": [str(path)],
                           "composite": None})
    assert merged.mode == "RGBA" and np.asarray(merged.convert("L")).min() == 0
    assert editor_image({"background": None, "layers": [], "composite": None}) is None
    with pytest.raises(ImageError, match="No image"):
        open_image({"background": None, "layers": [], "composite": None})
    with pytest.raises(ImageError, match="No image"):
        open_image(None)
    with pytest.raises(ImageError):
        open_image(42)


def test_flatten_composites_on_white():
    rgb = flatten(open_image(drawing("1", transparent=True)))
    assert rgb.mode == "RGB"
    assert np.asarray(rgb)[0, 0].tolist() == [255, 255, 255]


def test_describe_error_hides_details():
    assert describe_error(ImageError("This image is too large.")) == "This image is too large."
    assert "/secret" not in describe_error(OSError("cannot open /secret/file"))
