"""Result objects (ultralytics style): per-person results and per-image results with
``.plot()``, ``.to_df()``, ``.to_json()`` and boxes as tensors."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch


@dataclass
class PersonResult:
    """One person. Boxes are xyxy pixel floats or ``None``; ``age_std`` is the spread of the
    predicted age distribution; ``age_interval`` the calibrated interval at ``coverage``."""

    face_box: tuple[float, float, float, float] | None
    body_box: tuple[float, float, float, float] | None
    age: float
    age_std: float
    gender: str  # "male" | "female"
    gender_score: float  # confidence of ``gender``, 0.5..1
    age_interval: tuple[float, float] | None = None
    coverage: float | None = None
    face_score: float | None = None
    body_score: float | None = None
    track_id: int | None = None
    age_probs: np.ndarray | None = field(default=None, repr=False)  # distribution over config.min_age..max_age
    _checker: object | None = field(default=None, repr=False, compare=False)

    @property
    def prob_male(self) -> float:
        return self.gender_score if self.gender == "male" else 1.0 - self.gender_score

    def check_age(self, threshold: float = 18, risk: float = 0.05):
        """Is this person at least ``threshold`` years old? See :mod:`mivolo_lite.calibration`."""
        if self._checker is None:
            raise RuntimeError("this result carries no calibration; use AgePredictor.check_age")
        return self._checker.check(self, threshold, risk)

    def to_dict(self) -> dict:
        d = asdict(self)
        d.pop("age_probs", None)
        d.pop("_checker", None)
        for k in ("face_box", "body_box", "age_interval"):
            if d[k] is not None:
                d[k] = [round(float(v), 2) for v in d[k]]
        for k in ("age", "age_std", "gender_score", "face_score", "body_score", "coverage"):
            if d[k] is not None:
                d[k] = round(float(d[k]), 4)
        return d


Box = tuple[int, int, int, int]


def _overlap(a, b) -> float:
    return max(0.0, min(a[2], b[2]) - max(a[0], b[0])) * max(0.0, min(a[3], b[3]) - max(a[1], b[1]))


def label_boxes(anchors, sizes, image_width: int, image_height: int | None = None, avoid=()) -> list[Box]:
    """Where to draw each label (x1, y1, x2, y2), one per anchor box, in order: at the anchor's
    left edge (kept inside the image) and at the height nearest to just above the anchor that
    covers no label placed before and no box in ``avoid`` (the faces); the heights tried are a
    label's height apart, above the anchor, down from its top (inside a body box) and below it.
    People stand close together: the labels go around each other and their faces instead of
    hiding them. When no height is free (a very crowded image), the one that covers the least
    is taken."""
    placed: list[Box] = []
    avoid = [tuple(float(v) for v in box) for box in avoid]
    for anchor, (width, height) in zip(anchors, sizes):
        x = int(min(max(0, anchor[0]), max(0, image_width - width)))
        above = math.floor(anchor[1]) - height  # whole pixels that do not touch the anchor
        steps = range(min(len(placed) + len(avoid) + 2, 50))  # enough to get past what is in the way
        tops = {above - height * k for k in steps} | {math.ceil(anchor[1]) + height * k for k in steps} | \
               {math.ceil(anchor[3]) + height * k for k in steps}
        lowest = None if image_height is None else image_height - height
        inside = sorted((y for y in tops if y >= 0 and (lowest is None or y <= lowest)),
                        key=lambda y: (abs(y - above), y > above))  # nearest first, above before below
        best, best_cost = None, None
        for y in inside or [max(0, above if lowest is None else min(above, lowest))]:
            box = (x, y, x + width, y + height)
            cost = sum(_overlap(box, other) for other in placed) * 4 + sum(_overlap(box, face) for face in avoid)
            if best_cost is None or cost < best_cost:
                best, best_cost = box, cost
            if cost == 0:
                break
        placed.append(best)
    return placed


@dataclass
class ImageResult:
    """All persons found in one image, sorted left to right. ``error`` is set (and ``persons``
    empty) when the input could not be processed."""

    source: str
    persons: list[PersonResult] = field(default_factory=list)
    image: np.ndarray | None = field(default=None, repr=False)  # RGB, for plotting
    error: str | None = None
    detector: str | None = None
    frame: int | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def __len__(self) -> int:
        return len(self.persons)

    def _boxes(self, key: str) -> torch.Tensor:
        boxes = [getattr(p, key) for p in self.persons if getattr(p, key) is not None]
        return torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4)

    @property
    def face_boxes(self) -> torch.Tensor:
        return self._boxes("face_box")

    @property
    def body_boxes(self) -> torch.Tensor:
        return self._boxes("body_box")

    @property
    def ages(self) -> torch.Tensor:
        return torch.tensor([p.age for p in self.persons], dtype=torch.float32)

    def rows(self) -> list[dict]:
        base = {"source": self.source}
        if self.frame is not None:
            base["frame"] = self.frame
        if self.error is not None:
            return [{**base, "person": None, "error": self.error}]
        return [{**base, "person": i, **p.to_dict(), "error": None} for i, p in enumerate(self.persons)]

    def to_df(self):
        import pandas as pd

        return pd.DataFrame(self.rows())

    def to_dict(self) -> dict:
        return {"source": self.source, "frame": self.frame, "error": self.error, "detector": self.detector,
                "persons": [p.to_dict() for p in self.persons]}

    def to_json(self, **kwargs) -> str:
        return json.dumps(self.to_dict(), **kwargs)

    def plot(self, line_width: int | None = None, font_scale: float | None = None, tags=None) -> np.ndarray:
        """Annotated copy of the image (RGB): face boxes, body boxes, and an "age gender [interval]"
        label per person, placed so that no label hides another or a face (:func:`label_boxes`).
        ``tags``: one ``None`` or ``(text, RGB colour)`` per person, drawn at the end of its label
        (the demo's age-check decision)."""
        import cv2

        if self.image is None:
            raise ValueError(f"{self.source}: no image to plot ({self.error or 'image not kept'})")
        canvas = np.ascontiguousarray(self.image.copy())
        h, w = canvas.shape[:2]
        lw = line_width or max(1, round(0.002 * (h + w)))
        fs = font_scale or max(0.4, 0.0007 * (h + w))
        thick = max(1, lw // 2)
        colors = [(60, 140, 255) if p.gender == "male" else (255, 80, 160) for p in self.persons]
        for p, color in zip(self.persons, colors):  # all boxes first, so that no box is drawn over a label
            if p.body_box is not None:
                x1, y1, x2, y2 = (int(round(v)) for v in p.body_box)
                cv2.rectangle(canvas, (x1, y1), (x2, y2), color, max(1, lw // 2))
            if p.face_box is not None:
                x1, y1, x2, y2 = (int(round(v)) for v in p.face_box)
                cv2.rectangle(canvas, (x1, y1), (x2, y2), color, lw)
        tags = list(tags) if tags is not None else [None] * len(self.persons)
        segments, bases, sizes = [], [], []  # per label: [(text, colour, width)], baseline, (width, height)
        for p, color, tag in zip(self.persons, colors, tags):
            text = f"{p.age:.0f} {p.gender[0].upper()}"
            if p.age_interval is not None:
                text += f" [{p.age_interval[0]:.0f}-{p.age_interval[1]:.0f}]"
            parts = [(text, color)] + ([tag] if tag is not None else [])
            measured = [cv2.getTextSize(t, cv2.FONT_HERSHEY_SIMPLEX, fs, thick) for t, _ in parts]
            segments.append([(t, c, tw + 4) for (t, c), ((tw, _), _) in zip(parts, measured)])
            base = max(b for _, b in measured)
            bases.append(base)
            sizes.append((sum(tw + 4 for (tw, _), _ in measured), max(th for (_, th), _ in measured) + base + 2))
        anchors = [p.face_box or p.body_box for p in self.persons]
        faces = [p.face_box for p in self.persons if p.face_box is not None]
        for parts, base, (x, y1, _, y2) in zip(segments, bases, label_boxes(anchors, sizes, w, h, avoid=faces)):
            for text, color, width in parts:
                cv2.rectangle(canvas, (x, y1), (x + width, y2), color, -1)
                cv2.putText(canvas, text, (x + 2, y2 - base), cv2.FONT_HERSHEY_SIMPLEX, fs, (255, 255, 255), thick,
                            cv2.LINE_AA)
                x += width
        return canvas

    def save(self, path: str | Path) -> Path:
        import cv2

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        if not cv2.imwrite(str(path), cv2.cvtColor(self.plot(), cv2.COLOR_RGB2BGR)):
            raise OSError(f"could not write {path}")
        return path
