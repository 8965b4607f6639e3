"""Person and face detectors behind one small interface, and face-to-body pairing."""

from .base import Detections, Detector, build_detector

__all__ = ["Detections", "Detector", "build_detector"]
