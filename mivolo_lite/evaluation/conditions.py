"""Simulated photo conditions for robustness checks: the same photo as an old scanned print, as a
face cut small from a group photo, or under-exposed.

A condition is applied to the *whole photo* (HxWx3 uint8 RGB), before any crop, so every model
that reads the photo -- ours through its processor's face and context crops, another package
through its own face crop -- sees the same degraded pixels. Its strength is set relative to the
face (the ``face_box``; the whole photo when there is none), so a 200 px UTKFace crop and a
120 px face in a 256 px All-Age-Faces photo are degraded alike.

Each condition is a deterministic function of the photo, the face box and ``seed`` (an int or a
sequence of ints for :func:`numpy.random.default_rng`): the random parts (the strength drawn from
the documented range, the grain) come from that generator only. :func:`record_seed` gives every
annotation row its own seed, fixed by the file name and the box, so a run is reproducible and
independent of the order of the rows.

- ``original``: the photo unchanged.
- ``old-photo``: a scanned print. Luminance only (grey, or sepia for half the seeds: the tone
  multiplies one grey value per pixel by :data:`SEPIA`), faded (contrast 0.55-0.7 and the blacks
  lifted by 25-45 levels), slightly blurred (Gaussian, sigma = face side / 150, at least 0.5 px),
  film grain (Gaussian noise, 5-9 grey levels) and saved as a JPEG of quality 30.
- ``low-res``: a face cut from a group photo. The photo is shrunk (area averaging) until the face's
  mean side is 24-32 px, then scaled back up (bilinear): the size stays, the detail is gone.
  Faces already that small are left as they are.
- ``dark``: under-exposure. Linear light (gamma 2.2) times 0.15-0.3 (1.7-2.7 stops darker), back
  to gamma, plus sensor noise (Gaussian, 3 grey levels).
"""

from __future__ import annotations

import zlib
from pathlib import Path
from typing import Callable, Sequence

import cv2
import numpy as np

SEPIA = np.array([1.0, 0.86, 0.67], dtype=np.float32)  # R, G, B of a sepia print, per grey level
LOW_RES_FACE_PX = (24, 32)  # face side after shrinking: faces in a group photo
GAMMA = 2.2


def _face_side(image: np.ndarray, face_box: Sequence[float] | None) -> float:
    """Mean side of the face box in pixels; the whole photo's when there is no box."""
    if face_box is None:
        return (image.shape[0] + image.shape[1]) / 2
    x1, y1, x2, y2 = face_box
    return max(1.0, ((x2 - x1) + (y2 - y1)) / 2)


def _original(image: np.ndarray, face_box, rng: np.random.Generator) -> np.ndarray:
    return image


def _old_photo(image: np.ndarray, face_box, rng: np.random.Generator) -> np.ndarray:
    sepia = rng.random() < 0.5
    contrast, lift = rng.uniform(0.55, 0.7), rng.uniform(25, 45)
    grain = rng.uniform(5, 9)
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float32)
    grey = lift + contrast * grey
    sigma = max(0.5, _face_side(image, face_box) / 150)
    grey = cv2.GaussianBlur(grey, (0, 0), sigma)
    grey += rng.normal(0, grain, grey.shape).astype(np.float32)
    # JPEG on the single grey channel: no chroma to subsample, so the channels stay exactly equal
    ok, data = cv2.imencode(".jpg", np.clip(np.rint(grey), 0, 255).astype(np.uint8), [cv2.IMWRITE_JPEG_QUALITY, 30])
    grey = cv2.imdecode(data, cv2.IMREAD_GRAYSCALE).astype(np.float32)
    tone = SEPIA if sepia else np.ones(3, dtype=np.float32)
    return np.clip(np.rint(grey[:, :, None] * tone), 0, 255).astype(np.uint8)


def _low_res(image: np.ndarray, face_box, rng: np.random.Generator) -> np.ndarray:
    target = rng.uniform(*LOW_RES_FACE_PX)
    scale = target / _face_side(image, face_box)
    if scale >= 1:
        return image
    h, w = image.shape[:2]
    small = cv2.resize(image, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


def _dark(image: np.ndarray, face_box, rng: np.random.Generator) -> np.ndarray:
    exposure = rng.uniform(0.15, 0.3)
    linear = (image.astype(np.float32) / 255) ** GAMMA * exposure
    out = 255 * linear ** (1 / GAMMA) + rng.normal(0, 3, image.shape).astype(np.float32)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


# one line each, for reports
DESCRIPTIONS = {"original": "the photo as it is",
                "old-photo": "a scanned print: grey or sepia, faded, blurred, grainy, JPEG quality 30",
                "low-res": "a face cut from a group photo: shrunk to a 24-32 px face and scaled back up",
                "dark": "under-exposed by 1.7-2.7 stops, with sensor noise"}
CONDITIONS: dict[str, Callable[[np.ndarray, Sequence[float] | None, np.random.Generator], np.ndarray]] = {
    "original": _original, "old-photo": _old_photo, "low-res": _low_res, "dark": _dark}


def apply_condition(image: np.ndarray, condition: str, face_box: Sequence[float] | None = None,
                    seed: int | Sequence[int] = 0) -> np.ndarray:
    """``image`` (HxWx3 uint8 RGB) as seen under ``condition``; the input is not modified."""
    if condition not in CONDITIONS:
        raise ValueError(f"unknown photo condition {condition!r}; choose from {', '.join(CONDITIONS)}")
    return CONDITIONS[condition](image, face_box, np.random.default_rng(seed))


def record_seed(image: str, face_box: Sequence[float] | None, seed: int = 0) -> tuple[int, int]:
    """The seed of one annotation row: ``seed`` and a checksum of its file name and face box."""
    return seed, zlib.crc32(f"{Path(str(image)).name} {face_box}".encode())

