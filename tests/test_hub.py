import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import random_image, tiny_config


@pytest.fixture
def saved_model(tmp_path):
    from mivolo_lite.models import MiVOLOLiteImageProcessor, MiVOLOLiteModel

    torch.manual_seed(0)
    model = MiVOLOLiteModel(tiny_config()).eval()
    processor = MiVOLOLiteImageProcessor(size=32)
    folder = tmp_path / "model"
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return model, processor, folder


def test_round_trip_through_a_local_folder_gives_identical_outputs(saved_model):
    from transformers import AutoConfig, AutoImageProcessor, AutoModel

    model, processor, folder = saved_model
    assert (folder / "model.safetensors").exists() and (folder / "preprocessor_config.json").exists()
    assert json.loads((folder / "config.json").read_text())["model_type"] == "mivolo_lite"
    loaded = AutoModel.from_pretrained(folder).eval()  # no trust_remote_code needed
    loaded_proc = AutoImageProcessor.from_pretrained(folder)
    assert type(loaded).__name__ == "MiVOLOLiteModel" and AutoConfig.from_pretrained(folder).model_type == "mivolo_lite"
    faces = [random_image(seed=1), None, random_image(50, 80, seed=2)]
    bodies = [random_image(200, 90, seed=3), random_image(seed=4), None]
    a, b = processor(faces=faces, bodies=bodies), loaded_proc(faces=faces, bodies=bodies)
    for k in a:
        assert torch.equal(a[k], b[k])
    with torch.no_grad():
        assert torch.equal(model(**a).age_logits, loaded(**b).age_logits)


SCRIPT = """
import sys, torch
from mivolo_lite import AgePredictor
from mivolo_lite.hub import ModelNotFoundError
try:
    p = AgePredictor.from_pretrained(sys.argv[1])
except ModelNotFoundError as e:
    print("NOTFOUND", e); sys.exit(3)
r = p.predict_crops(faces=[torch.zeros(40, 40, 3, dtype=torch.uint8).numpy()])
print("AGE", r[0].age)
"""


def _run_offline(cache: Path, name: str):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(cache), "HF_HOME": str(cache.parent / "hf_home"),
           "TRANSFORMERS_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-c", SCRIPT, name], env=env, capture_output=True, text=True, timeout=300)


def test_hub_repo_id_resolves_from_prefilled_cache_offline(saved_model, tmp_path):
    model, processor, folder = saved_model
    cache = tmp_path / "hub"
    from mivolo_lite.hub import add_to_hf_cache

    snapshot = add_to_hf_cache(folder, "someone/mivolo-lite-test", cache)
    assert snapshot.parent.parent == cache / "models--someone--mivolo-lite-test"
    proc = _run_offline(cache, "someone/mivolo-lite-test")
    assert proc.returncode == 0, proc.stderr[-2000:]
    age = float(proc.stdout.split("AGE")[1])
    expected = model.predict(**processor(faces=[np.zeros((40, 40, 3), np.uint8)])).age.item()
    assert abs(age - expected) < 1e-4


def test_missing_repo_gives_a_clear_error(tmp_path):
    proc = _run_offline(tmp_path / "emptycache", "nobody/does-not-exist")
    assert proc.returncode == 3, proc.stderr[-2000:]
    assert "nobody/does-not-exist" in proc.stdout and "cache" in proc.stdout


UNREACHABLE_SCRIPT = """
import sys, time
from mivolo_lite.detection.yolo_detector import resolve_weights
from mivolo_lite.hub import ModelNotFoundError, load_model_and_processor
for name in sys.argv[1:]:
    start = time.monotonic()
    try:
        if name.startswith("yolo:"):
            resolve_weights(name[5:])
        else:
            load_model_and_processor(name)
        print("LOADED", name, end=" ")
    except (ModelNotFoundError, FileNotFoundError) as e:
        print("NOTFOUND", e, end=" ")
    print(f"SECONDS {time.monotonic() - start:.1f}")
"""


