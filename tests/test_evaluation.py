"""Evaluation and calibration as users run them: interval coverage and age-check statistics on
known numbers, then ``mivolo-lite calibrate`` and ``mivolo-lite eval`` on real annotation CSVs."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from mivolo_lite.calibration import LEVELS, AgeCalibration
from mivolo_lite.evaluation.inference import Predictions
from mivolo_lite.evaluation.report import age_check_stats, interval_stats


def predictions(age, std, true_low, true_high=None) -> Predictions:
    n = len(age)
    true_high = true_low if true_high is None else true_high
    return Predictions(index=np.arange(n), age=np.asarray(age, float), age_std=np.asarray(std, float),
                       age_probs=np.full((n, 101), 1 / 101), prob_male=np.full(n, 0.5),
                       age_low=np.asarray(true_low, float), age_high=np.asarray(true_high, float),
                       gender=np.full(n, -1), face_mask=np.ones(n, bool), body_mask=np.zeros(n, bool))


def linear_calibration() -> AgeCalibration:
    """One band whose residual quantile at level L is (L - 0.5) * 20: 90 % interval = age -9..+9
    (at std 1), residual CDF uniform on [-10, 10]."""
    return AgeCalibration((0.0, 200.0), [(LEVELS - 0.5) * 20], [100])


def test_interval_coverage_counts_whole_year_ages_inside_the_interval_only():
    # age 30, std 1 -> interval [21, 39]; age 15 -> [6, 24]; age 3 -> [0 (clipped from -6), 12]
    age = [30, 30, 30, 30, 30, 15, 15, 15, 15, 3, 30]
    true = [20, 21, 39, 40, 30, 0, 6, 12, 5, 10, 30]
    true_high = true[:-1] + [45]  # the last person has an age group (30-45): not counted for intervals
    stats = interval_stats(predictions(age, [1] * 11, true, true_high), linear_calibration(), 0.9)
    assert stats["coverage"] == pytest.approx(6 / 10)  # out: 20 and 40 (a year outside [21, 39]), 0, 5
    assert stats["mean_width"] == pytest.approx((9 * 18 + 12) / 10)
    # only groups of at least 5 people are reported
    assert stats["per_age_band"] == {"0-12": {"n": 5, "coverage": pytest.approx(0.6),
                                              "mean_width": pytest.approx((4 * 18 + 12) / 5)}}


def test_age_check_statistics_count_minors_passed_and_adults_sent_to_uncertain():
    # P(age >= 18) = 1 - F((17.5 - age) / std), F uniform on [-10, 10]:
    # age 40 -> 1 (over), age 10 -> 0.125 (uncertain), age 0 -> 0 (under), age 17.5 -> 0.5 (uncertain)
    age, true = [40, 40, 10, 0, 17.5, 40], [30, 16, 12, 3, 20, 50]
    checks = age_check_stats(predictions(age, [1] * 6, true), linear_calibration(), thresholds=(18,), risk=0.05)
    c = checks["18"]
    assert (c["n_under"], c["n_over"]) == (3, 3)
    assert c["under_passed_as_over"] == pytest.approx(1 / 3)  # the 16-year-old predicted 40
    assert c["over_sent_to_uncertain"] == pytest.approx(1 / 3)  # the 20-year-old predicted 17.5
    assert c["over_called_under"] == 0.0
    assert np.allclose(c["_prob"], [1, 1, 0.125, 0, 0.5, 1])


def test_per_person_figures_count_each_person_once():
    from mivolo_lite.evaluation.metrics import per_person_weights, summarize_predictions

    assert per_person_weights(["a.jpg", "b.jpg", "c.jpg"]) is None  # one image each: nothing to add
    # person A: 8 frames, all in the right group; B and C: one frame each, both wrong
    ids = ["A"] * 8 + ["B", "C"]
    weights = per_person_weights(ids)
    np.testing.assert_allclose(weights, [1 / 8] * 8 + [1, 1])
    pred = np.array([35.0] * 8 + [20.0, 70.0])
    low, high = np.full(10, 31.0), np.full(10, 45.0)
    prob_male, gender = np.array([0.9] * 8 + [0.9, 0.1]), np.array([1] * 8 + [0, 1])
    images = summarize_predictions(pred, prob_male, low, high, gender)
    people = summarize_predictions(pred, prob_male, low, high, gender, weights)
    assert images["group_accuracy"] == pytest.approx(0.8) and people["group_accuracy"] == pytest.approx(1 / 3)
    assert images["gender_accuracy"] == pytest.approx(0.8) and people["gender_accuracy"] == pytest.approx(1 / 3)
    # exact ages: MAE per person (A: error 1 on each frame, B: 10)
    exact = summarize_predictions(np.array([31.0] * 8 + [40.0, 30.0]), prob_male, np.full(10, 30.0),
                                  np.full(10, 30.0), gender, weights)
    assert exact["mae"] == pytest.approx((1 + 10 + 0) / 3)


def test_comparison_resamples_people_not_images():
    from mivolo_lite.evaluation.comparison import compare_scores

    nan = np.full(60, np.nan)
    # one person in 50 frames, 10 people in one frame each; B fixes the 50 frames, breaks the 10
    ids = ["P"] * 50 + [f"Q{i}" for i in range(10)]
    a = {"mae": nan, "cs5": nan, "gender_accuracy": nan, "group_accuracy": np.r_[np.zeros(50), np.ones(10)]}
    b = {**a, "group_accuracy": np.r_[np.ones(50), np.zeros(10)]}
    out = compare_scores(a, b, ids, n_boot=500)
    assert out["n_people"] == 11 and set(out["figures"]) == {"group_accuracy"}
    images, people = out["figures"]["group_accuracy"]["images"], out["figures"]["group_accuracy"]["people"]
    assert images["diff"] == pytest.approx(50 / 60 - 10 / 60) and people["diff"] == pytest.approx(1 / 11 - 10 / 11)
    # the 50 frames are one person: whether P is drawn decides the image figure, so its interval is wide
    assert images["ci95"][0] < 0 < images["ci95"][1]
    assert people["ci95"][1] < 0  # per person, B is clearly worse
    same = compare_scores(a, a, ids, n_boot=50)["figures"]["group_accuracy"]["images"]
    assert same["diff"] == 0 and same["ci95"] == [0.0, 0.0]


def test_compare_from_the_command_line(tiny_model, annotations, tmp_path, capsys):
    from mivolo_lite.cli import main
    from mivolo_lite.models import MiVOLOLiteImageProcessor

    folders = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        model = type(tiny_model)(tiny_model.config)
        folders.append(tmp_path / f"m{seed}")
        model.save_pretrained(folders[-1])
        MiVOLOLiteImageProcessor(size=model.config.image_size).save_pretrained(folders[-1])
    out = tmp_path / "cmp.json"
    assert main(["compare", str(folders[0]), str(folders[1]), str(annotations / "utkface_val.csv"),
                 str(annotations / "peta_val.csv"), "--limit", "30", "--bootstrap", "100", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "bootstrap over people" in printed and "per person" in printed
    results = json.loads(out.read_text())
    utk, peta = results["utkface_val"]["figures"], results["peta_val"]["figures"]
    assert set(utk) == {"mae", "cs5", "gender_accuracy"} and "people" not in utk["mae"]  # one image per person
    assert set(peta) == {"group_accuracy", "gender_accuracy"} and "people" in peta["group_accuracy"]
    lo, hi = utk["mae"]["images"]["ci95"]
    assert lo <= utk["mae"]["images"]["diff"] <= hi


def test_calibrate_then_evaluate_from_the_command_line(tiny_model, annotations, tmp_path):
    from mivolo_lite.cli import main
    from mivolo_lite.models import MiVOLOLiteImageProcessor

    model_dir, calibrated = tmp_path / "model", tmp_path / "calibrated"
    tiny_model.save_pretrained(model_dir)
    MiVOLOLiteImageProcessor(size=tiny_model.config.image_size).save_pretrained(model_dir)
    assert main(["calibrate", str(annotations / "utkface_calib.csv"), "--model", str(model_dir),
                 "--output", str(calibrated), "--limit", "60"]) == 0
    table = json.loads((calibrated / "config.json").read_text())["age_calibration"]
    assert table["fitted_on"] == "utkface_calib.csv" and sum(table["counts"]) == 60

    out = tmp_path / "report"
    assert main(["eval", str(annotations / "utkface_val.csv"), str(annotations / "peta_val.csv"),
                 "--model", str(calibrated), "-o", str(out), "--limit", "40"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    utk, peta = metrics["utkface_val"], metrics["peta_val"]
    assert utk["overall"]["n_exact"] == 40 and 0 <= utk["overall"]["mae"] <= 100
    assert 0 <= utk["intervals"]["coverage"] <= 1 and utk["intervals"]["per_age_band"]
    assert set(utk["age_check"]) == {"18", "21", "25"}
    assert peta["overall"]["n_interval"] == 40 and 0 <= peta["overall"]["group_accuracy"] <= 1
    # PETA has several frames per pedestrian: figures with each person counted once join the image-level ones
    assert 0 < peta["per_person"]["n_people"] < 40 and "per_person" not in utk
    report = (out / "report.md").read_text()
    assert f"each of {peta['per_person']['n_people']} people counted once" in report
    assert "calibrated, utkface_calib.csv" in report and "90 % age intervals" in report and "Age check" in report
    for plot in ("utkface_val_pred_vs_true", "utkface_val_mae_per_age", "utkface_val_error_hist",
                 "utkface_val_coverage_per_age", "utkface_val_reliability", "peta_val_group_confusion"):
        assert (out / f"{plot}.png").stat().st_size > 1000, plot


def test_evaluation_rows_refuse_a_csv_without_boxes_and_limit_samples_at_random(tmp_path, capsys):
    from mivolo_lite.evaluation.report import read_evaluation_records

    no_boxes = tmp_path / "no_boxes.csv"
    no_boxes.write_text("image,age\na.jpg,30\n")
    with pytest.raises(ValueError, match="face_box.*body_box"):
        read_evaluation_records(no_boxes)
    rows = tmp_path / "sorted_by_age.csv"
    rows.write_text("image,face_box,age\n" + "".join(f"{i}.jpg,0 0 10 10,{i}\n" for i in range(100)))
    sample = read_evaluation_records(rows, limit=10)
    ages = [r.age for r in sample]
    assert len(ages) == 10 and max(ages) > 10  # not the first 10 rows of a sorted CSV
    assert ages == [r.age for r in read_evaluation_records(rows, limit=10)]  # the same rows every run
    assert "a random sample of 10 of 100 rows" in capsys.readouterr().err
