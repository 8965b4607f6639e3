"""Calibrated age intervals and age checks.

Both are split-conformal on held-out data, on the residual normalised by the predicted spread,
``r = (true_age - expected_age) / age_std``, so easy faces (small std) get narrow intervals and
hard ones wide, and both may be asymmetric where the model is biased.

**Age checks** use the residual's empirical quantiles within bands of *predicted* age (Mondrian
conformal prediction: errors grow with age): ``P(age >= t) = 1 - F_r((t - age) / std)`` with
``F_r`` the person's band's residual CDF.

**Intervals** use quantiles within groups of *true* age (label-conditional Mondrian conformal
prediction, :class:`TrueAgeGroupIntervals`). Banding by predicted age cannot protect a group the
model is biased on: a 15-year-old read as 30 sits in the 30-year-olds' band and is judged by their
errors, so teenagers were under-covered while people in their twenties were over-covered. Here
every group ``g`` keeps its own residual quantiles ``[q_lo(g), q_hi(g)]``, a candidate age ``a``
is admitted when ``a`` is in ``g`` and ``q_lo(g) <= (a - age) / std <= q_hi(g)``, and the interval
is the hull of the admitted ages. The hull of several groups' sets covers more than each group's
level, so the per-group tail is chosen by a cross-fit on the calibration set to make the hull
cover the requested level overall (a table from coverage to tail is stored for 0.5...0.99).

The table lives in ``config.age_calibration`` and is saved and loaded with the model; tables saved
before the true-age groups existed keep working (their intervals use the predicted-age bands).
"""

from __future__ import annotations


import warnings
from dataclasses import dataclass

import numpy as np

DEFAULT_BAND_EDGES = (0.0, 13.0, 20.0, 30.0, 45.0, 60.0, 200.0)
# The age groups of the evaluation report, whose coverage the intervals are judged by.
AGE_GROUPS = ((0, 12), (13, 19), (20, 29), (30, 39), (40, 49), (50, 59), (60, 69), (70, 120))
# The groups the intervals are calibrated in: the report's, with the children split, because a
# toddler's error is measured in months and a ten-year-old's in years.
CALIBRATION_GROUPS = ((0, 5), (6, 12)) + AGE_GROUPS[1:]
# The floor of the predicted spread, in years: a (near-)zero spread would turn every error into
# an infinite normalised residual.
MIN_STD = 0.5
INTERVAL_COVERAGES = np.round(np.arange(0.5, 0.9901, 0.01), 2)
LEVELS = np.round(np.concatenate([[0.001, 0.0025], np.arange(0.005, 0.9951, 0.005), [0.9975, 0.999]]), 4)


@dataclass
class AgeDecision:
    threshold: float
    prob_at_least: float  # P(age >= threshold)
    decision: str  # "over" | "under" | "uncertain"
    risk: float

    def to_dict(self) -> dict:
        return {"threshold": self.threshold, "prob_at_least": round(self.prob_at_least, 4),
                "decision": self.decision, "risk": self.risk}


