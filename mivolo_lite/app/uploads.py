"""Reading what a browser or an API client uploads: every failure becomes an
:class:`~mivolo_lite._image_io.ImageLoadError` with a clear reason, and no image is decoded
before its pixel count is checked."""

from __future__ import annotations

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


def read_upload(upload, max_pixels: int | None = None, max_upload_mb: float | None = None):
    """The RGB array of an upload as the photo event receives it, unprocessed by Gradio
    (``preprocess=False``): Gradio's file payload (a dict; Gradio has already checked that its
    ``path`` is an upload in its cache) or an inline ``data:`` URL; a path or bytes when called
    from Python. Every failure (not an image, truncated, a decompression bomb, over the pixel
    limit) is an ``ImageLoadError`` with its reason, and nothing is decoded before its pixel count
    is checked.

    Why unprocessed: Gradio's own preprocessing opens the image with PIL, whose ``Image.open``
    ultralytics has patched to import pi-heif for unknown files, and a component replaced in the
    session (loading an example does that) is preprocessed by Gradio's class, whatever was set on
    the instance: a non-image then got Gradio's raw "Could not preprocess input component" error."""
    from .._image_io import ImageLoadError, load_image

    if isinstance(upload, dict):
        url = str(upload.get("url") or "")
        if url.startswith("data:"):
            upload = _data_url_bytes(url, int(max_upload_mb * 2**20) if max_upload_mb else None)
        elif upload.get("path"):
            upload = str(upload["path"])
        else:
            raise ImageLoadError("<upload>", "the upload holds neither a file nor an inline image")
    try:
        return load_image(upload, max_pixels)
    except ImageLoadError:
        raise
    except ImportError:
        # ultralytics patches PIL.Image.open to import pi-heif for files PIL cannot identify; without
        # pi-heif that surfaces as ImportError instead of "unrecognised format"
        raise ImageLoadError(upload, "not an image file (unrecognised format)") from None
    except Exception as e:  # noqa: BLE001
        raise ImageLoadError(upload, f"the file could not be decoded ({type(e).__name__}: {e})") from None
