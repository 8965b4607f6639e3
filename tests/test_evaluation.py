"""Evaluation and calibration as users run them: interval coverage and age-check statistics on
known numbers, then ``mivolo-lite calibrate`` and ``mivolo-lite eval`` on real annotation CSVs."""

from __future__ import annotations

import json

import numpy as np
import pytest

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
    report = (out / "report.md").read_text()
    assert "calibrated, utkface_calib.csv" in report and "90 % age intervals" in report and "Age check" in report
    for plot in ("utkface_val_pred_vs_true", "utkface_val_mae_per_age", "utkface_val_error_hist",
                 "utkface_val_coverage_per_age", "utkface_val_reliability", "peta_val_group_confusion"):
        assert (out / f"{plot}.png").stat().st_size > 1000, plot
