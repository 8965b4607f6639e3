import subprocess
import sys


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