class AgeCalibration:
    def __init__(self, band_edges, quantiles, counts, levels=LEVELS, min_age: float = 0, max_age: float = 100,
                 fitted_on: str = "", group_intervals: "TrueAgeGroupIntervals | None" = None,
                 age_estimate: str = "mean"):
        self.group_intervals = group_intervals
        # which point of the distribution the residuals were measured from (config.age_estimate;
        # tables from before the choice existed were all fitted on the mean)
        self.age_estimate = age_estimate
        self.band_edges = np.asarray(band_edges, dtype=np.float64)
        self.quantiles = np.asarray(quantiles, dtype=np.float64)  # (bands, levels), non-decreasing rows
        self.counts = list(counts)
        self.levels = np.asarray(levels, dtype=np.float64)
        self.min_age, self.max_age, self.fitted_on = min_age, max_age, fitted_on

    # -- fitting ---------------------------------------------------------------------------------
    @classmethod
    def fit(cls, pred_age, pred_std, true_age, band_edges=DEFAULT_BAND_EDGES, min_per_band: int = 40,
            min_age: float = 0, max_age: float = 100, fitted_on: str = "",
            age_groups=CALIBRATION_GROUPS, min_per_group: int = 30, age_estimate: str = "mean") -> "AgeCalibration":
        pred_age, pred_std, true_age = (np.asarray(a, dtype=np.float64) for a in (pred_age, pred_std, true_age))
        ok = np.isfinite(pred_age) & np.isfinite(pred_std) & np.isfinite(true_age)
        pred_age, pred_std, true_age = pred_age[ok], pred_std[ok], true_age[ok]
        if len(true_age) < 20:
            raise ValueError(f"need at least 20 calibration samples with exact ages, got {len(true_age)}")
        r = normalized_residual(true_age, pred_age, pred_std)
        quantiles, counts = _mondrian_quantiles(r, [(pred_age >= lo) & (pred_age < hi)
                                                    for lo, hi in zip(band_edges[:-1], band_edges[1:])], min_per_band)
        group_intervals = TrueAgeGroupIntervals.fit(pred_age, pred_std, true_age, age_groups, min_per_group,
                                                    min_age, max_age) if age_groups else None
        return cls(band_edges, quantiles, counts, LEVELS, min_age, max_age, fitted_on, group_intervals, age_estimate)

    # -- serialisation ---------------------------------------------------------------------------
    def to_dict(self) -> dict:
        d = {"method": "mondrian_normalized_conformal", "band_edges": self.band_edges.tolist(),
             "levels": self.levels.tolist(), "quantiles": np.round(self.quantiles, 5).tolist(),
             "counts": self.counts, "min_age": self.min_age, "max_age": self.max_age, "fitted_on": self.fitted_on,
             "age_estimate": self.age_estimate}
        if self.group_intervals is not None:
            d["interval_method"] = "true_age_group_conformal"
            d["true_age_groups"] = self.group_intervals.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "AgeCalibration":
        groups = d.get("true_age_groups")
        return cls(d["band_edges"], d["quantiles"], d["counts"], d["levels"], d.get("min_age", 0),
                   d.get("max_age", 100), d.get("fitted_on", ""),
                   TrueAgeGroupIntervals.from_dict(groups, d["levels"], d.get("min_age", 0), d.get("max_age", 100))
                   if groups else None, d.get("age_estimate", "mean"))

    # -- use -------------------------------------------------------------------------------------
    def _band(self, age: np.ndarray) -> np.ndarray:
        return np.clip(np.searchsorted(self.band_edges, age, side="right") - 1, 0, len(self.quantiles) - 1)

    def _quantile(self, band: np.ndarray, level: float) -> np.ndarray:
        return np.array([np.interp(level, self.levels, self.quantiles[b]) for b in np.atleast_1d(band)])

    def interval(self, age, std, coverage: float = 0.9) -> tuple[np.ndarray, np.ndarray]:
        if not 0 < coverage < 1:
            raise ValueError(f"coverage must be between 0 and 1, got {coverage}")
        age, std = _person_arrays(age, std)
        if self.group_intervals is not None:
            return self.group_intervals.interval(age, std, coverage)
        band = self._band(age)
        tail = (1 - coverage) / 2
        low = age + self._quantile(band, tail) * std
        high = age + self._quantile(band, 1 - tail) * std
        return np.clip(low, self.min_age, self.max_age), np.clip(high, self.min_age, self.max_age)

    def prob_at_least(self, age, std, threshold: float) -> np.ndarray:
        age, std = _person_arrays(age, std)
        band = self._band(age)
        z = (threshold - 0.5 - age) / std  # ages are whole years: "at least 18" means true age > 17.5
        cdf = np.array([np.interp(zi, self.quantiles[b], self.levels, left=0.0, right=1.0) for zi, b in zip(z, band)])
        return 1.0 - cdf

    def decide(self, age: float, std: float, threshold: float, risk: float = 0.05) -> AgeDecision:
        if not 0 < risk < 0.5:
            raise ValueError(f"risk must be between 0 and 0.5, got {risk}")
        p = float(self.prob_at_least(age, std, threshold)[0])
        decision = "over" if p >= 1 - risk else "under" if p <= risk else "uncertain"
        return AgeDecision(float(threshold), p, decision, risk)

    def check(self, person, threshold: float = 18, risk: float = 0.05) -> AgeDecision:
        return self.decide(person.age, person.age_std, threshold, risk)


