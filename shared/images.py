"""Safe image decoding for every Space: whatever a person or an API client sends becomes a
loaded 8-bit PIL image (mode L, LA, RGB or RGBA, upright), or an `ImageError` whose message
can be shown to that person as it is: no traceback, no file path.

    from shared.images import ImageError, open_image
    try:
        image = open_image(upload, size_hint=1024)
    except ImageError as error:
        raise gr.Error(str(error))

Accepted sources: bytes, a path, a file object, a PIL image, a numpy array, a `data:` URL,
a Gradio file dict (`{"path": ...}`) and a Gradio Sketchpad/ImageEditor value
(`{"background", "layers", "composite"}`). Every PIL mode is handled (1, L, LA, P, RGBA,
CMYK, I;16, I, F, ...); 16-bit and float images are scaled into 0..255, not clipped.

Sizes are checked from the file header, before any pixel is decoded: a 20000x20000 PNG is
refused in about a millisecond. Truncated files and non-images are refused with a message.
"""

from __future__ import annotations

import base64
import io
import os

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

# Largest image decoded: a 48-megapixel phone photo fits; a 20000x20000 image does not.
MAX_PIXELS = 50_000_000
# Formats a Space reads; every other PIL plugin (and its parser) stays out of reach.
# (The JPEG reader also opens the multi-picture JPEGs some cameras write, as format MPO.)
FORMATS = ("PNG", "JPEG", "WEBP", "GIF", "BMP", "TIFF", "PPM")
FORMAT_NAMES = "PNG, JPEG, WebP, GIF, BMP or TIFF"
ORIENTATION = 0x0112  # the EXIF tag of how a photo must be rotated to be viewed upright
# A data: URL longer than this is refused before base64-decoding it (bytes of text).
MAX_DATA_URL = 40_000_000


class ImageError(ValueError):
    """An image that cannot be used; `str(error)` is a friendly message meant for the user."""


def install_decoder_limits(max_pixels: int = MAX_PIXELS) -> None:
    """Make PIL itself refuse images far above `max_pixels`, also where other code decodes them.

    PIL warns above `Image.MAX_IMAGE_PIXELS` and raises above twice that when a file is opened;
    `open_image` checks `max_pixels` itself, this is the backstop for decoders we do not own
    (e.g. Gradio's component preprocessing).
    """
    Image.MAX_IMAGE_PIXELS = max_pixels


def open_image(source, *, max_pixels: int = MAX_PIXELS, size_hint: int | None = None) -> Image.Image:
    """Decode `source` into a loaded image in mode L, LA, RGB or RGBA, with EXIF orientation applied.

    size_hint: the caller only needs about this many pixels on the longest side; JPEGs are
    then decoded at a reduced scale (1/2, 1/4 or 1/8), which is much faster and smaller.
    Raises `ImageError` with a user-facing message for anything that is not a usable image.
    """
    if source is None:
        raise ImageError("No image was given.")
    if isinstance(source, dict):
        if {"background", "layers", "composite"} & source.keys():
            image = editor_image(source, max_pixels=max_pixels)
            if image is None:
                raise ImageError("No image was given.")
            return image
        return open_image(_file_dict_source(source), max_pixels=max_pixels, size_hint=size_hint)
    if isinstance(source, Image.Image):
        _check_size(source.size, max_pixels)
        return _to_8bit(_load(source))
    if isinstance(source, np.ndarray):
        return _from_array(source, max_pixels)
    if isinstance(source, str) and source.startswith("data:"):
        source = _decode_data_url(source)
    if isinstance(source, (bytes, bytearray, memoryview)):
        source = io.BytesIO(bytes(source))
    if isinstance(source, (str, os.PathLike)):
        try:
            with open(source, "rb") as file:
                return _decode(file, max_pixels, size_hint)
        except OSError:
            raise ImageError("The image file could not be read; please upload it again.") from None
    if hasattr(source, "read"):
        return _decode(source, max_pixels, size_hint)
    raise ImageError(f"Expected an image, got {type(source).__name__}.")


