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


def read_box_annotations(csv_path) -> dict[str, dict[str, torch.Tensor]]:
    """``file,kind,x1,y1,x2,y2[,source]`` rows -> ``{file: {kind: (N, 4) boxes}}``; files are as
    written in the CSV (relative to its folder). Every file appears, with empty tensors for the
    kinds it lacks, so photos with nobody count too when listed."""
    import csv
    from pathlib import Path

    out: dict[str, dict[str, list]] = {}
    with open(Path(csv_path), newline="") as f:
        for row in csv.DictReader(f):
            boxes = out.setdefault(row["file"], {})
            boxes.setdefault(row["kind"], []).append([float(row[k]) for k in ("x1", "y1", "x2", "y2")])
    return {file: {kind: torch.tensor(b, dtype=torch.float32).reshape(-1, 4) for kind, b in kinds.items()}
            for file, kinds in out.items()}


@dataclass
class BoxMatches:
    """Greedy one-to-one matching of scored detections to labelled boxes at an IoU, as in COCO's
    AP50: detections by descending score, each takes the unmatched labelled box it overlaps most
    (at least ``iou``). Keeps every detection's score, so precision and recall can be read at any
    score threshold afterwards (:meth:`at`) and AP50 computed (:meth:`average_precision`)."""

    iou: float = 0.5
    labelled: int = 0
    images: int = 0

    def __post_init__(self):
        self._scores: list[float] = []
        self._hits: list[bool] = []

    def add(self, boxes, scores, truth) -> "BoxMatches":
        boxes = torch.as_tensor(boxes, dtype=torch.float32).reshape(-1, 4)
        scores = torch.as_tensor(scores, dtype=torch.float32).reshape(-1)
        truth = torch.as_tensor(truth, dtype=torch.float32).reshape(-1, 4)
        self.labelled += len(truth)
        self.images += 1
        order = scores.argsort(descending=True)
        overlap = box_iou(boxes[order], truth) if len(truth) and len(boxes) else torch.zeros(len(boxes), len(truth))
        taken = torch.zeros(len(truth), dtype=torch.bool)
        for row, i in enumerate(order.tolist()):
            hit = False
            if len(truth):
                candidates = overlap[row].masked_fill(taken, -1)
                j = int(candidates.argmax())
                if candidates[j] >= self.iou:
                    taken[j], hit = True, True
            self._scores.append(float(scores[i]))
            self._hits.append(hit)
        return self

    def at(self, threshold: float) -> dict:
        """Recall, precision and counts of the detections scored at least ``threshold``."""
        kept = [h for s, h in zip(self._scores, self._hits) if s >= threshold]
        found = sum(kept)
        return {"threshold": threshold, "recall": found / max(self.labelled, 1),
                "precision": found / max(len(kept), 1), "found": found, "false": len(kept) - found,
                "labelled": self.labelled, "images": self.images}

    def average_precision(self) -> float:
        """COCO-style AP at this IoU: area under the precision envelope, 101 recall points."""
        if not self.labelled:
            return 0.0
        order = np.argsort(-np.asarray(self._scores), kind="stable")
        hits = np.asarray(self._hits, dtype=float)[order]
        tp = np.cumsum(hits)
        recall = tp / self.labelled
        precision = tp / np.arange(1, len(hits) + 1)
        envelope = np.maximum.accumulate(precision[::-1])[::-1] if len(precision) else precision
        points = np.linspace(0, 1, 101)
        idx = np.searchsorted(recall, points, side="left")
        return float(np.mean([envelope[i] if i < len(envelope) else 0.0 for i in idx]))