class TrueAgeGroupIntervals:
    """Intervals calibrated within groups of true age (see the module docstring)."""

    def __init__(self, groups, quantiles, counts, coverages, tails, levels=LEVELS, min_age: float = 0,
                 max_age: float = 100):
        self.groups = [(float(lo), float(hi)) for lo, hi in groups]
        self.quantiles = np.asarray(quantiles, dtype=np.float64)  # (groups, levels)
        self.counts = list(counts)
        self.coverages, self.tails = np.asarray(coverages, dtype=np.float64), np.asarray(tails, dtype=np.float64)
        self.levels = np.asarray(levels, dtype=np.float64)
        self.min_age, self.max_age = min_age, max_age

    @classmethod
    def fit(cls, pred_age, pred_std, true_age, groups=CALIBRATION_GROUPS, min_per_group: int = 30, min_age: float = 0,
            max_age: float = 100, coverages=INTERVAL_COVERAGES, folds: int = 5) -> "TrueAgeGroupIntervals":
        table = cls._fit_groups(pred_age, pred_std, true_age, groups, min_per_group, min_age, max_age)
        # The level per group at which the hull covers the requested share is chosen out of
        # sample: quantiles fitted on four fifths of the calibration people, coverage counted on
        # the fifth left out. In-sample the quantiles cover the very people they were fitted on,
        # which chose too loose a level and under-covered new people.
        candidate_tails = LEVELS[LEVELS < 0.5][::-1]  # narrowest intervals first
        fold = np.random.default_rng(0).permutation(len(true_age)) % folds
        covered = np.zeros((len(candidate_tails), len(true_age)), bool)
        for f in range(folds):
            fit, held_out = fold != f, fold == f
            part = cls._fit_groups(pred_age[fit], pred_std[fit], true_age[fit], groups, min_per_group, min_age, max_age)
            for i, tail in enumerate(candidate_tails):
                covered[i, held_out] = part._covers(pred_age[held_out], pred_std[held_out], true_age[held_out], tail)
        rate = covered.mean(1)
        tails = []
        for coverage in coverages:
            ok = np.nonzero(rate >= coverage)[0]
            tails.append(float(candidate_tails[ok[0]]) if len(ok) else float(candidate_tails[-1]))
        table.coverages, table.tails = np.asarray(coverages, dtype=np.float64), np.minimum.accumulate(tails)
        return table

    @classmethod
    def _fit_groups(cls, pred_age, pred_std, true_age, groups, min_per_group, min_age, max_age):
        r = normalized_residual(true_age, pred_age, pred_std)
        quantiles, counts = _mondrian_quantiles(r, [(true_age >= lo) & (true_age <= hi) for lo, hi in groups],
                                                min_per_group)
        return cls(groups, quantiles, counts, [], [], LEVELS, min_age, max_age)

    def to_dict(self) -> dict:
        return {"groups": self.groups, "quantiles": np.round(self.quantiles, 5).tolist(), "counts": self.counts,
                "coverages": self.coverages.tolist(), "tails": self.tails.tolist()}

    @classmethod
    def from_dict(cls, d: dict, levels, min_age: float = 0, max_age: float = 100) -> "TrueAgeGroupIntervals":
        return cls(d["groups"], d["quantiles"], d["counts"], d["coverages"], d["tails"], levels, min_age, max_age)

    def _tail_for(self, coverage: float) -> float:
        if coverage > self.coverages[-1] or coverage < self.coverages[0]:
            # outside the fitted range: the per-group level itself, a conservative fallback
            return (1 - coverage) / 2
        return float(np.interp(coverage, self.coverages, self.tails))

    def _hull(self, age, std, tail):
        low, high = np.full(len(age), np.inf), np.full(len(age), -np.inf)
        for (g_lo, g_hi), q in zip(self.groups, self.quantiles):
            q_lo, q_hi = np.interp([tail, 1 - tail], self.levels, q)
            lo = np.maximum(age + q_lo * std, g_lo)
            hi = np.minimum(age + q_hi * std, min(g_hi, self.max_age))
            admitted = lo <= hi
            low, high = np.where(admitted, np.minimum(low, lo), low), np.where(admitted, np.maximum(high, hi), high)
        return low, high

    def _covers(self, age, std, true_age, tail) -> np.ndarray:
        low, high = self._hull(age, np.maximum(std, MIN_STD), tail)
        return (true_age >= low) & (true_age <= high)

    def interval(self, age, std, coverage: float = 0.9) -> tuple[np.ndarray, np.ndarray]:
        low, high = self._hull(age, std, self._tail_for(coverage))
        empty = ~np.isfinite(low)
        if empty.any():
            # No group admits any age at this level (a prediction unlike every calibration
            # person): the loosest tables, and the point prediction if even they admit none.
            loose_low, loose_high = self._hull(age[empty], std[empty], float(self.levels[0]))
            ok = np.isfinite(loose_low)
            low[empty] = np.where(ok, loose_low, age[empty])
            high[empty] = np.where(ok, loose_high, age[empty])
        return np.clip(low, self.min_age, self.max_age), np.clip(high, self.min_age, self.max_age)


