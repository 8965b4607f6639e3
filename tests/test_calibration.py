import numpy as np
import pytest

from mivolo_lite.calibration import AgeCalibration, uncalibrated


def synthetic(n, seed):
    """A model whose errors scale with its predicted spread, and grow with age."""
    rng = np.random.default_rng(seed)
    true = rng.uniform(1, 90, n)
    std = 1.5 + true / 15 * rng.uniform(0.7, 1.3, n)
    pred = true + rng.normal(0, 1, n) * std + 0.03 * (40 - true)  # a little pull toward the middle
    return pred, std, true


def test_conformal_intervals_reach_their_coverage_on_new_data():
    cal = AgeCalibration.fit(*synthetic(4000, 0))
    pred, std, true = synthetic(4000, 1)
    for coverage in (0.5, 0.8, 0.9, 0.95):
        low, high = cal.interval(pred, std, coverage)
        covered = ((true >= low) & (true <= high)).mean()
        assert abs(covered - coverage) < 0.03, (coverage, covered)
    low, high = cal.interval(pred, std, 0.9)
    easy, hard = std < np.median(std), std >= np.median(std)
    assert (high - low)[easy].mean() < (high - low)[hard].mean()  # easy faces get narrower intervals


def biased_on_teenagers(n, seed):
    """Like ``synthetic`` but teenagers are read as ten years older, with a confident spread: the
    failure seen on real faces, which predicted-age bands cannot see."""
    pred, std, true = synthetic(n, seed)
    teen = (true >= 13) & (true < 20)
    pred[teen] = true[teen] + 10 + np.random.default_rng(seed + 100).normal(0, 1, teen.sum()) * std[teen]
    return pred, std, true


def group_coverage(cal, pred, std, true, coverage=0.9):
    low, high = cal.interval(pred, std, coverage)
    covered = (true >= low) & (true <= high)
    teen = (true >= 13) & (true < 20)
    return covered.mean(), covered[teen].mean()


def test_intervals_cover_each_true_age_group_even_where_the_model_is_biased():
    fit_data, new_data = biased_on_teenagers(6000, 6), biased_on_teenagers(6000, 7)
    by_true_age = AgeCalibration.fit(*fit_data)
    by_predicted_age = AgeCalibration.fit(*fit_data, age_groups=None)
    overall, teens = group_coverage(by_true_age, *new_data)
    old_overall, old_teens = group_coverage(by_predicted_age, *new_data)
    assert abs(overall - 0.9) < 0.02 and abs(old_overall - 0.9) < 0.02
    assert old_teens < 0.8  # the bands judge a teenager read as 25 by the 25-year-olds' errors
    assert teens > 0.88, teens
    # coverages between the fitted grid's points are interpolated, and stay ordered
    widths = [np.mean(np.subtract(*by_true_age.interval(new_data[0], new_data[1], c)[::-1])) for c in (0.6, 0.855, 0.97)]
    assert widths[0] < widths[1] < widths[2]


def test_calibration_round_trips_through_a_dict():
    cal = AgeCalibration.fit(*synthetic(500, 2))
    again = AgeCalibration.from_dict(cal.to_dict())
    pred, std, _ = synthetic(50, 3)
    assert np.allclose(cal.interval(pred, std, 0.9), again.interval(pred, std, 0.9))
    assert np.allclose(cal.prob_at_least(pred, std, 21), again.prob_at_least(pred, std, 21))
    # tables saved before the true-age groups existed keep their predicted-age-band intervals
    old = cal.to_dict()
    del old["true_age_groups"], old["interval_method"]
    bands_only = AgeCalibration.fit(*synthetic(500, 2), age_groups=None)
    assert np.allclose(AgeCalibration.from_dict(old).interval(pred, std, 0.9), bands_only.interval(pred, std, 0.9))


def test_probability_and_decision_of_the_age_check():
    cal = AgeCalibration.fit(*synthetic(4000, 4))
    p = cal.prob_at_least(np.array([10, 17, 18, 19, 30]), np.array([2, 2, 2, 2, 2]), 18)
    assert np.all(np.diff(p) >= 0) and p[0] < 0.05 and p[-1] > 0.95
    assert cal.decide(40, 2, 18).decision == "over"
    assert cal.decide(6, 1.5, 18).decision == "under"
    assert cal.decide(18, 3, 18).decision == "uncertain"
    # a stricter risk sends more people to "uncertain"
    assert cal.decide(24, 3, 18, risk=0.2).decision == "over" and cal.decide(24, 3, 18, risk=0.001).decision == "uncertain"
    pred, std, true = synthetic(4000, 5)
    prob = cal.prob_at_least(pred, std, 25)
    for lo, hi in ((0.1, 0.3), (0.4, 0.6), (0.7, 0.9)):
        sel = (prob >= lo) & (prob < hi)
        assert lo - 0.1 <= (true[sel] >= 24.5).mean() <= hi + 0.1  # reliable probabilities


def test_bad_arguments_and_uncalibrated_fallback():
    cal = uncalibrated()
    low, high = cal.interval(30, 4, 0.9)
    assert low[0] == pytest.approx(30 - 1.645 * 4, abs=0.1) and high[0] == pytest.approx(30 + 1.645 * 4, abs=0.1)
    with pytest.raises(ValueError):
        cal.interval(30, 4, 1.5)
    with pytest.raises(ValueError):
        AgeCalibration.fit([1, 2], [1, 1], [1, 2])


def test_a_table_fitted_on_another_age_estimate_than_the_model_reports_warns():
    """The residuals are measured from the age the model reports: a table fitted on the mean
    does not calibrate a model that reports the median (or the reverse), and says so."""
    import warnings
    from types import SimpleNamespace

    from mivolo_lite.calibration import calibration_of

    table = AgeCalibration.fit(*synthetic(500, 0), age_estimate="median").to_dict()
    config = SimpleNamespace(age_calibration=table, age_estimate="median", min_age=0, max_age=100)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        calibration, calibrated = calibration_of(config)
    assert calibrated and calibration.age_estimate == "median"
    config.age_estimate = "mean"
    with pytest.warns(UserWarning, match="fitted on the median .* reports its mean"):
        calibration_of(config)
    old = dict(table)
    del old["age_estimate"]  # tables from before the choice existed were all fitted on the mean
    config.age_calibration, config.age_estimate = old, "median"
    with pytest.warns(UserWarning, match="fitted on the mean"):
        calibration_of(config)
    config.age_calibration = None
    assert calibration_of(config)[1] is False


def test_the_shipped_model_is_calibrated_for_the_age_it_reports():
    import warnings

    from mivolo_lite.calibration import calibration_of
    from mivolo_lite.models import MiVOLOLiteConfig
    from mivolo_lite.hub import resolve_model

    config = MiVOLOLiteConfig.from_pretrained(resolve_model(None))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        calibration, calibrated = calibration_of(config)
    assert calibrated and calibration.age_estimate == config.age_estimate == "median"