def editor_image(value: dict, *, max_pixels: int = MAX_PIXELS) -> Image.Image | None:
    """A Sketchpad/ImageEditor value as one image: its composite, else background and layers merged.

    Returns None when the value holds no image at all (a cleared editor).
    """
    composite = value.get("composite")
    if composite is not None:
        return open_image(composite, max_pixels=max_pixels)
    parts = [value.get("background"), *(value.get("layers") or [])]
    parts = [open_image(p, max_pixels=max_pixels).convert("RGBA") for p in parts if p is not None]
    if not parts:
        return None
    merged = parts[0]
    for layer in parts[1:]:
        if layer.size != merged.size:
            layer = layer.resize(merged.size)
        merged = Image.alpha_composite(merged, layer)
    return merged


def flatten(image: Image.Image, background=(255, 255, 255)) -> Image.Image:
    """An RGB image: transparency composited onto `background` (what a classifier of photos wants)."""
    if image.mode in ("LA", "RGBA"):
        base = Image.new("RGBA", image.size, (*background, 255))
        return Image.alpha_composite(base, image.convert("RGBA")).convert("RGB")
    return image.convert("RGB")


def check_header(source, *, max_pixels: int = MAX_PIXELS) -> tuple[int, int]:
    """(width, height) read from the header of a path or bytes, after the same checks as `open_image`.

    Nothing is decoded; use it to refuse a file before handing it to code that decodes fully.
    """
    if isinstance(source, (bytes, bytearray, memoryview)):
        source = io.BytesIO(bytes(source))
    try:
        file = open(source, "rb") if isinstance(source, (str, os.PathLike)) else source  # noqa: SIM115
    except OSError:
        raise ImageError("The image file could not be read; please upload it again.") from None
    try:
        with _open(file, max_pixels) as image:
            return image.size
    finally:
        if file is not source:
            file.close()


# ---- internals ---------------------------------------------------------------------------


def _check_size(size: tuple[int, int], max_pixels: int) -> None:
    width, height = size
    if width < 1 or height < 1:
        raise ImageError("This image is empty (0 pixels).")
    if width * height > max_pixels:
        raise ImageError(
            f"This image is too large ({width} x {height} pixels). Please send one of at most "
            f"{max_pixels / 1e6:.0f} megapixels, for example a photo resized to 2000 pixels wide.")


def _open(file, max_pixels: int) -> Image.Image:
    """Parse the header only and check the size: no pixel data is decoded here."""
    Image.init()  # register every format plugin once, so that `formats` can name them
    try:
        image = Image.open(file, formats=FORMATS)
    except Image.DecompressionBombError:
        raise ImageError(
            f"This image is too large. Please send one of at most {max_pixels / 1e6:.0f} "
            "megapixels.") from None
    except UnidentifiedImageError:
        raise ImageError(f"This file is not an image this app can read; please send a {FORMAT_NAMES} "
                         "file.") from None
    except Exception:  # noqa: BLE001  (any parser failure on a damaged header)
        raise ImageError("This image file is damaged and cannot be read.") from None
    try:
        _check_size(image.size, max_pixels)
    except ImageError:
        image.close()
        raise
    return image


def _decode(file, max_pixels: int, size_hint: int | None) -> Image.Image:
    image = _open(file, max_pixels)
    if size_hint and image.format in ("JPEG", "MPO"):
        # JPEG can decode at 1/2, 1/4 or 1/8 scale directly; draft picks the smallest >= the hint.
        image.draft(image.mode, (size_hint, size_hint))
    return _to_8bit(_load(image))


def _load(image: Image.Image) -> Image.Image:
    """Decode the pixels (first frame of an animation) and apply the EXIF orientation."""
    try:
        image.load()
    except Image.DecompressionBombError:
        raise ImageError("This image is too large.") from None
    except Exception:  # noqa: BLE001  (OSError "truncated", SyntaxError from broken PNG chunks, ...)
        raise ImageError("This image file is damaged or incomplete (truncated); please send it "
                         "again.") from None
    try:
        if image.getexif().get(ORIENTATION, 1) != 1:
            return ImageOps.exif_transpose(image)
    except Exception:  # noqa: BLE001  (a malformed EXIF block must not lose the image)
        pass
    return image


