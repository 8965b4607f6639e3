"""int8 graphs (``mivolo-lite quantize``, ``backend="onnx-int8"``): made from a model folder and
real crops, refused when made from other weights, found in a folder or in a pre-filled HF cache,
with age intervals refitted on their own ages; the shipped default model's graphs are its own and
read real faces close to fp32."""

import json
import os
import subprocess
import sys

import cv2
import numpy as np
import onnx
import pytest
import torch
from conftest import tiny_config
from test_export import _real_crops

from mivolo_lite import AgePredictor
from mivolo_lite.cli import BACKEND_CHOICES, main
from mivolo_lite.data.annotations import AnnotationRecord, write_annotations
from mivolo_lite.calibration import AgeCalibration
from mivolo_lite.export import (BACKENDS, INT8_CALIBRATION_FILE, INT8_GRAPH_SETS, INT8_WEIGHTS_KEY, OnnxEstimator,
                                int8_graph_name)
from mivolo_lite.hub import add_to_hf_cache, save_model
from mivolo_lite.models import MiVOLOLiteImageProcessor, MiVOLOLiteModel

pytest.importorskip("onnxruntime")


@pytest.fixture(autouse=True)
def onnx_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MIVOLO_LITE_CACHE", str(tmp_path / "cache"))


def person_csv(folder, n, seed):
    """Rows of random photos with a face box and a body box (every third without a face, every
    fifth without a body): every graph has crops to calibrate on."""
    rng = np.random.default_rng(seed)
    records = []
    for i in range(n):
        path = folder / f"photo_{seed}_{i}.png"
        cv2.imwrite(str(path), rng.integers(0, 255, (96, 64, 3)).astype(np.uint8))
        records.append(AnnotationRecord(image=str(path), face_box=None if i % 3 == 0 else (16, 4, 48, 36),
                                        body_box=None if i % 5 == 0 else (0, 0, 64, 96), age=float(10 + 3 * i),
                                        gender="M" if i % 2 else "F", source="aaf"))
    return write_annotations(records, folder / f"people_{seed}.csv")


@pytest.fixture
def tiny_folder(tmp_path):
    torch.manual_seed(0)
    folder = tmp_path / "model"
    save_model(MiVOLOLiteModel(tiny_config()).eval(), MiVOLOLiteImageProcessor(size=32), folder)
    return folder


def quantize(folder, csv):
    assert main(["quantize", str(csv), "--model", str(folder), "--crops", "12"]) == 0


def test_quantize_writes_int8_graphs_that_the_predictor_runs_for_each_set_of_inputs(tiny_folder, tmp_path, capsys):
    quantize(tiny_folder, person_csv(tmp_path, 30, 0))
    assert "backend='onnx-int8'" in capsys.readouterr().out
    assert not (tiny_folder / "int8_body.onnx").exists()  # the body branch stays fp32: no body graph
    for branches in INT8_GRAPH_SETS:
        graph = onnx.load(str(tiny_folder / int8_graph_name(branches)))
        assert {"QuantizeLinear", "DequantizeLinear"} <= {node.op_type for node in graph.graph.node}
        int8_weights = [init.name for init in graph.graph.initializer if init.data_type == onnx.TensorProto.INT8]
        assert any("face_encoder" in name for name in int8_weights)  # the face trunk's weights stored as int8
        assert not any("body_encoder" in name for name in int8_weights)  # the body branch's kept in fp32
        assert INT8_WEIGHTS_KEY in {p.key for p in graph.metadata_props}

    int8 = AgePredictor.from_pretrained(str(tiny_folder), backend="onnx-int8", flip_tta=True)
    fp32 = AgePredictor.from_pretrained(str(tiny_folder), backend="onnx", flip_tta=True)
    assert isinstance(int8.estimator, OnnxEstimator) and int8.estimator.graphs is not None
    rng = np.random.default_rng(1)
    faces = [rng.integers(0, 255, (40, 40, 3), dtype=np.uint8) for _ in range(3)]
    bodies = [rng.integers(0, 255, (80, 40, 3), dtype=np.uint8) for _ in range(3)]
    for kwargs, branches in (({"faces": faces}, ("face",)), ({"bodies": bodies}, ("body",)),
                             ({"faces": [faces[0], None], "bodies": [bodies[0], bodies[1]]}, ("face", "body"))):
        got, want = int8.predict_crops(**kwargs), fp32.predict_crops(**kwargs)
        assert branches in int8.estimator.sessions  # the graph of the inputs present ran: int8, or fp32 for bodies
        graph = int8.estimator.sessions[branches]._model_path
        assert graph == str(tiny_folder / int8_graph_name(branches)) if branches in INT8_GRAPH_SETS else \
            graph.startswith(os.environ["MIVOLO_LITE_CACHE"])  # the exported fp32 graph
        for a, b in zip(got, want):
            assert np.isfinite([a.age, a.age_std, a.gender_score]).all()
            # an untrained model answers nearly the same for every crop: int8 must stay near fp32
            assert abs(a.age - b.age) < 3 and abs(a.gender_score - b.gender_score) < 0.15


