import math

import numpy as np
import pytest

from mivolo_lite.data.annotations import AnnotationRecord, parse_age_group, read_annotations, write_annotations
from mivolo_lite.data.converters import split_of
from mivolo_lite.data.dataset import AgeDataset, age_balance_weights
from mivolo_lite.models import MiVOLOLiteImageProcessor


def test_annotation_round_trip(tmp_path):
    recs = [AnnotationRecord(image=str(tmp_path / "a.jpg"), face_box=(1, 2, 30, 40), age=33, gender="F", source="x"),
            AnnotationRecord(image=str(tmp_path / "b.jpg"), body_box=(0, 0, 50, 100), age_group="61-", gender=None)]
    path = write_annotations(recs, tmp_path / "ann" / "x.csv")
    back = read_annotations(path)
    assert back[0].face_box == (1, 2, 30, 40) and back[0].age_interval == (33, 33) and back[0].gender_label == 0
    assert back[1].face_box is None and back[1].age_interval == (61, 100) and back[1].gender_label == -1
    assert back[0].image == str(tmp_path / "ann" / ".." / "a.jpg") or back[0].image.endswith("a.jpg")
    assert parse_age_group("31-45") == (31, 45)
    with pytest.raises(ValueError):
        parse_age_group("old")


def test_splits_are_fixed_and_never_split_a_person(annotations):
    peta = {s: read_annotations(annotations / f"peta_{s}.csv") for s in ("train", "val", "calib")}
    ids = {s: {r.group_id for r in recs} for s, recs in peta.items()}
    assert not ids["train"] & ids["val"] and not ids["train"] & ids["calib"] and not ids["val"] & ids["calib"]
    total = sum(len(v) for v in peta.values())
    assert 0.07 < len(peta["val"]) / total < 0.13
    assert split_of("same-key") == split_of("same-key")
    utk_val = read_annotations(annotations / "utkface_val.csv")
    assert all(r.face_box == (0, 0, 200, 200) and r.body_box is None for r in utk_val[:50])
    aaf = read_annotations(annotations / "aaf_val.csv")
    assert all(r.face_box is not None and r.body_box is not None for r in aaf)


def test_dataset_items_and_augmentation(annotations):
    recs = read_annotations(annotations / "aaf_val.csv")[:4] + read_annotations(annotations / "peta_val.csv")[:4]
    proc = MiVOLOLiteImageProcessor(size=64)
    train = AgeDataset(recs, proc, train=True)
    item = train[0]
    assert item["face_pixel_values"].shape == (3, 64, 64) and item["face_mask"] and item["body_mask"]
    assert not train[5]["face_mask"] and train[5]["body_mask"] and train[5]["age_low"] < train[5]["age_high"]
    evals = AgeDataset(recs, proc, train=False)
    a, b = evals[0]["face_pixel_values"], evals[0]["face_pixel_values"]
    assert (a == b).all()  # evaluation is deterministic
    assert not (train[0]["face_pixel_values"] == train[0]["face_pixel_values"]).all()  # training is augmented


def test_teacher_labels_round_trip_and_reach_the_right_samples(annotations, tmp_path):
    import csv

    from mivolo_lite.data.teacher import TEACHER_COLUMNS, format_teacher_row, read_teacher_labels

    recs = read_annotations(annotations / "aaf_val.csv")[:3] + read_annotations(annotations / "peta_val.csv")[:1]
    probs = np.zeros(120)
    probs[[25, 110]] = 0.75, 0.25  # 110 lies past the model's grid: counted in its last bin
    path = tmp_path / "teacher.csv"
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(TEACHER_COLUMNS)
        writer.writerow(format_teacher_row(recs[0].image, recs[0].face_box, 0.8, probs))
    labels = read_teacher_labels(path)
    ds = AgeDataset(recs, MiVOLOLiteImageProcessor(size=32), train=True, teacher=labels, age_range=(0, 100))
    first, second, body = ds[0], ds[1], ds[3]
    assert first["teacher_age_probs"].shape == (101,)
    assert first["teacher_age_probs"][25] == pytest.approx(0.75) and first["teacher_age_probs"][100] == pytest.approx(0.25)
    assert first["teacher_male"] == pytest.approx(0.8)
    assert second["teacher_age_probs"].sum() == 0 and math.isnan(second["teacher_male"])  # no label: no teacher
    assert body["teacher_age_probs"].sum() == 0  # a body without a face box
    (tmp_path / "bad.csv").write_text("image,face_box\nx.jpg,0 0 1 1\n")
    with pytest.raises(ValueError, match="bad.csv"):
        read_teacher_labels(tmp_path / "bad.csv")


def test_corrupt_training_image_is_skipped_and_counted(tmp_path):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"garbage")
    ds = AgeDataset([AnnotationRecord(image=str(bad), face_box=(0, 0, 10, 10), age=30)],
                    MiVOLOLiteImageProcessor(size=32), train=True)
    item = ds[0]
    assert ds.bad_indices == {0} and not item["face_mask"] and math.isnan(item["age_low"]) and item["sample_weight"] == 0


