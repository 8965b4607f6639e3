"""tools/research/quantize_int8.py: static int8 quantisation of the face graph, measured against fp32."""

import cv2
import numpy as np
import onnx
import pytest
import torch
from conftest import tiny_config
from test_export import load_tool

from mivolo_lite.data.annotations import AnnotationRecord, write_annotations
from mivolo_lite.hub import save_model
from mivolo_lite.models import MiVOLOLiteImageProcessor, MiVOLOLiteModel

pytest.importorskip("onnxruntime")


def face_csv(folder, name, n, seed):
    rng = np.random.default_rng(seed)
    records = []
    for i in range(n):
        path = folder / f"{name}_{i}.png"
        cv2.imwrite(str(path), rng.integers(0, 255, (48, 48, 3)).astype(np.uint8))
        records.append(AnnotationRecord(image=str(path), face_box=(4, 4, 44, 44), age=float(10 + 5 * i),
                                        gender="M" if i % 2 else "F", source="utkface"))
    return write_annotations(records, folder / f"{name}.csv")


def test_the_int8_graph_is_quantised_and_both_graphs_are_measured(tmp_path):
    tool = load_tool("research/quantize_int8")
    torch.manual_seed(0)
    save_model(MiVOLOLiteModel(tiny_config()).eval(), MiVOLOLiteImageProcessor(size=32), tmp_path / "model")
    calib, val = face_csv(tmp_path, "calib", 16, 0), face_csv(tmp_path, "val", 10, 1)
    out = tmp_path / "graphs"
    reports = tool.main(["--model", str(tmp_path / "model"), "--calib-csv", str(calib), "--val-csv", str(val),
                         "--calib-size", "16", "--seconds", "0.1", "-o", str(out)])
    ops = {node.op_type for node in onnx.load(str(out / "face_int8.onnx")).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    assert "QuantizeLinear" not in {node.op_type for node in onnx.load(str(out / "face_fp32.onnx")).graph.node}
    for name in ("fp32", "int8"):
        r = reports[name]
        assert np.isfinite(r["mae"]) and 0 <= r["gender_accuracy"] <= 1
        assert r["ms_per_face"][1] > 0 and r["ms_per_face"][8] > 0
    # an untrained model's ages are near-constant: the quantised graph must read the same faces alike
    assert abs(reports["int8"]["mae"] - reports["fp32"]["mae"]) < 5


def test_a_csv_without_faces_is_refused(tmp_path):
    tool = load_tool("research/quantize_int8")
    torch.manual_seed(0)
    save_model(MiVOLOLiteModel(tiny_config()).eval(), MiVOLOLiteImageProcessor(size=32), tmp_path / "model")
    csv = write_annotations([AnnotationRecord(image=str(tmp_path / "x.png"), body_box=(0, 0, 8, 8), age=30)],
                            tmp_path / "bodies.csv")
    with pytest.raises(ValueError, match="no row has a face box"):
        tool.main(["--model", str(tmp_path / "model"), "--calib-csv", str(csv), "--val-csv", str(csv)])
