"""Checking boxes that come from outside (callers, custom detectors) before they are used.

Boxes are xyxy pixel coordinates. Coordinates outside the image are fine (boxes are clipped to
the frame later), but NaN or infinite values, and boxes whose corners are swapped (x2 < x1 or
y2 < y1, typically xywh passed as xyxy), are refused with :class:`InvalidBoxesError` rather than
turned silently into empty or wrong crops.
"""

from __future__ import annotations

import numpy as np
import torch


class InvalidBoxesError(ValueError):
    """Boxes (or their scores) that cannot be used; the message says which ones and why."""


def _as_tensor(values, what: str) -> torch.Tensor:
    try:
        return torch.as_tensor(values if torch.is_tensor(values) else np.asarray(values, dtype=np.float32))
    except (TypeError, ValueError) as e:
        raise InvalidBoxesError(f"{what}: not an array of numbers ({e})") from None


def as_boxes(boxes, what: str = "boxes") -> torch.Tensor:
    """``boxes`` (tensor, array or nested list, shape (N, 4) or empty) -> float32 tensor (N, 4).
    Raises :class:`InvalidBoxesError` for another shape, non-finite values or swapped corners."""
    t = _as_tensor(boxes, what)
    if t.numel() == 0:
        return torch.zeros(0, 4)
    if t.ndim != 2 or t.shape[1] != 4:
        raise InvalidBoxesError(f"{what}: expected shape (N, 4) with x1, y1, x2, y2 per row, got {tuple(t.shape)}")
    t = t.float()
    bad = ~torch.isfinite(t).all(dim=1)
    if bad.any():
        i = int(bad.nonzero()[0])
        raise InvalidBoxesError(f"{what}: box {i} has a NaN or infinite coordinate {t[i].tolist()}")
    swapped = (t[:, 2] < t[:, 0]) | (t[:, 3] < t[:, 1])
    if swapped.any():
        i = int(swapped.nonzero()[0])
        raise InvalidBoxesError(f"{what}: box {i} = {t[i].tolist()} has x2 < x1 or y2 < y1; boxes are "
                                "(x1, y1, x2, y2), not (x, y, width, height)")
    return t


def as_scores(scores, n: int, what: str = "scores") -> torch.Tensor:
    """``scores`` -> float32 tensor (n,), finite; :class:`InvalidBoxesError` otherwise."""
    t = _as_tensor(scores, what).float().reshape(-1)
    if len(t) != n:
        raise InvalidBoxesError(f"{what}: {len(t)} score(s) for {n} box(es)")
    if not torch.isfinite(t).all():
        raise InvalidBoxesError(f"{what}: NaN or infinite score")
    return t
