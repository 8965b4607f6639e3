"""Reading what a browser or an API client uploads: every failure becomes an
:class:`~mivolo_lite._image_io.ImageLoadError` with a clear reason, and no image is decoded
before its pixel count is checked."""

from __future__ import annotations

from ._gradio import esc, user_error


def _data_url_bytes(url: str, max_bytes: int | None) -> bytes:
    """The bytes of a ``data:`` URL (how an API client may send an image inline), refused above
    the upload limit before decoding, as a file upload would be."""
    import base64
    import binascii
    from urllib.parse import unquote_to_bytes

    from .._image_io import ImageLoadError

    header, _, data = url.partition(",")
    if max_bytes and len(data) * 3 // 4 > max_bytes:
        raise ImageLoadError("<inline image>", f"it is larger than the upload limit of {max_bytes / 2**20:g} MB")
    try:
        return base64.b64decode(data) if header.endswith(";base64") else unquote_to_bytes(data)
    except (binascii.Error, ValueError) as e:
        raise ImageLoadError("<inline image>", f"the data URL is not valid base64 ({e})") from None


def defer_decoding(gr, component, max_upload_mb: float | None = None) -> None:
    """Make ``component`` (a ``gr.Image(type="filepath")``) hand over the uploaded file's path
    (or, for an inline ``data:`` URL, its bytes) without opening it, so that every bad upload (not
    an image, truncated, a decompression bomb) reaches :func:`~mivolo_lite.load_image` and gets
    its clear message in the page, instead of a generic preprocessing error from PIL, and so that
    no image is decoded before its pixel count is checked. (An instance attribute, not a
    subclass: Gradio writes a ``.pyi`` file next to the module of every Component subclass.)"""
    from .._image_io import ImageLoadError

    original = component.preprocess
    max_bytes = int(max_upload_mb * 2**20) if max_upload_mb else None

    def preprocess(payload):
        url = str(getattr(payload, "url", None) or "")
        if payload is not None and url.startswith("data:"):
            try:
                return _data_url_bytes(url, max_bytes)
            except ImageLoadError as e:
                raise user_error(f"Cannot read the uploaded image: {esc(e.reason)}", "Bad image") from None
        if payload is not None and getattr(payload, "path", None):
            return str(payload.path)  # already checked by Gradio to be an upload in its cache
        try:
            return original(payload)
        except gr.Error:
            raise
        except Exception as e:  # noqa: BLE001 - e.g. a webcam frame that does not decode
            raise user_error(esc(f"Cannot read the image: {type(e).__name__}: {e}"), title="Bad image") from None

    component.preprocess = preprocess


def read_upload(path, max_pixels):
    """``load_image`` with every failure as ``ImageLoadError``."""
    from .._image_io import ImageLoadError, load_image

    try:
        return load_image(path, max_pixels)
    except ImageLoadError:
        raise
    except ImportError:
        # ultralytics patches PIL.Image.open to import pi-heif for files PIL cannot identify; without
        # pi-heif that surfaces as ImportError instead of "unrecognised format"
        raise ImageLoadError(path, "not an image file (unrecognised format)") from None
    except Exception as e:  # noqa: BLE001
        raise ImageLoadError(path, f"the file could not be decoded ({type(e).__name__}: {e})") from None
