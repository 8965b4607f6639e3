"""The detector interface: an RGB image in, person and face boxes with scores out."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from .boxes import InvalidBoxesError, as_boxes, as_scores


@dataclass
class Detections:
    """Boxes are ``(N, 4)`` float tensors, xyxy in pixels of the input image."""

    person_boxes: torch.Tensor = field(default_factory=lambda: torch.zeros(0, 4))
    person_scores: torch.Tensor = field(default_factory=lambda: torch.zeros(0))
    face_boxes: torch.Tensor = field(default_factory=lambda: torch.zeros(0, 4))
    face_scores: torch.Tensor = field(default_factory=lambda: torch.zeros(0))
    track_ids: torch.Tensor | None = None  # per person box, when a tracker ran

    def checked(self) -> "Detections":
        """The same detections as float tensors, or :class:`InvalidBoxesError` when a box or score
        is NaN or infinite, a box has swapped corners, or the lengths do not match. Used on
        detections that come from callers or custom detectors; :meth:`clipped` then fits them to
        the image."""
        person_boxes = as_boxes(self.person_boxes, "person boxes")
        face_boxes = as_boxes(self.face_boxes, "face boxes")
        tracks = self.track_ids
        if tracks is not None:
            tracks = torch.as_tensor(tracks).reshape(-1)
            if len(tracks) != len(person_boxes):
                raise InvalidBoxesError(f"track ids: {len(tracks)} id(s) for {len(person_boxes)} person box(es)")
        return Detections(person_boxes, as_scores(self.person_scores, len(person_boxes), "person scores"),
                          face_boxes, as_scores(self.face_scores, len(face_boxes), "face scores"), tracks)

    def clipped(self, width: int, height: int) -> "Detections":
        """Boxes clipped to the image; empty, non-finite or inverted boxes dropped."""
        def clean(boxes, scores):
            boxes = boxes.float().reshape(-1, 4)
            scores = scores.float().reshape(-1)
            ok = torch.isfinite(boxes).all(dim=1) & torch.isfinite(scores)
            boxes, scores = boxes[ok], scores[ok]
            boxes[:, 0::2] = boxes[:, 0::2].clamp(0, width)
            boxes[:, 1::2] = boxes[:, 1::2].clamp(0, height)
            keep = (boxes[:, 2] - boxes[:, 0] >= 1) & (boxes[:, 3] - boxes[:, 1] >= 1)
            return boxes[keep], scores[keep], ok.nonzero().squeeze(1)[keep]
        pb, ps, pidx = clean(self.person_boxes, self.person_scores)
        fb, fs, _ = clean(self.face_boxes, self.face_scores)
        tracks = self.track_ids[pidx] if self.track_ids is not None else None
        return Detections(pb, ps, fb, fs, tracks)


class Detector:
    """Subclasses implement :meth:`detect`. ``name`` identifies the backend in results."""

    name = "detector"

    def detect(self, image: np.ndarray) -> Detections:  # pragma: no cover - interface
        raise NotImplementedError

    def detect_batch(self, images: list[np.ndarray]) -> list[Detections]:
        return [self.detect(im) for im in images]


class OpenCVRunDetector(Detector):
    """A detector whose networks OpenCV runs: subclasses implement :meth:`_detect`.

    Importing ultralytics sets OpenCV to one thread (``cv2.setNumThreads(0)``, for its data
    loaders); detection here runs in the caller's process and may use as many threads as torch
    does (HOG 40 % and BlazeFace 20 % faster on 2 cores). Restored afterwards."""

    def _detect(self, image: np.ndarray) -> Detections:  # pragma: no cover - interface
        raise NotImplementedError

    def detect(self, image: np.ndarray) -> Detections:
        import cv2

        previous = cv2.getNumThreads()
        cv2.setNumThreads(max(1, torch.get_num_threads()))
        try:
            return self._detect(image)
        finally:
            cv2.setNumThreads(previous)


def nms(boxes: torch.Tensor, scores: torch.Tensor, iou: float) -> torch.Tensor:
    from torchvision.ops import nms as tv_nms

    if boxes.numel() == 0:
        return torch.zeros(0, dtype=torch.long)
    return tv_nms(boxes.float(), scores.float(), iou)


def all_faces_at_least(face_boxes, fraction: float, shape) -> bool:
    """True when there are faces and each one's longer side is at least ``fraction`` of the
    image's longer side (``shape``: the image's (height, width, ...)): a portrait or close-up."""
    boxes = torch.as_tensor(face_boxes).reshape(-1, 4)
    if len(boxes) == 0:
        return False
    sides = torch.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
    return bool(sides.min() >= fraction * max(shape[:2]))
