"""Person and face detectors behind one small interface, and face-to-body pairing."""

from .base import Detections, Detector
from .boxes import InvalidBoxesError
from .factory import build_detector

__all__ = ["Detections", "Detector", "InvalidBoxesError", "build_detector"]
