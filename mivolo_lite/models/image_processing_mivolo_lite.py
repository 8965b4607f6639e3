"""Turns face and body crops into model inputs.

One geometric primitive serves inference and training alike: :func:`square_crop_matrix` maps a
box to a square output (the longer side fills it, the shorter is padded with the mean colour,
so aspect ratio is preserved), and training composes its jitter (scale, shift, rotation, flip)
into the same single affine warp.
"""

from __future__ import annotations

import math
from typing import Sequence

import cv2
import numpy as np
import torch
from transformers.feature_extraction_utils import BatchFeature
from transformers.image_processing_utils import BaseImageProcessor

from .._image_io import as_rgb_array

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def square_crop_matrix(box: Sequence[float], size: int, scale: float = 1.0, shift: tuple[float, float] = (0.0, 0.0),
                       angle_deg: float = 0.0, flip: bool = False) -> np.ndarray:
    """2x3 affine matrix taking the square around ``box`` (x1, y1, x2, y2) to a ``size`` x ``size``
    image. ``scale`` > 1 zooms out (more context); ``shift`` moves the box by fractions of its
    longer side; ``angle_deg`` rotates around the box centre; ``flip`` mirrors horizontally."""
    x1, y1, x2, y2 = (float(v) for v in box)
    side = max(x2 - x1, y2 - y1, 1.0) * scale
    cx = (x1 + x2) / 2 + shift[0] * side
    cy = (y1 + y2) / 2 + shift[1] * side
    s = size / side
    a = math.radians(angle_deg)
    cos, sin = math.cos(a) * s, math.sin(a) * s
    # rotate+scale about the box centre, then move the centre to the output centre
    m = np.array([[cos, sin, 0.0], [-sin, cos, 0.0]], dtype=np.float64)
    m[:, 2] = np.array([size / 2, size / 2]) - m[:, :2] @ np.array([cx, cy])
    if flip:
        m[0] = -m[0]
        m[0, 2] += size
    return m


def warp_square_crop(image: np.ndarray, box: Sequence[float], size: int, fill: Sequence[float],
                     **jitter) -> np.ndarray:
    """Crop ``box`` out of ``image`` (HxWx3 uint8 RGB) into a ``size`` square in one warp."""
    m = square_crop_matrix(box, size, **jitter)
    # Area interpolation would be better for big downscales but warpAffine lacks it; pre-shrink.
    side = max(box[2] - box[0], box[3] - box[1], 1.0) * jitter.get("scale", 1.0)
    factor = side / size
    if factor > 2.5:
        shrink = 1.0 / (factor / 1.5)
        h, w = image.shape[:2]
        # at least one pixel: a box far larger than a tiny image would otherwise shrink it to nothing
        new_w, new_h = max(1, round(w * shrink)), max(1, round(h * shrink))
        image = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_AREA)
        sx, sy = new_w / w, new_h / h
        box = [box[0] * sx, box[1] * sy, box[2] * sx, box[3] * sy]
        m = square_crop_matrix(box, size, **jitter)
    return cv2.warpAffine(image, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                          borderValue=tuple(float(v) for v in fill))


def align_crop_lists(faces: Sequence | None, bodies: Sequence | None) -> tuple[list, list]:
    """Two equal-length lists from optional face and body lists (``None`` fills a missing one)."""
    if faces is None and bodies is None:
        raise ValueError("give faces, bodies or both")
    n = len(faces) if faces is not None else len(bodies)
    faces = list(faces) if faces is not None else [None] * n
    bodies = list(bodies) if bodies is not None else [None] * n
    if len(faces) != len(bodies):
        raise ValueError(f"faces and bodies must have the same length, got {len(faces)} and {len(bodies)}")
    return faces, bodies


class MiVOLOLiteImageProcessor(BaseImageProcessor):
    """Face/body crops -> ``face_pixel_values``, ``body_pixel_values`` (B, 3, S, S) and the
    presence masks ``face_mask``, ``body_mask`` (B,). ``None`` marks a missing crop."""

    model_input_names = ["face_pixel_values", "body_pixel_values", "face_mask", "body_mask"]

    def __init__(self, size: int = 112, image_mean: Sequence[float] = IMAGENET_MEAN,
                 image_std: Sequence[float] = IMAGENET_STD, **kwargs):
        super().__init__(**kwargs)
        self.size = int(size)
        self.image_mean = [float(v) for v in image_mean]
        self.image_std = [float(v) for v in image_std]

    @property
    def fill_value(self) -> tuple[float, float, float]:
        """Padding colour: the normalisation mean, so padding becomes zeros after normalising."""
        return tuple(255.0 * m for m in self.image_mean)

    def crop(self, image: np.ndarray, box: Sequence[float] | None = None, **jitter) -> np.ndarray:
        """Square ``size`` crop of ``box`` (whole image when ``None``) as HxWx3 uint8."""
        if box is None:
            box = (0.0, 0.0, float(image.shape[1]), float(image.shape[0]))
        return warp_square_crop(image, box, self.size, self.fill_value, **jitter)

    def normalize_batch(self, crops: np.ndarray) -> torch.Tensor:
        """(B, S, S, 3) uint8 -> (B, 3, S, S) float32, normalised."""
        t = torch.from_numpy(np.ascontiguousarray(crops)).permute(0, 3, 1, 2).contiguous().float()
        mean = 255.0 * torch.tensor(self.image_mean).view(1, 3, 1, 1)
        std = 255.0 * torch.tensor(self.image_std).view(1, 3, 1, 1)
        return t.sub_(mean).div_(std)  # in place: one float copy of the batch, no temporaries

    def _stack(self, crops: list) -> tuple[torch.Tensor, torch.Tensor]:
        mask = torch.tensor([c is not None for c in crops], dtype=torch.bool)
        # Absent crops are a black image, normalised: filled in directly rather than warped and
        # normalised one by one (face-only batches would otherwise pay for a whole body batch)
        black = self.normalize_batch(np.zeros((1, 1, 1, 3), dtype=np.uint8))
        pixels = black.expand(len(crops), 3, self.size, self.size).clone()
        if mask.any():
            present = [self.crop(as_rgb_array(c)) for c in crops if c is not None]
            pixels[mask] = self.normalize_batch(np.stack(present))
        return pixels, mask

    def preprocess(self, faces: Sequence | None = None, bodies: Sequence | None = None,
                   return_tensors: str | None = "pt", **kwargs) -> BatchFeature:
        faces, bodies = align_crop_lists(faces, bodies)
        face_pixels, face_mask = self._stack(faces)
        body_pixels, body_mask = self._stack(bodies)
        data = {"face_pixel_values": face_pixels, "body_pixel_values": body_pixels,
                "face_mask": face_mask, "body_mask": body_mask}
        return BatchFeature(data=data, tensor_type=return_tensors)

    def __call__(self, faces: Sequence | None = None, bodies: Sequence | None = None, **kwargs) -> BatchFeature:
        return self.preprocess(faces=faces, bodies=bodies, **kwargs)
