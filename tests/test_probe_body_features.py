"""tools/research/probe_body_features.py: linear probes of age group and gender on a model's body features."""

import cv2
import numpy as np
import pytest
import torch
from conftest import tiny_config
from test_export import load_tool

from mivolo_lite.data.annotations import AnnotationRecord, write_annotations
from mivolo_lite.hub import save_model
from mivolo_lite.models import MiVOLOLiteImageProcessor, MiVOLOLiteModel


def body_csv(folder, name, n, seed):
    """Bodies whose brightness tells the age group (dark: 46-60, bright: 16-30) and whose colour
    tells the gender (red: M, blue: F): a probe of any usable feature reads both."""
    rng = np.random.default_rng(seed)
    records = []
    for i in range(n):
        old, male = i % 2 == 0, (i // 2) % 2 == 0
        image = rng.integers(0, 40, (64, 32, 3)).astype(np.uint8) + (40 if old else 180)
        image[..., 2 if male else 0] = 255  # BGR
        path = folder / f"{name}_{i}.png"
        cv2.imwrite(str(path), image)
        records.append(AnnotationRecord(image=str(path), body_box=(0, 0, 32, 64), age_group="46-60" if old else "16-30",
                                        gender="M" if male else "F", group_id=f"{name}{i}", source="peta"))
    return write_annotations(records, folder / f"{name}.csv")


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory):
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("model")
    save_model(MiVOLOLiteModel(tiny_config()).eval(), MiVOLOLiteImageProcessor(size=32), folder)
    return folder


def test_probes_read_what_the_features_hold_and_the_report_is_complete(tmp_path, tiny_model_dir, capsys):
    tool = load_tool("research/probe_body_features")
    train, val = body_csv(tmp_path, "train", 24, seed=0), body_csv(tmp_path, "val", 12, seed=1)
    report = tool.main([str(train), str(val), "--model", str(tiny_model_dir)])
    assert report["groups"] == ["16-30", "46-60"]
    assert (report["n_train"], report["n_val"]) == (24, 12)
    assert report["majority_group"] == pytest.approx(0.5)
    # an untrained model's stem still separates dark from bright and red from blue: the probes must find it
    assert report["stem"]["group"] == 1.0 and report["stem"]["gender"] == 1.0
    for name in ("heads", "stem", "encoder", "pooled"):
        assert 0.0 <= report[name]["group"] <= 1.0 and 0.0 <= report[name]["gender"] <= 1.0
    out = capsys.readouterr().out
    assert "linear probe on `pooled`" in out and "the model's heads" in out


def test_rows_without_bodies_are_refused(tmp_path, tiny_model_dir):
    tool = load_tool("research/probe_body_features")
    csv = write_annotations([AnnotationRecord(image=str(tmp_path / "x.png"), face_box=(0, 0, 8, 8), age=30)],
                            tmp_path / "faces.csv")
    with pytest.raises(ValueError, match="no row has a body box"):
        tool.main([str(csv), str(csv), "--model", str(tiny_model_dir)])
