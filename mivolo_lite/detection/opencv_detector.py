"""Offline default detector, run entirely by OpenCV 4: faces from the BlazeFace model that ships
in this package (:mod:`.blazeface`; or OpenCV's Haar cascades with ``face_model="haar"``), bodies
from the HOG+SVM people detector. No download, no GPU; weaker than a YOLO person+face model (use
``detector="yolo:..."`` when you have weights).

OpenCV 5 dropped HOG and the Haar cascades. There BlazeFace still runs (``cv2.dnn``), every
person gets the head-and-torso box below their face, and whole-body detection is off, with a
warning; ``face_model="haar"`` raises."""

from __future__ import annotations

import warnings

import cv2
import numpy as np
import torch

from .base import Detections, OpenCVRunDetector, all_faces_at_least, nms
from .pairing import add_persons_for_faces


class OpenCVDetector(OpenCVRunDetector):
    """``face_model``: ``"blazeface"`` (default: fast, finds profiles) or ``"haar"`` (OpenCV's
    frontal + profile cascades; ``face_max_side`` and the scale-step and neighbour arguments apply
    to it alone).
    ``blazeface_options`` go to :class:`~.blazeface.BlazeFace` (thresholds, tiling).

    ``closeup_face_fraction``: when faces were found and every one is at least this fraction of
    the image's longer side (portraits, selfies, close-ups), the HOG people detector is skipped.
    It only finds whole standing people, who are about 7.5 face heights tall: nobody whose face
    is that large fits, and in such photos it mostly fires on clothes. The faces still get their
    head-and-torso boxes. ``None`` always runs it."""

    name = "opencv"

    def __init__(self, face_model: str = "blazeface", blazeface_options: dict | None = None,
                 face_max_side: int = 800, body_max_side: int = 640, min_face: int = 20,
                 min_face_fraction: float = 0.0, face_neighbors: int = 5, face_scale_step: float = 1.1,
                 profile_scale_step: float = 1.1, hog_scale_step: float = 1.05, hog_threshold: float = 0.3,
                 persons_from_faces: bool = True, closeup_face_fraction: float | None = 1 / 6):
        if face_model not in ("blazeface", "haar"):
            raise ValueError(f"face_model must be 'blazeface' or 'haar', got {face_model!r}")
        if face_model == "haar" and not hasattr(cv2, "CascadeClassifier"):
            raise RuntimeError(f"OpenCV {cv2.__version__} has no Haar cascades (OpenCV 5 removed them); "
                               "use face_model='blazeface', install 'opencv-python<5' or use detector='yolo:<weights>'")
        self.face_model = face_model
        if face_model == "blazeface":
            from .blazeface import BlazeFace

            self.blazeface = BlazeFace(**(blazeface_options or {}))
        else:
            root = cv2.data.haarcascades
            self.frontal = cv2.CascadeClassifier(root + "haarcascade_frontalface_default.xml")
            self.profile = cv2.CascadeClassifier(root + "haarcascade_profileface.xml")
            if self.frontal.empty() or self.profile.empty():
                raise RuntimeError(f"OpenCV's Haar cascade files are missing under {root}")
        self.hog = None
        if hasattr(cv2, "HOGDescriptor_getDefaultPeopleDetector"):
            self.hog = cv2.HOGDescriptor()
            self.hog.setSVMDetector(cv2.HOGDescriptor_getDefaultPeopleDetector())
        else:
            warnings.warn(f"OpenCV {cv2.__version__} has no HOG people detector (OpenCV 5 removed it): persons "
                          "come from their faces alone (head-and-torso boxes), nobody is found by the body "
                          "alone. Install 'opencv-python<5' or use detector='yolo:<weights>' for body detection.",
                          RuntimeWarning, stacklevel=2)
        self.face_max_side, self.body_max_side = face_max_side, body_max_side
        self.min_face, self.face_neighbors, self.hog_threshold = min_face, face_neighbors, hog_threshold
        self.min_face_fraction = min_face_fraction
        self.face_scale_step, self.profile_scale_step, self.hog_scale_step = face_scale_step, profile_scale_step, hog_scale_step
        self.persons_from_faces = persons_from_faces
        self.closeup_face_fraction = closeup_face_fraction

    @staticmethod
    def _scaled(image: np.ndarray, max_side: int) -> tuple[np.ndarray, float]:
        scale = min(1.0, max_side / max(image.shape[:2]))
        if scale < 1.0:
            image = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        return image, scale

    def _faces(self, image: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        if self.face_model == "blazeface":
            boxes, scores = self.blazeface(image)
            side = torch.minimum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
            keep = side >= self._min_face_side(image)
            return boxes[keep], scores[keep]
        return self._haar_faces(image)

    def _min_face_side(self, image: np.ndarray) -> float:
        """Smallest face side in pixels that either face model reports."""
        return max(self.min_face, self.min_face_fraction * min(image.shape[:2]))

    def _haar_faces(self, image: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        small, scale = self._scaled(image, self.face_max_side)
        gray = cv2.equalizeHist(cv2.cvtColor(small, cv2.COLOR_RGB2GRAY))
        min_size = (max(12, int(self._min_face_side(image) * scale)),) * 2
        boxes, scores = [], []
        for cascade, flip in ((self.frontal, False), (self.profile, False), (self.profile, True)):
            img = gray[:, ::-1].copy() if flip else gray
            step = self.face_scale_step if cascade is self.frontal else self.profile_scale_step
            found, _, weights = cascade.detectMultiScale3(img, scaleFactor=step, minNeighbors=self.face_neighbors,
                                                          minSize=min_size, outputRejectLevels=True)
            for (x, y, w, h), s in zip(np.asarray(found).reshape(-1, 4), np.asarray(weights).reshape(-1)):
                if flip:
                    x = img.shape[1] - x - w
                boxes.append([x, y, x + w, y + h])
                # cascade "level weights" are unbounded; squash to 0..1 for a comparable score
                scores.append(1 / (1 + np.exp(-float(s) / 2)) if cascade is self.frontal else 0.5 / (1 + np.exp(-float(s) / 2)))
        if not boxes:
            return torch.zeros(0, 4), torch.zeros(0)
        b = torch.tensor(boxes, dtype=torch.float32) / scale
        s = torch.tensor(scores, dtype=torch.float32)
        keep = nms(b, s, 0.3)
        return b[keep], s[keep]

    def _bodies(self, image: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        small, scale = self._scaled(image, self.body_max_side)
        if self.hog is None or min(small.shape[:2]) < 128:  # no HOG (OpenCV 5); its window is 64x128
            return torch.zeros(0, 4), torch.zeros(0)
        found, weights = self.hog.detectMultiScale(cv2.cvtColor(small, cv2.COLOR_RGB2BGR), winStride=(8, 8),
                                                   padding=(8, 8), scale=self.hog_scale_step)
        found, weights = np.asarray(found).reshape(-1, 4), np.asarray(weights).reshape(-1)
        keep = weights >= self.hog_threshold
        if not keep.any():
            return torch.zeros(0, 4), torch.zeros(0)
        found, weights = found[keep], weights[keep]
        b = torch.tensor(np.c_[found[:, :2], found[:, :2] + found[:, 2:]], dtype=torch.float32) / scale
        s = torch.tensor(1 / (1 + np.exp(-weights)), dtype=torch.float32)
        keep = nms(b, s, 0.4)
        return b[keep], s[keep]

    def _detect(self, image: np.ndarray) -> Detections:
        face_boxes, face_scores = self._faces(image)
        if self.closeup_face_fraction is not None and all_faces_at_least(face_boxes, self.closeup_face_fraction,
                                                                          image.shape):
            person_boxes, person_scores = torch.zeros(0, 4), torch.zeros(0)
        else:
            person_boxes, person_scores = self._bodies(image)
        if self.persons_from_faces:
            # HOG only finds whole standing people; in close-ups and portraits it finds nobody
            person_boxes, person_scores = add_persons_for_faces(face_boxes, face_scores, person_boxes, person_scores)
        return Detections(person_boxes, person_scores, face_boxes, face_scores).clipped(image.shape[1], image.shape[0])