def test_age_balance_weights_favour_rare_ages():
    recs = [AnnotationRecord(image="x", age=25, source="s")] * 90 + [AnnotationRecord(image="x", age=80, source="s")] * 10
    w = age_balance_weights(recs)
    assert w[-1] > 2 * w[0] and np.mean(w) == pytest.approx(1.0)


def test_source_weights_scale_one_set_on_top_of_age_balancing():
    recs = ([AnnotationRecord(image="x", age=25, source="faces")] * 9 + [AnnotationRecord(image="x", age=70, source="faces")]
            + [AnnotationRecord(image="x", age_group="16-30", source="peta")] * 4)
    processor = MiVOLOLiteImageProcessor(size=32)
    plain = AgeDataset(recs, processor, train=True).weights
    scaled = AgeDataset(recs, processor, train=True, source_weights={"peta": 2.0}).weights
    assert scaled[:10] == plain[:10] and scaled[10:] == [2 * w for w in plain[10:]]
    assert plain[9] > plain[0]  # the age balancing is kept underneath
    assert AgeDataset(recs, processor, train=False, source_weights={"peta": 2.0}).weights[10:] == [2.0] * 4


def test_person_balancing_counts_people_not_frames():
    # pedestrian A in 4 frames, B and C once each (PETA-like), and faces without ids (one person each)
    recs = ([AnnotationRecord(image=f"a{i}", age_group="31-45", group_id="A", source="peta") for i in range(4)]
            + [AnnotationRecord(image="b", age_group="31-45", group_id="B", source="peta"),
               AnnotationRecord(image="c", age_group="31-45", group_id="C", source="peta")]
            + [AnnotationRecord(image=f"f{i}", age=30, source="faces") for i in range(3)])
    processor = MiVOLOLiteImageProcessor(size=32)
    plain = AgeDataset(recs, processor, train=True).weights
    w = AgeDataset(recs, processor, train=True, person_balance_power=1.0).weights
    assert sum(w[:4]) == pytest.approx(w[4]) == pytest.approx(w[5])  # A's frames together weigh one person
    assert np.mean(w[:6]) == pytest.approx(np.mean(plain[:6]))  # the set's share of the loss is unchanged
    assert w[6:] == pytest.approx(plain[6:])  # sets without repeated people are untouched
    half = AgeDataset(recs, processor, train=True, person_balance_power=0.5).weights
    assert w[0] < half[0] < plain[0]
    assert AgeDataset(recs, processor, train=False, person_balance_power=1.0).weights == [1.0] * 9


def test_photo_degradations_are_off_by_default_and_change_crops_when_on(annotations):
    """Noise, blur and JPEG augmentations: off by default (the other augmentations draw exactly
    what they drew before them), deterministic per (seed, epoch, index), and they do degrade."""
    from mivolo_lite.data.dataset import AugmentConfig
    from mivolo_lite.training.trainer import augment_config

    records = read_annotations(annotations / "utkface_train.csv", limit=4)
    processor = MiVOLOLiteImageProcessor(size=64)
    plain = AgeDataset(records, processor, train=True, seed=5)
    explicit_off = AgeDataset(records, processor, train=True, seed=5,
                              augment=AugmentConfig(noise_prob=0.0, blur_prob=0.0, jpeg_prob=0.0))
    for i in range(4):
        assert np.array_equal(plain[(i, 0)]["face_pixel_values"], explicit_off[(i, 0)]["face_pixel_values"])

    noisy = AgeDataset(records, processor, train=True, seed=5,
                       augment=augment_config({"noise_prob": 1.0, "noise_sigma": [12, 14]}))
    a, b = noisy[(0, 0)]["face_pixel_values"], noisy[(0, 0)]["face_pixel_values"]
    assert np.array_equal(a, b)  # a function of (seed, epoch, index)
    # the same crop as without noise (geometry and colours are drawn first), plus 12-14 grey levels
    # of noise: ~13 / 255 / 0.225 (the normalisation's std) in the model's units
    added = (a - plain[(0, 0)]["face_pixel_values"]).std().item()
    assert 0.15 < added < 0.3
    jpeg = AgeDataset(records, processor, train=True, seed=5, augment=augment_config({"jpeg_prob": 1.0}))
    assert not np.array_equal(jpeg[(0, 0)]["face_pixel_values"], plain[(0, 0)]["face_pixel_values"])
    with pytest.raises(ValueError, match="noise_probability"):
        augment_config({"noise_probability": 0.5})


def test_evenly_spaced_rows_cover_a_sorted_file():
    from mivolo_lite.data.annotations import evenly_spaced

    rows = list(range(100))  # e.g. a label file sorted by age
    assert evenly_spaced(rows, 4) == [0, 25, 50, 75]
    assert evenly_spaced(rows, None) == rows and evenly_spaced(rows, 500) == rows
