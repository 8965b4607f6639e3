"""Converters from the research sets in ``shared/data`` to the annotation CSV format, with a
fixed, documented split.

Split rule (deterministic, no randomness): ``fold = md5(key) mod 20`` where ``key`` is the
person identity when the set has one (PETA's ``person_id``) and the file name otherwise (UTKFace,
All-Age-Faces: UTKFace repeats some people but gives no identity). Folds 0-1 are ``val`` (10 %),
fold 2 is ``calib`` (5 %, held out for interval calibration), folds 3-19 are ``train``.
"""

from __future__ import annotations

import csv
import hashlib
from pathlib import Path

from PIL import Image

from .annotations import AnnotationRecord, write_annotations

SPLITS = ("train", "val", "calib")


def fold_of(key: str, folds: int) -> int:
    """``md5(key) mod folds``: a fold that depends on the key alone (no seed, no order)."""
    return int(hashlib.md5(key.encode()).hexdigest(), 16) % folds


def split_of(key: str) -> str:
    fold = fold_of(key, 20)
    return "val" if fold < 2 else "calib" if fold == 2 else "train"


def _image_size(path: Path) -> tuple[int, int]:
    with Image.open(path) as img:
        return img.size


def convert_utkface(root: Path) -> list[AnnotationRecord]:
    """UTKFace chips: the whole 200x200 image is the face; no body."""
    records = []
    with open(root / "labels.csv", newline="") as f:
        for row in csv.DictReader(f):
            path = root / row["file"]
            w, h = 200, 200  # the "crop_part1" chips are all 200x200 (checked by the test suite)
            records.append(AnnotationRecord(
                image=str(path), face_box=(0, 0, w, h), age=float(row["age"]), gender=row["gender"] or None,
                race=row.get("race") or None, group_id=Path(row["file"]).name, source="utkface"))
    return records


def convert_aaf(root: Path, face_margin: float = 0.1) -> list[AnnotationRecord]:
    """All-Age-Faces: ``originals/`` is the photo; the face box is the landmarks' bounding box
    (scaled to the downscaled file, widened by ``face_margin``); the wider original frame is used
    as the context ("body") view."""
    landmarks = {}
    with open(root / "landmarks.csv", newline="") as f:
        for row in csv.DictReader(f):
            landmarks[row["file"]] = row
    records = []
    with open(root / "labels.csv", newline="") as f:
        for row in csv.DictReader(f):
            path = root / "originals" / row["file"]
            lm = landmarks.get(row["file"])
            w, h = _image_size(path)
            face_box = None
            if lm is not None:
                xy = [float(v) for v in lm["xy"].split()]
                sx, sy = w / float(lm["orig_width"]), h / float(lm["orig_height"])
                xs, ys = [x * sx for x in xy[0::2]], [y * sy for y in xy[1::2]]
                x1, y1, x2, y2 = min(xs), min(ys), max(xs), max(ys)
                # 49-point landmarks stop at the eyebrows and the lip line: grow mostly upward
                # (forehead) and a little downward (chin) to match a detector's face box.
                bw, bh = x2 - x1, y2 - y1
                x1, x2 = x1 - face_margin * bw, x2 + face_margin * bw
                y1, y2 = y1 - 0.35 * bh, y2 + 0.25 * bh
                face_box = (max(0.0, x1), max(0.0, y1), min(float(w), x2), min(float(h), y2))
            records.append(AnnotationRecord(
                image=str(path), face_box=face_box, body_box=(0, 0, w, h), age=float(row["age"]),
                gender=row["gender"] or None, group_id=row["file"], source="aaf"))
    return records


def convert_peta(root: Path) -> list[AnnotationRecord]:
    """PETA: whole-body pedestrian crops with age groups; no usable face."""
    records = []
    with open(root / "labels.csv", newline="") as f:
        for row in csv.DictReader(f):
            path = root / row["file"]
            w, h = _image_size(path)
            records.append(AnnotationRecord(
                image=str(path), body_box=(0, 0, w, h), age_group=row["age_group"], gender=row["gender"] or None,
                group_id=row["person_id"], source="peta"))
    return records


CONVERTERS = {"utkface": convert_utkface, "aaf": convert_aaf, "peta": convert_peta}


def convert_all(data_root: str | Path, out_dir: str | Path, sets=tuple(CONVERTERS)) -> dict[str, Path]:
    """Write ``<out_dir>/<set>_<split>.csv`` for each set and split; returns the written paths."""
    data_root, out_dir = Path(data_root), Path(out_dir)
    written = {}
    for name in sets:
        records = CONVERTERS[name](data_root / name)
        for split in SPLITS:
            chosen = [r for r in records if split_of(r.person) == split]
            written[f"{name}_{split}"] = write_annotations(chosen, out_dir / f"{name}_{split}.csv")
    return written
