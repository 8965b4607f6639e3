"""Safe image decoding shared by every entry point: files, bytes, PIL images and arrays become
HxWx3 uint8 RGB, EXIF orientation applied, with a clear error naming the input otherwise."""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

# Refuse decompression bombs with a clear message instead of PIL's warning-then-error dance.
MAX_IMAGE_PIXELS = 80_000_000
Image.MAX_IMAGE_PIXELS = None  # we check ourselves, before decoding pixels

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif", ".jfif", ".ppm", ".pgm"}
VIDEO_SUFFIXES = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg"}


class ImageLoadError(ValueError):
    """An input could not be turned into an image; the message names the input and the reason."""

    def __init__(self, source, reason: str):
        self.source = source
        self.reason = reason
        super().__init__(f"cannot read image {describe_source(source)}: {reason}")


def describe_source(source) -> str:
    if isinstance(source, (str, os.PathLike)):
        return repr(str(source))
    if isinstance(source, np.ndarray):
        return f"<array shape={source.shape} dtype={source.dtype}>"
    if isinstance(source, Image.Image):
        return f"<PIL image {source.mode} {source.size[0]}x{source.size[1]}>"
    if isinstance(source, (bytes, bytearray)):
        return f"<{len(source)} bytes>"
    return f"<{type(source).__name__}>"


def pil_to_rgb_array(img: Image.Image) -> np.ndarray:
    """Any PIL mode (L, P, CMYK, RGBA, I;16, I, F, LA...) -> HxWx3 uint8 RGB."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(img, dtype=np.float64)
        scale = 65535.0 if arr.max(initial=0) > 255 else 255.0
        arr = np.clip(arr / scale * 255.0, 0, 255).astype(np.uint8)
        return np.ascontiguousarray(np.repeat(arr[:, :, None], 3, axis=2))
    if img.mode == "F":
        arr = np.asarray(img, dtype=np.float64)
        hi = arr.max(initial=0)
        arr = np.clip(arr / (hi if hi > 1 else 1.0) * 255.0, 0, 255).astype(np.uint8)
        return np.ascontiguousarray(np.repeat(arr[:, :, None], 3, axis=2))
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        # Composite on white: transparent pixels of RGBA often hold garbage colours.
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, rgba)
    return np.ascontiguousarray(np.asarray(img.convert("RGB"), dtype=np.uint8))


def load_image(source, max_pixels: int | None = None) -> np.ndarray:
    """Path, bytes, PIL image or array -> HxWx3 uint8 RGB (EXIF rotation applied).

    Raises :class:`ImageLoadError` for anything that is not a usable image: missing, empty,
    truncated or corrupt files, non-images, decompression bombs, zero-sized arrays.
    """
    from .models.image_processing_mivolo_lite import as_rgb_array

    limit = MAX_IMAGE_PIXELS if max_pixels is None else max_pixels
    if isinstance(source, np.ndarray):
        if source.size == 0:
            raise ImageLoadError(source, "the array is empty")
        if source.shape[0] * (source.shape[1] if source.ndim > 1 else 1) > limit:
            raise ImageLoadError(source, f"more than {limit:,} pixels")
        try:
            return as_rgb_array(source)
        except ValueError as e:
            raise ImageLoadError(source, str(e)) from None
    if isinstance(source, Image.Image):
        img = source
    elif isinstance(source, (bytes, bytearray)):
        img = _open(io.BytesIO(source), source)
    elif isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.exists():
            raise ImageLoadError(source, "no such file")
        if path.is_dir():
            raise ImageLoadError(source, "it is a folder")
        if path.stat().st_size == 0:
            raise ImageLoadError(source, "the file is empty (0 bytes)")
        img = _open(path, source)
    else:
        raise ImageLoadError(source, "expected a path, bytes, a PIL image or a numpy array")
    w, h = img.size
    if w * h > limit:
        raise ImageLoadError(source, f"{w}x{h} = {w * h:,} pixels is over the limit of {limit:,} "
                                     "(a possible decompression bomb)")
    if w < 1 or h < 1:
        raise ImageLoadError(source, f"the image has no pixels ({w}x{h})")
    try:
        img.seek(0)  # first frame of animations
    except (EOFError, AttributeError, ValueError):
        pass
    try:
        img = ImageOps.exif_transpose(img)
        return pil_to_rgb_array(img)
    except (OSError, SyntaxError, ValueError) as e:  # truncated data surfaces only on decode
        raise ImageLoadError(source, f"the image data is corrupt or truncated ({e})") from None


def _pil_open():
    """PIL's own ``Image.open``. ultralytics replaces it with a wrapper that, on an unidentified
    file, tries to pip-install an extra decoder and fails with ImportError when offline."""
    import sys

    patches = sys.modules.get("ultralytics.utils.patches")
    return getattr(patches, "_image_open", Image.open) if patches is not None else Image.open


def _open(fp, source) -> Image.Image:
    try:
        img = _pil_open()(fp)
        img.load()
        return img
    except UnidentifiedImageError:
        raise ImageLoadError(source, "not an image file (unrecognised format)") from None
    except Image.DecompressionBombError as e:
        raise ImageLoadError(source, str(e)) from None
    except (OSError, SyntaxError, ValueError) as e:
        raise ImageLoadError(source, f"the image data is corrupt or truncated ({e})") from None