def _to_8bit(image: Image.Image) -> Image.Image:
    """Any PIL mode -> L, LA, RGB or RGBA with 8 bits per channel."""
    mode = image.mode
    if mode in ("L", "LA", "RGB", "RGBA"):
        return image
    if mode == "1":
        return image.convert("L")
    if mode in ("P", "PA"):
        return image.convert("RGBA" if ("transparency" in image.info or mode == "PA") else "RGB")
    if mode == "La":
        return image.convert("LA")
    if mode in ("RGBa", "RGBX"):
        return image.convert("RGBA" if mode == "RGBa" else "RGB")
    if mode.startswith("I;16"):
        return Image.fromarray(_scale_to_uint8(np.asarray(image), full_scale=65535.0))
    if mode in ("I", "F"):
        return Image.fromarray(_scale_to_uint8(np.asarray(image)))
    return image.convert("RGB")  # CMYK, YCbCr, LAB, HSV


def _scale_to_uint8(values: np.ndarray, full_scale: float | None = None) -> np.ndarray:
    """Integer or float pixels -> uint8, dividing by the range the values evidently use.

    Floats within [0, 1] are taken as 0..1; otherwise values within 0..255 or 0..65535 use that
    range, and anything else (negative, huge) is stretched from its minimum to its maximum.
    """
    is_float = values.dtype.kind == "f"
    values = np.nan_to_num(values.astype(np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    low, high = float(values.min()), float(values.max())
    if full_scale is None:
        if is_float and low >= 0 and high <= 1.0:
            full_scale = 1.0
        elif low >= 0 and high <= 255:
            full_scale = 255.0
        elif low >= 0 and high <= 65535:
            full_scale = 65535.0
        else:
            values, full_scale = values - low, max(high - low, 1e-12)
    return np.clip(np.rint(values * (255.0 / full_scale)), 0, 255).astype(np.uint8)


def _from_array(array: np.ndarray, max_pixels: int) -> Image.Image:
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (2, 3, 4)):
        raise ImageError(f"Expected an image array of shape (H, W) or (H, W, 2|3|4), got {array.shape}.")
    _check_size((array.shape[1], array.shape[0]), max_pixels)
    if array.dtype == np.bool_:
        array = array.astype(np.uint8) * 255
    elif array.dtype != np.uint8:
        if array.dtype.kind not in "uif":
            raise ImageError(f"Unsupported image array type {array.dtype}.")
        array = _scale_to_uint8(array)
    return Image.fromarray(np.ascontiguousarray(array))  # uint8: L, LA, RGB or RGBA by shape


def _file_dict_source(value: dict):
    """A Gradio FileData-like dict ({"path": ..., "url": ...}) -> a path or a data: URL."""
    path, url = value.get("path"), value.get("url")
    if path:
        return path
    if isinstance(url, str) and url.startswith("data:"):
        return url
    raise ImageError("No image was given.")


def _decode_data_url(url: str) -> bytes:
    if len(url) > MAX_DATA_URL:
        raise ImageError("This image is too large.")
    header, _, data = url.partition(",")
    if not header.endswith(";base64"):
        raise ImageError("Expected a base64 data: URL holding an image.")
    try:
        return base64.b64decode(data, validate=False)
    except ValueError:
        raise ImageError("This data: URL is not valid base64.") from None


def describe_error(error: BaseException) -> str:
    """A user-facing message for any exception raised while reading an image."""
    if isinstance(error, ImageError):
        return str(error)
    return "This image could not be read; please send a different file."


__all__ = ["FORMATS", "MAX_PIXELS", "ImageError", "check_header", "describe_error", "editor_image",
           "flatten", "install_decoder_limits", "open_image"]
