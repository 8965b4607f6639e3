"""Person and face detectors behind one small interface, and face-to-body pairing."""

from .base import Detections, Detector, build_detector
from .boxes import InvalidBoxesError

__all__ = ["Detections", "Detector", "InvalidBoxesError", "build_detector"]