def age_group_name(lo, hi) -> str:
    """``"13-19"``; the open-ended last group ``"70+"``."""
    return f"{lo}+" if hi >= 120 else f"{lo}-{hi}"


def normalized_residual(true_age, pred_age, pred_std) -> np.ndarray:
    """The conformity score: error in units of the predicted spread (floored at ``MIN_STD``)."""
    return (np.asarray(true_age) - np.asarray(pred_age)) / np.maximum(np.asarray(pred_std), MIN_STD)


def _person_arrays(age, std) -> tuple[np.ndarray, np.ndarray]:
    """Predicted ages and spreads as 1-D arrays, the spread floored at ``MIN_STD``."""
    return np.atleast_1d(np.asarray(age, float)), np.maximum(np.atleast_1d(np.asarray(std, float)), MIN_STD)


def _conformal_quantiles(r: np.ndarray) -> np.ndarray:
    """Quantiles at ``LEVELS`` with the split-conformal finite-sample correction: the upper tail
    levels are pushed up and the lower ones down by the (n+1)/n factor."""
    n = len(r)
    adjusted = np.where(LEVELS >= 0.5, np.minimum(1.0, np.ceil((n + 1) * LEVELS) / n),
                        np.maximum(0.0, np.floor((n + 1) * LEVELS - 1) / n))
    return np.quantile(r, adjusted, method="higher" if n else "linear")


def _mondrian_quantiles(r: np.ndarray, selections, min_count: int):
    """One quantile row per selection; a selection with too few samples borrows the pooled row,
    never a noisy one."""
    pooled = _conformal_quantiles(r)
    counts = [int(sel.sum()) for sel in selections]
    return [_conformal_quantiles(r[sel]) if n >= min_count else pooled for sel, n in zip(selections, counts)], counts


def calibration_of(config, table: dict | None = None) -> tuple[AgeCalibration, bool]:
    """The calibration a model carries (``config.age_calibration``, or ``table`` when given: the
    one the backend's estimator was fitted with, see ``OnnxEstimator.age_calibration``) and whether
    it has one; the Gaussian stand-in otherwise. Warns when the table was fitted on another age
    estimate than the model now reports (``config.age_estimate``): its residuals are then measured
    from the wrong point, and the intervals and age checks are off until ``mivolo-lite calibrate``
    is rerun."""
    table = table or getattr(config, "age_calibration", None)
    if not table:
        return uncalibrated(config.min_age, config.max_age), False
    calibration = AgeCalibration.from_dict(table)
    reported = getattr(config, "age_estimate", "mean")
    if calibration.age_estimate != reported:
        warnings.warn(f"the age calibration was fitted on the {calibration.age_estimate} of the age distribution "
                      f"but the model reports its {reported} (config.age_estimate): age intervals and age checks "
                      f"are not calibrated; rerun `mivolo-lite calibrate` on held-out data, or set "
                      f"config.age_estimate = {calibration.age_estimate!r}", stacklevel=2)
    return calibration, True


def uncalibrated(min_age: float = 0, max_age: float = 100) -> AgeCalibration:
    """A Gaussian stand-in (residual ~ N(0, 1) in std units) for models without a calibration
    table; intervals from it are not guaranteed to cover anything."""
    from statistics import NormalDist

    q = np.array([NormalDist().inv_cdf(float(level)) for level in LEVELS])
    return AgeCalibration([0.0, 200.0], [q], [0], LEVELS, min_age, max_age, fitted_on="none (Gaussian assumption)")


