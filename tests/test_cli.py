"""Command line: --version, defaults in the help, detector names checked at parse time, the
coverage printed as given, annotated images kept per folder, early refusals."""
import pytest

from mivolo_lite import __version__
from mivolo_lite.cli import build_parser, main


def test_version_and_help_with_defaults(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0 and __version__ in capsys.readouterr().out
    help_text = build_parser()._subparsers._group_actions[0].choices["predict"].format_help()
    assert "default: mivolo_out" in help_text and "default: 0.9" in help_text


@pytest.mark.parametrize("name", ["foo", "haar"])
def test_an_unknown_detector_is_refused_at_once_listing_the_choices(name, capsys, tmp_path):
    with pytest.raises(SystemExit) as exit_:
        main(["predict", str(tmp_path), "--detector", name])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and f"unknown detector {name!r}" in err and "'opencv'" in err and "yolo:" in err


def test_check_age_on_an_empty_folder_is_like_predict(tmp_path, capsys):
    assert main(["check-age", str(tmp_path)]) == 2
    assert "no images or videos found" in capsys.readouterr().err


def test_calibrate_without_output_fails_first_naming_the_flag(tmp_path, capsys):
    csv = tmp_path / "never_read.csv"  # does not exist: the refusal comes before any work
    assert main(["calibrate", str(csv)]) == 2
    assert "--output" in capsys.readouterr().err


def test_predict_prints_the_coverage_asked_and_keeps_same_named_images(tmp_path, assets, capsys):
    for sub in ("a", "b"):
        (tmp_path / "photos" / sub).mkdir(parents=True)
        (tmp_path / "photos" / sub / "img.jpg").write_bytes((assets / "zidane.jpg").read_bytes())
    out = tmp_path / "out"
    assert main(["predict", str(tmp_path / "photos"), "-o", str(out), "--save-images", "--coverage", "0.5",
                 "--backend", "torch"]) == 0
    printed = capsys.readouterr().out
    assert "(50% " in printed and "(90% " not in printed
    assert (out / "annotated" / "a" / "img.jpg").exists() and (out / "annotated" / "b" / "img.jpg").exists()


def test_predict_counts_a_video_once_and_its_people_per_track(tmp_path, assets, capsys):
    """A 6-frame clip of the two people in zidane.jpg and the photo itself: the video counts as
    one input that is ok, its people once per track (not once per frame), and --show 2 shows
    both inputs (it used to show the first two video frames only)."""
    import re

    from conftest import write_clip

    (tmp_path / "in").mkdir()
    write_clip(tmp_path / "in" / "clip.mp4", frames=6, shift=4)
    (tmp_path / "in" / "zidane.jpg").write_bytes((assets / "zidane.jpg").read_bytes())
    out = tmp_path / "out"
    assert main(["predict", str(tmp_path / "in"), "-o", str(out), "--show", "2", "--backend", "torch"]) == 0
    printed = capsys.readouterr().out
    summary = re.search(r"2 input\(s\): 1 image\(s\) and 1 video\(s\) ok, 0 failed, (\d+) person\(s\) found", printed)
    assert summary, printed
    tracks = re.findall(r"clip\.mp4: track \d+: age [\d.]+ \(90% \d+-\d+\), (?:male|female) \([\d.]+\), \d frame\(s\)",
                        printed)
    persons = re.findall(r"zidane\.jpg: person \d+: age", printed)
    assert tracks and persons and len(tracks) <= 4, printed  # two people, not one per frame (up to 12)
    assert int(summary.group(1)) == len(tracks) + len(persons)


def test_calibrate_prints_a_short_summary_and_writes_the_figures_to_json(tiny_model, annotations, tmp_path, capsys):
    """It printed about 60 lines of JSON."""
    import json

    from mivolo_lite.models import MiVOLOLiteImageProcessor

    model_dir, calibrated = tmp_path / "model", tmp_path / "calibrated"
    tiny_model.save_pretrained(model_dir)
    MiVOLOLiteImageProcessor(size=tiny_model.config.image_size).save_pretrained(model_dir)
    assert main(["calibrate", str(annotations / "utkface_calib.csv"), "--model", str(model_dir),
                 "--output", str(calibrated), "--limit", "60"]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert len(printed) == 2, printed
    assert printed[0].startswith("calibrated on 60 faces of utkface_calib.csv: ")
    summary = calibrated / "calibration_summary.json"
    assert str(summary) in printed[1]
    figures = json.loads(summary.read_text())
    assert sum(figures["band_counts"]) == 60 and figures["fitted_on"] == "utkface_calib.csv"

    elsewhere = tmp_path / "reports" / "calibration.json"
    assert main(["calibrate", str(annotations / "utkface_calib.csv"), "--model", str(model_dir),
                 "--output", str(calibrated), "--limit", "60", "--json", str(elsewhere)]) == 0
    assert json.loads(elsewhere.read_text()) == figures


def test_predict_quiet_prints_only_its_summary_even_on_a_first_run(tmp_path, assets):
    """On a machine where ultralytics has never run, its first import printed three lines on
    stdout ("Creating new Ultralytics Settings v... file ✅ ...") in the middle of --quiet."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    env = {**os.environ, "YOLO_CONFIG_DIR": str(tmp_path / "fresh_config"), "HF_HUB_OFFLINE": "1",
           "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[1]), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "-m", "mivolo_lite.cli", "predict", str(assets / "bus.jpg"),
                           "-o", str(tmp_path / "out"), "--quiet"], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (tmp_path / "fresh_config").exists()  # ultralytics did run, with a settings file of its own
    assert proc.stdout.splitlines() == [next(line for line in proc.stdout.splitlines() if "input(s)" in line)], proc.stdout
    assert proc.stderr == ""
