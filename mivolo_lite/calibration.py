"""Calibrated age intervals and age checks.

Split-conformal calibration on held-out data, normalised by the predicted spread: for each
calibration person the signed residual ``r = (true_age - expected_age) / age_std`` is computed,
and its empirical quantiles are stored, separately for bands of predicted age (Mondrian
conformal prediction: errors grow with age, so one global table would over-cover children and
under-cover the old). Then

- the ``c`` interval is ``[age + q_(1-c)/2 * std, age + q_(1+c)/2 * std]`` in the person's band,
  so easy faces (small std) get narrow intervals and hard ones wide, and the interval may be
  asymmetric where the model is biased;
- ``P(age >= t) = 1 - F_r((t - age) / std)`` with ``F_r`` the band's empirical residual CDF.

The table lives in ``config.age_calibration`` and is saved and loaded with the model.
"""

from __future__ import annotations


from dataclasses import dataclass

import numpy as np

DEFAULT_BAND_EDGES = (0.0, 13.0, 20.0, 30.0, 45.0, 60.0, 200.0)
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
                 fitted_on: str = ""):
        self.band_edges = np.asarray(band_edges, dtype=np.float64)
        self.quantiles = np.asarray(quantiles, dtype=np.float64)  # (bands, levels), non-decreasing rows
        self.counts = list(counts)
        self.levels = np.asarray(levels, dtype=np.float64)
        self.min_age, self.max_age, self.fitted_on = min_age, max_age, fitted_on

    # -- fitting ---------------------------------------------------------------------------------
    @classmethod
    def fit(cls, pred_age, pred_std, true_age, band_edges=DEFAULT_BAND_EDGES, min_per_band: int = 40,
            min_age: float = 0, max_age: float = 100, fitted_on: str = "") -> "AgeCalibration":
        pred_age, pred_std, true_age = (np.asarray(a, dtype=np.float64) for a in (pred_age, pred_std, true_age))
        ok = np.isfinite(pred_age) & np.isfinite(pred_std) & np.isfinite(true_age)
        pred_age, pred_std, true_age = pred_age[ok], pred_std[ok], true_age[ok]
        if len(true_age) < 20:
            raise ValueError(f"need at least 20 calibration samples with exact ages, got {len(true_age)}")
        r = (true_age - pred_age) / np.maximum(pred_std, 0.5)
        all_q = cls._conformal_quantiles(r)
        quantiles, counts = [], []
        for lo, hi in zip(band_edges[:-1], band_edges[1:]):
            sel = (pred_age >= lo) & (pred_age < hi)
            counts.append(int(sel.sum()))
            # too few samples: borrow the global table, never a noisy one
            quantiles.append(cls._conformal_quantiles(r[sel]) if sel.sum() >= min_per_band else all_q)
        return cls(band_edges, quantiles, counts, LEVELS, min_age, max_age, fitted_on)

    @staticmethod
    def _conformal_quantiles(r: np.ndarray) -> np.ndarray:
        """Quantiles with the split-conformal finite-sample correction: the upper tail levels
        are pushed up and the lower ones down by the (n+1)/n factor."""
        n = len(r)
        adjusted = np.where(LEVELS >= 0.5, np.minimum(1.0, np.ceil((n + 1) * LEVELS) / n),
                            np.maximum(0.0, np.floor((n + 1) * LEVELS - 1) / n))
        return np.quantile(r, adjusted, method="higher" if n else "linear")

    # -- serialisation ---------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {"method": "mondrian_normalized_conformal", "band_edges": self.band_edges.tolist(),
                "levels": self.levels.tolist(), "quantiles": np.round(self.quantiles, 5).tolist(),
                "counts": self.counts, "min_age": self.min_age, "max_age": self.max_age, "fitted_on": self.fitted_on}

    @classmethod
    def from_dict(cls, d: dict) -> "AgeCalibration":
        return cls(d["band_edges"], d["quantiles"], d["counts"], d["levels"], d.get("min_age", 0),
                   d.get("max_age", 100), d.get("fitted_on", ""))

    # -- use -------------------------------------------------------------------------------------
    def _band(self, age: np.ndarray) -> np.ndarray:
        return np.clip(np.searchsorted(self.band_edges, age, side="right") - 1, 0, len(self.quantiles) - 1)

    def _quantile(self, band: np.ndarray, level: float) -> np.ndarray:
        return np.array([np.interp(level, self.levels, self.quantiles[b]) for b in np.atleast_1d(band)])

    def interval(self, age, std, coverage: float = 0.9) -> tuple[np.ndarray, np.ndarray]:
        if not 0 < coverage < 1:
            raise ValueError(f"coverage must be between 0 and 1, got {coverage}")
        age, std = np.atleast_1d(np.asarray(age, float)), np.maximum(np.atleast_1d(np.asarray(std, float)), 0.5)
        band = self._band(age)
        tail = (1 - coverage) / 2
        low = age + self._quantile(band, tail) * std
        high = age + self._quantile(band, 1 - tail) * std
        return np.clip(low, self.min_age, self.max_age), np.clip(high, self.min_age, self.max_age)

    def prob_at_least(self, age, std, threshold: float) -> np.ndarray:
        age, std = np.atleast_1d(np.asarray(age, float)), np.maximum(np.atleast_1d(np.asarray(std, float)), 0.5)
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


def uncalibrated(min_age: float = 0, max_age: float = 100) -> AgeCalibration:
    """A Gaussian stand-in (residual ~ N(0, 1) in std units) for models without a calibration
    table; intervals from it are not guaranteed to cover anything."""
    from statistics import NormalDist

    q = np.array([NormalDist().inv_cdf(float(level)) for level in LEVELS])
    return AgeCalibration([0.0, 200.0], [q], [0], LEVELS, min_age, max_age, fitted_on="none (Gaussian assumption)")