def test_quantize_refits_the_age_intervals_on_the_int8_graphs_own_ages(tiny_folder, tmp_path, capsys):
    csv = person_csv(tmp_path, 30, 0)  # 28 exactly-aged people with a crop (20 at least are needed)
    quantize(tiny_folder, csv)
    assert "age intervals refitted on the int8 graphs' ages of 28 people" in capsys.readouterr().out
    saved = json.loads((tiny_folder / INT8_CALIBRATION_FILE).read_text())
    int8 = AgePredictor.from_pretrained(str(tiny_folder), backend="onnx-int8")
    fp32 = AgePredictor.from_pretrained(str(tiny_folder), backend="onnx")
    assert int8.is_calibrated and int8.calibration.fitted_on == f"{csv.name} (int8 graphs)"
    assert not fp32.is_calibrated  # the tiny model was never calibrated: fp32 keeps the Gaussian stand-in
    face = np.random.default_rng(2).integers(0, 255, (40, 40, 3), dtype=np.uint8)
    person = int8.predict_crops(faces=[face])[0]
    low, high = AgeCalibration.from_dict(saved["age_calibration"]).interval(person.age, person.age_std, 0.9)
    assert person.age_interval == (float(low[0]), float(high[0]))  # the int8 table makes the interval
    assert person.check_age(18).decision in ("over", "under", "uncertain")
    assert main(["eval", str(csv), "--model", str(tiny_folder), "--backend", "onnx-int8", "-o", str(tmp_path / "r")]) == 0
    assert f"intervals: calibrated, {csv.name} (int8 graphs)" in (tmp_path / "r" / "report.md").read_text()


def test_int8_graphs_without_their_own_calibration_use_the_fp32_table_and_say_so(tiny_folder, tmp_path, capsys):
    quantize(tiny_folder, person_csv(tmp_path, 15, 0))  # too few exact ages to refit the intervals
    assert "int8 age intervals not refitted" in capsys.readouterr().err
    assert not (tiny_folder / INT8_CALIBRATION_FILE).exists()
    with pytest.warns(UserWarning, match=f"has no {INT8_CALIBRATION_FILE}"):
        predictor = AgePredictor.from_pretrained(str(tiny_folder), backend="onnx-int8")
    assert predictor.estimator.age_calibration is None and not predictor.is_calibrated

    quantize(tiny_folder, person_csv(tmp_path, 30, 1))
    sidecar = tiny_folder / INT8_CALIBRATION_FILE
    saved = json.loads(sidecar.read_text())
    sidecar.write_text(json.dumps({**saved, INT8_WEIGHTS_KEY: "another model"}))  # e.g. copied from elsewhere
    with pytest.warns(UserWarning, match="stale or empty"):
        predictor = AgePredictor.from_pretrained(str(tiny_folder), backend="onnx-int8")
    assert not predictor.is_calibrated


def test_graphs_made_from_other_weights_are_refused(tiny_folder, tmp_path):
    quantize(tiny_folder, person_csv(tmp_path, 30, 0))
    model, processor = MiVOLOLiteModel.from_pretrained(tiny_folder), MiVOLOLiteImageProcessor.from_pretrained(tiny_folder)
    with torch.no_grad():
        next(model.parameters()).add_(0.01)  # "fine-tuned" into the same folder; the old graphs stay
    save_model(model, processor, tiny_folder)
    with pytest.raises(ValueError, match="other weights") as error:
        AgePredictor.from_pretrained(str(tiny_folder), backend="onnx-int8")
    assert str(tiny_folder) in str(error.value) and "mivolo-lite quantize" in str(error.value)
    AgePredictor.from_pretrained(str(tiny_folder), backend="onnx")  # fp32 is unaffected


