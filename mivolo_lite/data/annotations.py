"""The annotation CSV format used for training and evaluation.

One row per person::

    image,face_box,body_box,age,age_group,gender,race,group_id,source

- ``image``: path of the photo, relative to the CSV file's folder (or absolute).
- ``face_box`` / ``body_box``: ``"x1 y1 x2 y2"`` in pixels of that photo, or empty when the person
  has no visible face / body. A crop that *is* the face is written as the whole image's box.
- ``age``: exact age in years, or empty. ``age_group``: an interval ``"31-45"`` or open-ended
  ``"61-"``, used when the exact age is unknown. Both empty: age unknown (masked from the loss).
- ``gender``: ``M``, ``F`` or empty (unknown). ``race``: free text, optional, for breakdowns.
- ``group_id``: identity of the person where known (splits never separate one person's images).
- ``source``: name of the data set, for per-set figures.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field
from pathlib import Path

COLUMNS = ["image", "face_box", "body_box", "age", "age_group", "gender", "race", "group_id", "source"]
OPEN_END_AGE = 100.0  # the upper end of "61-"


@dataclass
class AnnotationRecord:
    image: str
    face_box: tuple[float, float, float, float] | None = None
    body_box: tuple[float, float, float, float] | None = None
    age: float | None = None
    age_group: str | None = None
    gender: str | None = None  # "M" | "F" | None
    race: str | None = None
    group_id: str | None = None
    source: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def age_interval(self) -> tuple[float, float]:
        """(low, high) in years; equal for exact ages; (nan, nan) when unknown."""
        if self.age is not None:
            return float(self.age), float(self.age)
        if self.age_group:
            return parse_age_group(self.age_group)
        return math.nan, math.nan

    @property
    def person(self) -> str:
        """Who is in the image, for splitting and for counting people: ``group_id`` where the set
        has identities, else the image itself (one person per image)."""
        return self.group_id or self.image

    @property
    def gender_label(self) -> int:
        return {"M": 1, "F": 0}.get(self.gender or "", -1)


def parse_age_group(text: str) -> tuple[float, float]:
    """``"31-45"`` -> (31, 45); ``"61-"`` -> (61, 100)."""
    low, sep, high = text.strip().partition("-")
    if not sep or not low:
        raise ValueError(f"age group {text!r} is not of the form 'LOW-HIGH' or 'LOW-'")
    return float(low), float(high) if high else OPEN_END_AGE


def _box(text: str) -> tuple[float, float, float, float] | None:
    text = (text or "").strip()
    if not text:
        return None
    values = [float(v) for v in text.replace(",", " ").split()]
    if len(values) != 4:
        raise ValueError(f"a box needs 4 numbers 'x1 y1 x2 y2', got {text!r}")
    return tuple(values)  # type: ignore[return-value]


def _box_text(box) -> str:
    return "" if box is None else " ".join(f"{v:.1f}" for v in box)


def evenly_spaced(records: list, n: int | None) -> list:
    """``n`` records spread evenly over the list (every k-th), all of them when ``n`` is None/0 or
    at least their number: a quick run on part of a file that is sorted (by age, by set) still
    sees all of it."""
    if not n or n >= len(records):
        return list(records)
    step = len(records) / n
    return [records[int(i * step)] for i in range(n)]


def read_annotations(path: str | Path, limit: int | None = None) -> list[AnnotationRecord]:
    """Read an annotation CSV; image paths are resolved against the CSV's folder. ``limit``: the
    first that many rows (None or 0: all), for quick runs."""
    path = Path(path)
    root = path.parent
    records = []
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        missing = {"image"} - set(reader.fieldnames or [])
        if missing:
            raise ValueError(f"{path}: annotation CSV lacks the column(s) {sorted(missing)}")
        for line, row in enumerate(reader, start=2):
            try:
                image = Path(row["image"])
                age = (row.get("age") or "").strip()
                records.append(AnnotationRecord(
                    image=str(image if image.is_absolute() else root / image),
                    face_box=_box(row.get("face_box", "")),
                    body_box=_box(row.get("body_box", "")),
                    age=float(age) if age else None,
                    age_group=(row.get("age_group") or "").strip() or None,
                    gender=(row.get("gender") or "").strip().upper() or None,
                    race=(row.get("race") or "").strip() or None,
                    group_id=(row.get("group_id") or "").strip() or None,
                    source=(row.get("source") or "").strip(),
                ))
            except ValueError as e:
                raise ValueError(f"{path}, line {line}: {e}") from None
    return records[:limit] if limit else records


def write_annotations(records: list[AnnotationRecord], path: str | Path) -> Path:
    """Write records; image paths are stored relative to the CSV's folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    root = path.parent.resolve()
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(COLUMNS)
        for r in records:
            image = Path(r.image).resolve()
            try:
                image_text = str(image.relative_to(root))
            except ValueError:
                import os

                image_text = os.path.relpath(image, root)
            writer.writerow([image_text, _box_text(r.face_box), _box_text(r.body_box),
                             "" if r.age is None else f"{r.age:g}", r.age_group or "", r.gender or "",
                             r.race or "", r.group_id or "", r.source])
    return path
