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


def _fill_hf_cache(cache: Path, repo_id: str, folder: Path) -> None:
    """Lay out files as huggingface_hub's cache does after a download."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo_dir = cache / f"models--{repo_id.replace('/', '--')}"
    snap = repo_dir / "snapshots" / commit
    snap.mkdir(parents=True)
    for f in folder.iterdir():
        (snap / f.name).write_bytes(f.read_bytes())
    (repo_dir / "refs").mkdir()
    (repo_dir / "refs" / "main").write_text(commit)


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
    _fill_hf_cache(cache, "someone/mivolo-lite-test", folder)
    proc = _run_offline(cache, "someone/mivolo-lite-test")
    assert proc.returncode == 0, proc.stderr[-2000:]
    age = float(proc.stdout.split("AGE")[1])
    expected = model.predict(**processor(faces=[np.zeros((40, 40, 3), np.uint8)])).age.item()
    assert abs(age - expected) < 1e-4


def test_missing_repo_gives_a_clear_error(tmp_path):
    proc = _run_offline(tmp_path / "emptycache", "nobody/does-not-exist")
    assert proc.returncode == 3, proc.stderr[-2000:]
    assert "nobody/does-not-exist" in proc.stdout and "cache" in proc.stdout


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