def test_hub_ids_fail_fast_when_the_hub_cannot_be_reached(saved_model, tmp_path):
    """No HF_HUB_OFFLINE, but the Hub's host refuses connections (as on a machine without
    network): a model id and a YOLO id that are not cached fail at once, saying so (they took
    about 25 s of huggingface_hub retries, a warning each); a cached model id still loads."""
    import socket

    _, _, folder = saved_model
    cache = tmp_path / "hub"
    from mivolo_lite.hub import add_to_hf_cache

    add_to_hf_cache(folder, "someone/cached-model", cache)
    with socket.socket() as s:  # a port nothing listens on: connections are refused
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    env.update(HF_ENDPOINT=f"http://127.0.0.1:{port}", HF_HUB_CACHE=str(cache), HF_HOME=str(tmp_path / "hf_home"),
               NO_PROXY="127.0.0.1", no_proxy="127.0.0.1")
    proc = subprocess.run([sys.executable, "-c", UNREACHABLE_SCRIPT, "someone/cached-model", "nobody/not-cached",
                           "yolo:nobody/not-cached/face.pt"], env=env, capture_output=True, text=True, timeout=300)
    lines = proc.stdout.splitlines()
    assert len(lines) == 3, proc.stdout + proc.stderr[-3000:]
    assert lines[0].startswith("LOADED someone/cached-model"), lines[0]
    for line, name in zip(lines[1:], ("nobody/not-cached", "nobody/not-cached/face.pt")):
        assert line.startswith("NOTFOUND") and name in line and "cannot be reached" in line, line
        assert float(line.split("SECONDS")[1]) < 5, line
    assert "Retrying" not in proc.stderr, proc.stderr[-2000:]


def test_offline_mode_never_probes_the_network(monkeypatch):
    import socket

    from mivolo_lite.hub import hub_unreachable_reason

    def no_network(*args, **kwargs):
        raise AssertionError("a connection was attempted in offline mode")

    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert hub_unreachable_reason() == "HF_HUB_OFFLINE is set"


def test_pickle_only_checkpoint_is_refused(tmp_path, saved_model):
    from mivolo_lite.hub import ModelNotFoundError, load_model_and_processor

    _, _, folder = saved_model
    bad = tmp_path / "pickled"
    bad.mkdir()
    (bad / "config.json").write_text((folder / "config.json").read_text())
    torch.save({"x": 1}, bad / "pytorch_model.bin")
    with pytest.raises(ModelNotFoundError, match="safetensors only"):
        load_model_and_processor(bad)


def test_push_to_hub_uploads_model_and_processor_files(saved_model, monkeypatch):
    """push_to_hub is transformers' own; check it sends the safetensors weights, config and
    processor config (the network call itself is replaced: no Hub is reachable here)."""
    import huggingface_hub

    model, processor, _ = saved_model
    sent = []

    def fake_create_commit(self, repo_id, operations, **kwargs):
        sent.extend(op.path_in_repo for op in operations)
        return huggingface_hub.CommitInfo(commit_url=f"https://hf.co/{repo_id}/commit/0", commit_message="",
                                          commit_description="", oid="0" * 40)

    monkeypatch.setattr(huggingface_hub.HfApi, "create_repo", lambda self, *a, **k: huggingface_hub.RepoUrl(
        "https://huggingface.co/me/m"))
    monkeypatch.setattr(huggingface_hub.HfApi, "create_commit", fake_create_commit)
    try:
        model.push_to_hub("me/m", token="hf_fake")
        processor.push_to_hub("me/m", token="hf_fake")
    except Exception as e:  # pragma: no cover - shows what transformers needed beyond these two calls
        pytest.fail(f"push_to_hub failed offline with patched Hub API: {type(e).__name__}: {e}")
    assert "model.safetensors" in sent and "config.json" in sent and "preprocessor_config.json" in sent


