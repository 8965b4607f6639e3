"""``build_detector``: a detector from its spec string. Kept apart from :mod:`.base`, which the
backends import, so that the interface module imports no backend (no import cycle)."""

from __future__ import annotations

from .base import Detector

BUILT_IN_DETECTORS = ("centernet", "centernet-accurate", "opencv")
DETECTOR_SPECS = "None/'centernet' (offline default), 'centernet-accurate', 'opencv', 'yolo:<weights>' or a Detector"


def build_detector(spec=None, device: str = "cpu") -> Detector:
    """``None``/``"centernet"`` -> the offline default (CenterNet persons + YuNet faces,
    shipped in the package); ``"centernet-accurate"`` -> the same networks, the person network
    run at three input sizes and fused (more people found, 5.5 times the detector's time);
    ``"opencv"`` -> the older offline OpenCV detector (HOG people);
    ``"yolo:<path or hub repo id>"`` (or a path ending in ``.pt``) -> ultralytics YOLO; a
    :class:`Detector` instance is returned as is."""
    if isinstance(spec, Detector):
        return spec
    if spec is None or spec == "centernet":
        from .centernet_detector import CenterNetDetector

        return CenterNetDetector()
    if spec == "centernet-accurate":
        from .centernet_detector import ACCURATE, CenterNetDetector

        detector = CenterNetDetector(**ACCURATE)
        detector.name = spec  # results say which of the two ran
        return detector
    if spec == "opencv":
        from .opencv_detector import OpenCVDetector

        return OpenCVDetector()
    if isinstance(spec, str):
        if spec.startswith("yolo:"):
            spec = spec[len("yolo:"):]
        from .yolo_detector import YOLODetector

        return YOLODetector(spec, device=device)
    raise TypeError(f"detector must be {DETECTOR_SPECS}, got {type(spec).__name__}")
