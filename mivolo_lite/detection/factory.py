"""``build_detector``: a detector from a name, a weights path or an instance.

It lives apart from :mod:`.base` because it imports the backends, and the backends import the
interface from :mod:`.base`: a factory inside the base module would make the two import each other.
"""

from __future__ import annotations

from .base import Detector


def build_detector(spec=None, device: str = "cpu") -> Detector:
    """``None``/``"opencv"`` -> the offline OpenCV detector; ``"yolo:<path or hub repo id>"`` (or a
    path ending in ``.pt``) -> ultralytics YOLO; a :class:`Detector` instance is returned as is."""
    if isinstance(spec, Detector):
        return spec
    if spec is None or spec == "opencv":
        from .opencv_detector import OpenCVDetector

        return OpenCVDetector()
    if isinstance(spec, str):
        if spec.startswith("yolo:"):
            spec = spec[len("yolo:"):]
        from .yolo_detector import YOLODetector

        return YOLODetector(spec, device=device)
    raise TypeError(f"detector must be None, 'opencv', 'yolo:<weights>' or a Detector, got {type(spec).__name__}")