def test_float16_weights_halve_the_file_and_load_as_float32(saved_model, tmp_path):
    from transformers import AutoModel

    from mivolo_lite.hub import load_model_and_processor, save_model

    model, processor, folder = saved_model
    half = tmp_path / "half"
    save_model(model, processor, half, weights_dtype="float16")
    size, full_size = (half / "model.safetensors").stat().st_size, (folder / "model.safetensors").stat().st_size
    assert size < 0.6 * full_size
    from safetensors import safe_open

    with safe_open(half / "model.safetensors", "pt") as f:
        assert {f.get_tensor(k).dtype for k in f.keys()} <= {torch.float16, torch.int64}
    assert json.loads((half / "config.json").read_text())["dtype"] == "float32"
    faces, bodies = [random_image(seed=1), None], [random_image(200, 90, seed=3), random_image(seed=4)]
    inputs = processor(faces=faces, bodies=bodies)
    for loaded in (load_model_and_processor(half)[0], AutoModel.from_pretrained(half)):
        loaded.eval()
        assert all(p.dtype == torch.float32 for p in loaded.parameters())
        with torch.no_grad():
            expected, got = model.predict(**inputs), loaded.predict(**inputs)
        assert torch.allclose(got.age, expected.age, atol=0.05)
        assert torch.allclose(got.gender_prob, expected.gender_prob, atol=2e-3)
    with pytest.raises(ValueError, match="weights_dtype"):
        save_model(model, processor, tmp_path / "bad", weights_dtype="int8")


def test_a_model_saved_in_half_precision_is_built_in_float32(saved_model, tmp_path):
    # model.half().save_pretrained() writes dtype float16 into the config, which transformers
    # would follow; our loader builds fp32 (the CPU path and autocast expect fp32 parameters)
    from mivolo_lite.hub import load_model_and_processor

    model, processor, _ = saved_model
    folder = tmp_path / "halved"
    model.half().save_pretrained(folder)
    processor.save_pretrained(folder)
    loaded, _ = load_model_and_processor(folder)
    assert all(p.dtype == torch.float32 for p in loaded.parameters())


def test_calibration_is_fitted_on_the_weights_as_stored(saved_model, tmp_path, data_root):
    # the calibration table must hold for the saved float16 weights, not for the fp32 ones before
    from mivolo_lite.calibration import AgeCalibration
    from mivolo_lite.data.annotations import AnnotationRecord, write_annotations
    from mivolo_lite.evaluation.report import calibrate_model, exact_age_predictions
    from mivolo_lite.hub import load_model_and_processor

    model, processor, folder = saved_model
    images = sorted((data_root / "utkface" / "images").glob("*.jpg"))[:60]
    csv_path = write_annotations([AnnotationRecord(image=str(p), face_box=(0, 0, 200, 200), age=float(10 + i))
                                  for i, p in enumerate(images)], tmp_path / "calib.csv")
    out = tmp_path / "calibrated"
    table = calibrate_model(str(folder), [csv_path], output=out, weights_dtype="float16")
    saved = load_model_and_processor(out)
    (ages, stds, truth), = exact_age_predictions(saved, [csv_path])
    (ages_fp32, _, _), = exact_age_predictions(load_model_and_processor(folder), [csv_path])
    assert not np.array_equal(ages, ages_fp32) and np.allclose(ages, ages_fp32, atol=0.05)
    refit = AgeCalibration.fit(ages, stds, truth, min_age=saved[0].config.min_age, max_age=saved[0].config.max_age,
                               fitted_on="calib.csv", age_estimate=saved[0].config.age_estimate)
    assert refit.to_dict() == table


def test_calibration_drops_the_training_only_descriptor_head(tmp_path, data_root):
    from conftest import tiny_config
    from mivolo_lite.data.annotations import AnnotationRecord, write_annotations
    from mivolo_lite.evaluation.report import calibrate_model, exact_age_predictions
    from mivolo_lite.hub import load_model_and_processor, save_model
    from mivolo_lite.models import MiVOLOLiteImageProcessor, MiVOLOLiteModel

    torch.manual_seed(0)
    model = MiVOLOLiteModel(tiny_config(face_embedding_dim=8)).eval()
    folder = tmp_path / "trained"
    save_model(model, MiVOLOLiteImageProcessor(size=32), folder)
    images = sorted((data_root / "utkface" / "images").glob("*.jpg"))[:40]
    csv_path = write_annotations([AnnotationRecord(image=str(p), face_box=(0, 0, 200, 200), age=float(10 + i))
                                  for i, p in enumerate(images)], tmp_path / "calib.csv")
    calibrate_model(str(folder), [csv_path], output=tmp_path / "shipped")
    shipped = load_model_and_processor(tmp_path / "shipped")
    assert shipped[0].face_embedding_head is None and shipped[0].config.face_embedding_dim == 0
    assert not any(k.startswith("face_embedding_head") for k in shipped[0].state_dict())
    (ages, _, _), = exact_age_predictions(shipped, [csv_path])
    (before, _, _), = exact_age_predictions(load_model_and_processor(folder), [csv_path])
    assert np.allclose(ages, before, atol=1e-5)


