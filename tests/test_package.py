import os
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_import_is_light():
    code = ("import sys, mivolo_lite; from mivolo_lite import AgePredictor, MiVOLOLiteModel; "
            "print(sorted(m for m in ('ultralytics', 'gradio', 'matplotlib', 'pandas') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_cli_help_lists_the_commands():
    out = subprocess.run([sys.executable, "-m", "mivolo_lite.cli", "--help"], capture_output=True, text=True, timeout=120)
    for command in ("predict", "check-age", "eval", "calibrate", "demo", "train"):
        assert command in out.stdout


def test_shipped_default_model_is_small_safetensors():
    from mivolo_lite.hub import DEFAULT_MODEL_DIR

    weights = DEFAULT_MODEL_DIR / "model.safetensors"
    assert weights.exists() and weights.stat().st_size < 20 * 2**20
    assert not list(DEFAULT_MODEL_DIR.glob("*.bin")) and not list(DEFAULT_MODEL_DIR.glob("*.pt"))
    from safetensors import safe_open

    with safe_open(weights, "pt") as f:  # stored in fp16 (half the file, no cost in accuracy)
        assert {str(f.get_tensor(k).dtype) for k in f.keys()} <= {"torch.float16", "torch.int64"}


def test_readme_quick_start_finds_its_photo_on_a_new_machine(tmp_path):
    # The quick start takes the photo's path from a `$(python -c ...)` substitution. On a new
    # machine the first import of ultralytics prints a note about the settings file it creates
    # before the path; the command must still yield the path alone.
    readme = (REPO / "README.md").read_text()
    command = re.search(r'mivolo-lite predict "\$\((.+?)\)" --save-images', readme).group(1)
    env = {**os.environ, "YOLO_CONFIG_DIR": str(tmp_path)}  # no settings file yet, as on a new machine
    out = subprocess.run(["bash", "-c", command], env=env, capture_output=True, text=True, timeout=120)
    assert (tmp_path / "Ultralytics" / "settings.json").exists(), "ultralytics did not start from scratch"
    path = Path(out.stdout.strip())
    assert path.name == "bus.jpg" and path.is_file(), out.stdout


def test_wheel_carries_the_licence_and_the_model_card_figures(tmp_path):
    # A user who installs the wheel gets the code's licence and the evaluation folder that the
    # model card links to (package data globs do not descend into sub-folders by themselves).
    import zipfile

    out = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(REPO)],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    wheel = next(tmp_path.glob("mivolo_lite-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names), names
    for model in ("mivolo-mobile", "mivolo-lite-cpu"):  # every shipped model, with the figures its card links to
        assert f"mivolo_lite/pretrained/{model}/evaluation/report.md" in names, model
        assert f"mivolo_lite/pretrained/{model}/model.safetensors" in names, model
    metadata = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    assert "License-Expression: Apache-2.0" in metadata and "Classifier:" in metadata
