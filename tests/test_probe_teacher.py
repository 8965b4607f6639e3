"""tools/research/probe_teacher.py with stand-in descriptors (dlib and its face-recognition model are not
dependencies): the cross-fitted labels do not leak a face's own label back, one person's images
share a fold, the blend mixes the two teachers, descriptors are cached, held-out CSVs are refused."""

import hashlib

import numpy as np
import pytest
import torch

from mivolo_lite.data.annotations import AnnotationRecord, read_annotations, write_annotations
from mivolo_lite.data.teacher import TeacherLabel, format_teacher_row, read_teacher_labels, teacher_key
from test_export import load_tool

tool = load_tool("research/probe_teacher")


def synthetic_records(n, seed=0):
    rng = np.random.default_rng(seed)
    return [AnnotationRecord(image=f"/x/{i}.jpg", face_box=(0, 0, 10, 10), age=float(rng.integers(1, 80)),
                             gender="M" if rng.random() < 0.5 else "F", source="utkface") for i in range(n)]


def gender_hits(male, records):
    return np.mean([(p > 0.5) == (r.gender == "M") for p, r in zip(male, records)])


def test_cross_fitted_labels_do_not_give_a_face_its_own_label_back():
    """Noise descriptors: a probe fitted on all faces memorises their genders; the cross-fitted
    labels of the same faces are no better than chance, since no probe saw the face it labels."""
    records = synthetic_records(100)
    desc = np.random.default_rng(1).normal(size=(100, 2, 128)).astype(np.float32)
    inputs = tool.probe_inputs(desc, records)
    ages, genders = tool.labelled(records)
    in_sample = tool.probe_predict(tool.fit_probe(inputs, ages, genders, epochs=300, dropout=0.0), inputs)[1]
    assert gender_hits(in_sample, records) > 0.9
    _, male = tool.cross_fitted_labels(inputs, records, folds=5, epochs=300, dropout=0.0)
    assert gender_hits(male, records) < 0.7


def test_cross_fitted_labels_read_what_the_descriptors_hold():
    records = synthetic_records(300)
    rng = np.random.default_rng(2)
    desc = rng.normal(scale=0.1, size=(300, 2, 128)).astype(np.float32)
    for i, r in enumerate(records):  # gender and age written into two directions of the descriptor
        desc[i, :, 0] += 1.0 if r.gender == "M" else -1.0
        desc[i, :, 1] += r.age / 40
    age_probs, male = tool.cross_fitted_labels(tool.probe_inputs(desc, records), records, folds=5, epochs=300)
    assert gender_hits(male, records) > 0.95
    assert age_probs.shape == (300, tool.N_AGES) and np.allclose(age_probs.sum(1), 1, atol=1e-4)
    expected_age = age_probs @ np.arange(tool.N_AGES)
    assert np.abs(expected_age - np.array([r.age for r in records])).mean() < 10  # chance: about 20


def test_person_folds_keep_one_persons_images_together():
    records = [AnnotationRecord(image=f"/x/{i}.jpg", group_id=f"p{i % 7}") for i in range(70)]
    folds = tool.person_folds(records, 5)
    for person in {r.person for r in records}:
        assert len({f for f, r in zip(folds, records) if r.person == person}) == 1
    assert len(set(folds)) > 1


def test_blend_mixes_on_the_longer_grid():
    base = TeacherLabel(np.array([0.0, 1.0]), 0.2)
    probe = np.zeros(tool.N_AGES)
    probe[50] = 1.0
    age, male = tool.blend(probe, 0.8, base, probe_weight=0.25)
    assert age.size == tool.N_AGES and age[1] == pytest.approx(0.75) and age[50] == pytest.approx(0.25)
    assert male == pytest.approx(0.75 * 0.2 + 0.25 * 0.8)
    assert tool.blend(probe, 0.8, None, 0.25)[1] == 0.8  # no first-teacher label: the probe's own


class HashDescriptors:
    """Stands in for dlib's network: a fixed random descriptor per face crop, plus the label's
    gender in one direction so the probe has something to learn."""

    def __init__(self, records):
        self.by_crop = {}
        for r in records:
            digest = hashlib.md5(tool.face_crop(r).tobytes()).hexdigest()
            vec = np.random.default_rng(int(digest[:8], 16)).normal(scale=0.1, size=(2, 128)).astype(np.float32)
            vec[:, 0] += 1.0 if r.gender == "M" else -1.0
            self.by_crop[digest] = vec
        self.calls = 0

    def __call__(self, face):
        self.calls += 1
        return self.by_crop[hashlib.md5(face.tobytes()).hexdigest()]


def test_tool_writes_blended_cross_fitted_labels_and_caches_descriptors(annotations, tmp_path):
    every = read_annotations(annotations / "utkface_train.csv")  # sorted by age: take 40 across all ages
    records = every[:: len(every) // 40][:40]
    train = tmp_path / "utkface_train.csv"
    write_annotations(records, train)
    first = tmp_path / "first_teacher.csv"
    with open(first, "w") as f:
        f.write(",".join(["image", "face_box", "male_prob", "age_probs"]) + "\n")
        for r in records:
            f.write(",".join(format_teacher_row(r.image, r.face_box, 0.0, np.eye(81)[30])) + "\n")
    describe, cache, out = HashDescriptors(records), tmp_path / "desc.npz", tmp_path / "teacher.csv"
    args = [str(train), "--output", str(out), "--blend-with", str(first), "--cache", str(cache), "--epochs", "20"]
    assert tool.main(args + ["--probe-weight", "0.0"], describe=describe) == 0
    labels = read_teacher_labels(out)
    assert len(labels) == 40 and describe.calls == 40 and cache.exists()
    for r in records:  # weight 0: the first teacher's labels, on the probe's longer grid
        label = labels[teacher_key(r.image, r.face_box)]
        assert label.male_prob == 0.0 and label.age_probs.size == tool.N_AGES and label.age_probs[30] == 1.0

    # a second run reads every descriptor from the cache; weight 1: the probe's labels alone
    assert tool.main(args + ["--probe-weight", "1.0"], describe=describe) == 0
    assert describe.calls == 40
    labels = read_teacher_labels(out)
    male = [labels[teacher_key(r.image, r.face_box)].male_prob for r in records]
    assert gender_hits(male, records) > 0.8  # cross-fitted, yet the gender direction is learnt

    with pytest.raises(SystemExit, match="held-out"):
        tool.main([str(annotations / "utkface_val.csv"), "--output", str(out)], describe=describe)


def test_probe_inputs_are_unit_descriptors_and_the_set():
    records = [AnnotationRecord(image="a", source="aaf"), AnnotationRecord(image="b", source="utkface")]
    inputs = tool.probe_inputs(np.full((2, 2, 128), 3.0, np.float32), records)
    assert inputs.shape == (2, 2, 128 + len(tool.SOURCES))
    assert torch.allclose(inputs[..., :128].norm(dim=-1), torch.ones(2, 2))
    assert inputs[0, 0, 128:].tolist() == [0.0, 1.0] and inputs[1, 1, 128:].tolist() == [1.0, 0.0]