def test_the_model_a_predictor_holds_saves_into_a_folder_that_loads_and_predicts_the_same(saved_model, tmp_path):
    """predictor.model used to be fused in place (BatchNorms gone): saved, it loaded with fresh
    BatchNorms and gave other (or NaN) ages. Now both loaders give back the same ages."""
    from transformers import AutoModel

    from mivolo_lite import AgePredictor
    from mivolo_lite.models import MiVOLOLiteModel

    _, processor, folder = saved_model
    torch.manual_seed(0)
    model = MiVOLOLiteModel(tiny_config())
    model.train()
    with torch.no_grad():  # move the BatchNorm running statistics away from their defaults
        model(torch.randn(4, 3, 32, 32) * 3 + 1, torch.randn(4, 3, 32, 32) * 3 + 1)
    predictor = AgePredictor(model.eval(), processor, backend="torch")
    faces, bodies = [random_image(seed=1), random_image(seed=5)], [random_image(200, 90, seed=3), None]
    ages = [p.age for p in predictor.predict_crops(faces, bodies)]
    out = tmp_path / "resaved"
    predictor.model.save_pretrained(out)
    predictor.processor.save_pretrained(out)
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in AutoModel.from_pretrained(out).modules())
    reloaded = AgePredictor(AutoModel.from_pretrained(out), processor, backend="torch")
    again = AgePredictor.from_pretrained(out, backend="torch")
    for other in (reloaded, again):
        assert np.allclose([p.age for p in other.predict_crops(faces, bodies)], ages, atol=1e-4)


def test_a_model_giving_nan_ages_fails_loudly_naming_its_folder(saved_model):
    from mivolo_lite import AgePredictor

    _, _, folder = saved_model
    predictor = AgePredictor.from_pretrained(folder, backend="torch")
    with torch.no_grad():
        for p in predictor._fused_model.parameters():
            p.fill_(float("nan"))
    with pytest.raises(RuntimeError, match=f"{folder}.*NaN"):
        predictor.predict_crops([random_image(seed=1)])


def test_loading_a_model_prints_no_progress_bar(saved_model, capfd):
    from mivolo_lite.hub import load_model_and_processor

    _, _, folder = saved_model
    load_model_and_processor(folder)
    captured = capfd.readouterr()
    assert "Loading weights" not in captured.err + captured.out


def test_publish_uploads_the_whole_folder_or_fills_the_cache(saved_model, tmp_path, monkeypatch, capsys):
    """`mivolo-lite publish`: the folder (with its model card) goes up through upload_folder; with
    --to-cache it lands in the local HF cache, from which an offline load works."""
    import huggingface_hub

    from mivolo_lite.cli import main

    _, _, folder = saved_model
    (folder / "README.md").write_text("# card\n")
    calls = {}
    monkeypatch.setattr(huggingface_hub.HfApi, "create_repo", lambda self, repo_id, **k: calls.setdefault("repo", repo_id))

    def fake_upload(self, repo_id, folder_path, **kwargs):
        calls["files"] = sorted(p.name for p in Path(folder_path).iterdir())
        return huggingface_hub.CommitInfo(commit_url=f"https://hf.co/{repo_id}/commit/1", commit_message="",
                                          commit_description="", oid="1" * 40)

    monkeypatch.setattr(huggingface_hub.HfApi, "upload_folder", fake_upload)
    assert main(["publish", str(folder), "me/mine"]) == 0
    assert calls["repo"] == "me/mine" and {"README.md", "config.json", "model.safetensors"} <= set(calls["files"])

    cache = tmp_path / "hub"
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    assert main(["publish", str(folder), "me/mine", "--to-cache"]) == 0
    assert "local Hugging Face cache" in capsys.readouterr().out
    proc = _run_offline(cache, "me/mine")
    assert proc.returncode == 0, proc.stderr[-2000:]
    capsys.readouterr()
    assert main(["publish", str(tmp_path), "me/empty"]) == 1
    assert "not a saved mivolo_lite model" in capsys.readouterr().err
