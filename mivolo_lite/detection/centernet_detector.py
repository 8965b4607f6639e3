"""Offline default detector: people from the CenterNet person network (:mod:`.centernet`), faces
from YuNet (:mod:`.yunet`; or BlazeFace, :mod:`.blazeface`), all shipped in this package and run
by OpenCV. No download, no GPU.

How the two are combined:

- a person box scoring at least ``score_threshold`` is kept; one scoring at least
  ``face_supported_threshold`` is kept too when a detected face pairs with it (the one-to-one
  face-body assignment of :func:`~.pairing.match_faces_to_bodies`): the face is independent
  evidence of a person there;
- a face that no kept box contains stays a face-only person in the predictor; with
  ``persons_from_faces=True`` it also gets a head-and-torso box below it
  (:func:`~.pairing.add_persons_for_faces`). Off by default: on coco128 it added 9 false persons
  for 1 found (the face alone already makes the person).

Fragments: the older OpenCV detector's HOG found the legs of a man on ``bus.jpg`` as a person.
CenterNet scores a person by its centre, so parts are rare; a rule dropping face-less boxes lying
inside higher-scoring ones removed 6 real people on coco128 (a child before a parent, people
behind others) and 1 false one, so there is none.
"""

from __future__ import annotations

import numpy as np
import torch

from .base import Detections, OpenCVRunDetector
from .pairing import add_persons_for_faces, match_faces_to_bodies


ACCURATE = {"input_size": (512, 768, 1024), "score_threshold": 0.25, "face_supported_threshold": 0.15}
"""``CenterNetDetector(**ACCURATE)``, the ``"centernet-accurate"`` spec: three passes fused (see
:mod:`.centernet`), thresholds chosen on coco128 as for the default (the lowest keeping precision
at least 0.8): recall 0.697 at precision 0.808 (default 0.591 at 0.802) for 5.5 times the
detector's time (710 vs 130 ms per coco128 photo on one core of the loaded 2-core machine)."""


class CenterNetDetector(OpenCVRunDetector):
    """``input_size``: the longer side the person network sees (512 by default: 640 finds no
    more people at the same precision on coco128 and takes 1.7 times as long), or several sizes
    whose passes are fused (:data:`ACCURATE`).
    ``face_model``: ``"yunet"`` (default) or ``"blazeface"``; ``face_options`` go to its class
    (:class:`~.yunet.YuNet` or :class:`~.blazeface.BlazeFace`: thresholds, tiling).

    The thresholds were chosen on coco128 (the photos the person network was trained on): the
    lowest ``score_threshold`` keeping precision at least 0.8 with YuNet's faces, 0.3, gives
    recall 0.591 at precision 0.802 (IoU 0.5; ``tools/benchmark_detector.py``)."""

    name = "centernet"

    def __init__(self, input_size: int | tuple[int, ...] = 512, score_threshold: float = 0.3,
                 face_supported_threshold: float = 0.2,
                 persons_from_faces: bool = False, face_model: str = "yunet", face_options: dict | None = None):
        from .centernet import CenterNetPersons

        if face_model == "yunet":
            from .yunet import YuNet as face_class
        elif face_model == "blazeface":
            from .blazeface import BlazeFace as face_class
        else:
            raise ValueError(f"face_model must be 'yunet' or 'blazeface', got {face_model!r}")
        self.persons = CenterNetPersons(input_size, score_threshold=min(score_threshold, face_supported_threshold))
        self.faces = face_class(**(face_options or {}))
        self.score_threshold, self.face_supported_threshold = score_threshold, face_supported_threshold
        self.persons_from_faces = persons_from_faces

    def _detect(self, image: np.ndarray) -> Detections:
        person_boxes, person_scores = self.persons(image)
        face_boxes, face_scores = self.faces(image)
        with_face = torch.zeros(len(person_boxes), dtype=torch.bool)
        for fi, bi in match_faces_to_bodies(face_boxes, person_boxes):
            if fi is not None and bi is not None:
                with_face[bi] = True
        keep = (person_scores >= self.score_threshold) | (with_face & (person_scores >= self.face_supported_threshold))
        person_boxes, person_scores = person_boxes[keep], person_scores[keep]
        if self.persons_from_faces:
            person_boxes, person_scores = add_persons_for_faces(face_boxes, face_scores, person_boxes, person_scores)
        return Detections(person_boxes, person_scores, face_boxes, face_scores).clipped(image.shape[1], image.shape[0])