def test_a_model_without_int8_graphs_says_how_to_make_them(tiny_folder):
    with pytest.raises(FileNotFoundError, match="mivolo-lite quantize") as error:
        AgePredictor.from_pretrained(str(tiny_folder), backend="onnx-int8")
    assert str(tiny_folder) in str(error.value) and int8_graph_name(("face",)) in str(error.value)


def test_quantize_needs_a_model_folder(tmp_path, capsys):
    assert main(["quantize", str(person_csv(tmp_path, 3, 0)), "--model", "mobile"]) == 2
    assert "saved model folder" in capsys.readouterr().err


OFFLINE_SCRIPT = """
import sys
import numpy as np
from mivolo_lite import AgePredictor
p = AgePredictor.from_pretrained(sys.argv[1], backend="onnx-int8")
r = p.predict_crops(faces=[np.full((40, 40, 3), 128, np.uint8)])
print("GRAPHS", sorted(str(g) for g in p.estimator.graphs.values())[0])
print("INTERVALS", p.calibration.fitted_on)
print("AGE", r[0].age)
"""


def test_int8_graphs_load_from_a_prefilled_hf_cache_offline(tiny_folder, tmp_path):
    quantize(tiny_folder, person_csv(tmp_path, 30, 0))
    cache = tmp_path / "hub"
    add_to_hf_cache(tiny_folder, "someone/int8-test", cache)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(cache), "HF_HOME": str(tmp_path / "hf_home")}
    proc = subprocess.run([sys.executable, "-c", OFFLINE_SCRIPT, "someone/int8-test"], env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert str(cache / "models--someone--int8-test") in proc.stdout
    assert "(int8 graphs)" in proc.stdout  # int8_calibration.json came from the cache too
    assert np.isfinite(float(proc.stdout.split("AGE")[1]))


def test_the_command_line_offers_every_backend():
    assert set(BACKEND_CHOICES) == set(BACKENDS)


def test_compare_runs_one_model_on_two_backends(tiny_folder, tmp_path):
    from mivolo_lite.evaluation.comparison import compare_models

    csv = person_csv(tmp_path, 30, 0)
    quantize(tiny_folder, csv)
    results, report = compare_models(str(tiny_folder), str(tiny_folder), [csv], backends=("onnx", "onnx-int8"),
                                     n_boot=50)
    assert "(onnx-int8)" in report and "(onnx)" in report
    mae = results[csv.stem]["figures"]["mae"]["images"]
    assert np.isfinite(mae["a"]) and abs(mae["b"] - mae["a"]) < 3


def test_the_shipped_default_models_int8_graphs_are_its_own_and_read_real_faces_like_fp32(annotations):
    """Guards the shipped folder: retrained or recalibrated weights without new graphs fail here."""
    faces, bodies = _real_crops(annotations)
    int8 = AgePredictor.from_pretrained(backend="onnx-int8")
    fp32 = AgePredictor.from_pretrained(backend="onnx")
    got = int8.predict_crops(faces=faces, bodies=bodies)
    want = fp32.predict_crops(faces=faces, bodies=bodies)
    differences = np.abs([a.age - b.age for a, b in zip(got, want)])
    # on 400 UTKFace validation faces: median 0.60 years, mean 1.01, 95th percentile 3.28, genders 99.25 % same
    assert np.median(differences) < 1.5 and differences.mean() < 2.5, differences
    assert sum(a.gender == b.gender for a, b in zip(got, want)) >= len(got) - 2


def test_eval_measures_the_int8_graphs_intervals_included(tiny_folder, tmp_path):
    csv = person_csv(tmp_path, 30, 0)
    quantize(tiny_folder, csv)
    assert main(["eval", str(csv), "--model", str(tiny_folder), "--backend", "onnx-int8", "-o", str(tmp_path / "r8")]) == 0
    assert main(["eval", str(csv), "--model", str(tiny_folder), "-o", str(tmp_path / "r32")]) == 0
    int8_report = (tmp_path / "r8" / "report.md").read_text()
    assert "backend: onnx-int8" in int8_report and "backend:" not in (tmp_path / "r32" / "report.md").read_text()
    import json

    int8, fp32 = (json.loads((tmp_path / name / "metrics.json").read_text())[csv.stem] for name in ("r8", "r32"))
    assert "coverage" in int8["intervals"]
    assert abs(int8["overall"]["mae"] - fp32["overall"]["mae"]) < 3
