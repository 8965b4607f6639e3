"""Teacher soft labels for knowledge distillation (written by ``tools/research/teacher_labels.py``).

One CSV row per face: ``image,face_box,male_prob,age_probs`` where ``age_probs`` holds
space-separated probabilities for ages 0, 1, 2, ... years. Rows are matched to annotation
records by the image's resolved path and the face box, so the same CSV serves any annotation
file that points at the same pictures.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

TEACHER_COLUMNS = ["image", "face_box", "male_prob", "age_probs"]


@dataclass(frozen=True)
class TeacherLabel:
    age_probs: np.ndarray  # (n_years,) probabilities for ages 0..n_years-1
    male_prob: float


def teacher_key(image: str | os.PathLike, face_box) -> tuple[str, tuple[int, ...]]:
    return os.path.realpath(image), tuple(int(round(v)) for v in face_box)


def format_teacher_row(image, face_box, male_prob: float, age_probs: np.ndarray) -> list[str]:
    return [os.path.realpath(image), " ".join(f"{v:g}" for v in face_box), f"{male_prob:.4f}",
            " ".join(f"{p:.5f}" for p in age_probs)]


def refuse_held_out(csv_paths) -> None:
    """Stop a teacher from labelling validation or calibration files (``*_val.csv``,
    ``*_calib.csv``): the student must not learn from them, not even through a teacher."""
    held_out = [str(p) for p in csv_paths if Path(p).stem.endswith(("_val", "_calib"))]
    if held_out:
        raise SystemExit(f"refusing to label held-out data ({', '.join(held_out)}): the student must not "
                         "learn from validation or calibration images, not even through a teacher")


def read_teacher_labels(path: str | Path) -> dict[tuple[str, tuple[int, ...]], TeacherLabel]:
    labels = {}
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        missing = set(TEACHER_COLUMNS) - set(reader.fieldnames or [])
        if missing:
            raise ValueError(f"{path}: not a teacher-label CSV (missing columns {sorted(missing)})")
        for line, row in enumerate(reader, start=2):
            try:
                box = [float(v) for v in row["face_box"].split()]
                probs = np.array([float(v) for v in row["age_probs"].split()], dtype=np.float32)
                male = float(row["male_prob"])
            except ValueError as e:
                raise ValueError(f"{path}, line {line}: {e}") from e
            if len(box) != 4 or probs.size == 0 or not 0.0 <= male <= 1.0 or probs.sum() <= 0:
                raise ValueError(f"{path}, line {line}: bad face box, probabilities or male_prob")
            labels[teacher_key(row["image"], box)] = TeacherLabel(probs / probs.sum(), male)
    return labels


def read_teacher_embeddings(path: str | Path) -> dict[tuple[str, tuple[int, ...]], np.ndarray]:
    """Face-recognition descriptors for feature distillation, as ``tools/research/probe_teacher.py`` caches
    them: an ``.npz`` of ``image``, ``box`` (N, 4) and ``desc`` (N, 2, D), the descriptors of the
    face and of its mirror image. Keyed like teacher labels. Loaded without pickle."""
    with np.load(path, allow_pickle=False) as stored:
        missing = {"image", "box", "desc"} - set(stored.files)
        if missing or stored["desc"].ndim != 3 or stored["desc"].shape[1] != 2:
            raise ValueError(f"{path}: not a descriptor file (image, box and desc (N, 2, D) expected)")
        return {teacher_key(i, b): d.astype(np.float32) for i, b, d in zip(stored["image"], stored["box"], stored["desc"])}


def centered_embeddings(embeddings: dict, keys) -> dict:
    """The descriptors of ``keys`` (those that have one) minus their mean over those keys. Face-
    recognition descriptors share a large common direction (dlib's: the mean descriptor alone is
    within 1 - cosine = 0.08 of the training faces'), so a cosine loss on raw descriptors is
    mostly met by predicting that mean; centred, it measures what tells faces apart."""
    kept = {k: embeddings[k] for k in dict.fromkeys(keys) if k in embeddings}
    if not kept:
        return {}
    mean = np.mean([d for d in kept.values()], axis=(0, 1))
    return {k: (d - mean).astype(np.float32) for k, d in kept.items()}
