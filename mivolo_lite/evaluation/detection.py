"""Measuring face detectors on annotated photos: matches at an IoU, and group photos built from
single portraits (the research sets hold one person per photo; crowds are what tiling is for)."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch
from torchvision.ops import box_iou


@dataclass
class FaceMatches:
    faces: int = 0  # annotated faces
    found: int = 0  # annotated faces overlapped by a detection at the IoU
    false: int = 0  # detections overlapping no annotated face
    images: int = 0

    def add(self, detected: torch.Tensor, truth: torch.Tensor, iou: float = 0.4) -> "FaceMatches":
        """Landmark boxes are tighter than any detector's, hence the default IoU of 0.4."""
        self.faces += len(truth)
        self.images += 1
        if len(detected) and len(truth):
            overlap = box_iou(detected.float().reshape(-1, 4), truth.float().reshape(-1, 4))
            self.found += int((overlap.max(0).values >= iou).sum())
            self.false += int((overlap.max(1).values < iou).sum())
        else:
            self.false += len(detected)
        return self

    @property
    def recall(self) -> float:
        return self.found / max(self.faces, 1)

    @property
    def false_per_image(self) -> float:
        return self.false / max(self.images, 1)


def group_photo(portraits: list[tuple[np.ndarray, torch.Tensor]], n: int, cell: tuple[int, int] = (200, 256)):
    """An ``n x n`` grid of the first ``n*n`` portraits, each resized to ``cell`` (width, height),
    and their face boxes ``(n*n, 4)`` moved to where they are in the grid."""
    if len(portraits) < n * n:
        raise ValueError(f"a {n}x{n} group photo needs {n * n} portraits, got {len(portraits)}")
    width, height = cell
    cells, boxes = [], []
    for i, (image, box) in enumerate(portraits[: n * n]):
        sx, sy = width / image.shape[1], height / image.shape[0]
        cells.append(cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA))
        x, y = (i % n) * width, (i // n) * height
        boxes.append(torch.as_tensor(box, dtype=torch.float32).reshape(4) * torch.tensor([sx, sy, sx, sy])
                     + torch.tensor([x, y, x, y], dtype=torch.float32))
    rows = [np.concatenate(cells[r * n:(r + 1) * n], axis=1) for r in range(n)]
    return np.ascontiguousarray(np.concatenate(rows, axis=0)), torch.stack(boxes)
