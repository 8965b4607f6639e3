"""Safe image decoding shared by every entry point: files, bytes, PIL images and arrays become
HxWx3 uint8 RGB, EXIF orientation applied, with a clear error naming the input otherwise."""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

# Refuse decompression bombs with a clear message. The size is read from the file header and
# checked before any pixel is decoded. PIL's own process-wide guard (Image.MAX_IMAGE_PIXELS,
# which warns above ~89 MP and refuses above ~179 MP) is left alone: importing this library must
# not weaken it for the rest of the program.
MAX_IMAGE_PIXELS = 80_000_000

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


def as_rgb_array(image) -> np.ndarray:
    """PIL image or numpy array (HxW, HxWx1/3/4, uint8 or uint16) -> contiguous HxWx3 uint8 RGB."""
    if hasattr(image, "convert") and not isinstance(image, np.ndarray):  # PIL.Image
        return pil_to_rgb_array(image)
    arr = np.asarray(image)
    if arr.dtype == np.uint16:
        arr = (arr >> 8).astype(np.uint8)
    elif arr.dtype != np.uint8:
        finite = arr[np.isfinite(arr)] if arr.dtype.kind == "f" else None
        if finite is not None and finite.size and float(finite.max()) <= 1.0:  # 0..1 floats
            arr = arr * 255.0
        arr = np.clip(np.nan_to_num(arr), 0, 255).astype(np.uint8)
    if arr.ndim == 2:
        arr = np.repeat(arr[:, :, None], 3, axis=2)
    elif arr.ndim == 3 and arr.shape[2] == 1:
        arr = np.repeat(arr, 3, axis=2)
    elif arr.ndim == 3 and arr.shape[2] == 4:
        arr = arr[:, :, :3]
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.shape[0] < 1 or arr.shape[1] < 1:
        raise ValueError(f"expected an RGB image array of shape (H, W, 3), got shape {arr.shape}")
    return np.ascontiguousarray(arr)


def load_image(source, max_pixels: int | None = None) -> np.ndarray:
    """Path, bytes, PIL image or array -> HxWx3 uint8 RGB (EXIF rotation applied; the first frame
    of animations and multi-page files).

    Raises :class:`ImageLoadError` for anything that is not a usable image: missing, unreadable,
    empty, truncated or corrupt files, non-images, decompression bombs (more than ``max_pixels``,
    default :data:`MAX_IMAGE_PIXELS`), empty or oddly shaped arrays, unsupported colour modes.
    """
    limit = MAX_IMAGE_PIXELS if max_pixels is None else max_pixels
    if isinstance(source, np.ndarray):
        return _array_to_rgb(source, limit)
    if isinstance(source, Image.Image):
        _check_size(source, source, limit)
        return _pil_to_rgb(source, source)
    if isinstance(source, (bytes, bytearray)):
        return _pil_to_rgb(_decode(io.BytesIO(source), source, limit), source)
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.exists():
            raise ImageLoadError(source, "no such file")
        if path.is_dir():
            raise ImageLoadError(source, "it is a folder")
        if path.stat().st_size == 0:
            raise ImageLoadError(source, "the file is empty (0 bytes)")
        try:
            f = open(path, "rb")
        except OSError as e:
            raise ImageLoadError(source, f"cannot open the file ({e.strerror or e})") from None
        with f:
            img = _decode(f, source, limit)
        return _pil_to_rgb(img, source)
    raise ImageLoadError(source, "expected a path, bytes, a PIL image or a numpy array")


def _check_size(img: Image.Image, source, limit: int) -> None:
    w, h = img.size
    if w * h > limit:
        raise ImageLoadError(source, f"{w}x{h} = {w * h:,} pixels is over the limit of {limit:,} "
                                     "(a possible decompression bomb)")
    if w < 1 or h < 1:
        raise ImageLoadError(source, f"the image has no pixels ({w}x{h})")


def _array_to_rgb(arr: np.ndarray, limit: int) -> np.ndarray:
    if arr.dtype.kind not in "biuf":  # strings, objects, complex numbers: not pixel values
        raise ImageLoadError(arr, f"unsupported array dtype {arr.dtype} (expected integers, floats or booleans)")
    if arr.ndim not in (2, 3):
        raise ImageLoadError(arr, f"expected an image array of shape (H, W) or (H, W, C), got shape {arr.shape}")
    if arr.size == 0:
        raise ImageLoadError(arr, "the array is empty")
    if arr.shape[0] * arr.shape[1] > limit:
        raise ImageLoadError(arr, f"more than {limit:,} pixels")
    if arr.dtype == bool:  # a mask: white where True
        arr = arr.astype(np.uint8) * 255
    try:
        return as_rgb_array(arr)
    except ValueError as e:
        raise ImageLoadError(arr, str(e)) from None


def _pil_to_rgb(img: Image.Image, source) -> np.ndarray:
    try:
        img = ImageOps.exif_transpose(img)
    except Exception:  # noqa: BLE001 - a broken EXIF block should not cost a good photo its pixels
        pass
    try:
        return pil_to_rgb_array(img)
    except (OSError, SyntaxError, EOFError) as e:  # a lazily opened image decodes only now
        raise _corrupt(source, e) from None
    except ValueError as e:
        raise ImageLoadError(source, f"unsupported colour mode {img.mode!r} ({e})") from None


def _pil_open():
    """PIL's own ``Image.open``. ultralytics replaces it with a wrapper that, on an unidentified
    file, tries to pip-install an extra decoder and fails with ImportError when offline."""
    import sys

    patches = sys.modules.get("ultralytics.utils.patches")
    return getattr(patches, "_image_open", Image.open) if patches is not None else Image.open


def _decode(fp, source, limit: int) -> Image.Image:
    """Open, check the size from the header, and only then decode the pixels (first frame)."""
    try:
        img = _pil_open()(fp)
    except UnidentifiedImageError:
        raise ImageLoadError(source, "not an image file (unrecognised format)") from None
    except Image.DecompressionBombError as e:
        raise ImageLoadError(source, f"over the pixel limit of PIL (a possible decompression bomb): {e}") from None
    except _DECODE_ERRORS as e:
        raise _corrupt(source, e) from None
    _check_size(img, source, limit)
    try:
        img.load()
    except _DECODE_ERRORS as e:  # truncated data surfaces only on decode
        raise _corrupt(source, e) from None
    return img


# What PIL raises for damaged data, depending on the format and on where the damage is.
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError)


def _corrupt(source, error: Exception) -> ImageLoadError:
    return ImageLoadError(source, f"the image data is corrupt or truncated ({error})")
