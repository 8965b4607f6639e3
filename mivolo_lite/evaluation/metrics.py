"""Age and gender metrics that understand exact ages, age intervals and missing labels."""

from __future__ import annotations

import numpy as np


def age_metrics(pred_age: np.ndarray, low: np.ndarray, high: np.ndarray) -> dict:
    """MAE and CS@5 (share within 5 years) on exact labels; age-group accuracy (predicted age
    rounds into the labelled interval) on interval labels. NaN labels are ignored."""
    pred_age, low, high = (np.asarray(a, dtype=np.float64) for a in (pred_age, low, high))
    known = ~(np.isnan(low) | np.isnan(high))
    exact = known & (np.abs(high - low) < 0.5)
    interval = known & ~exact
    out: dict = {"n_exact": int(exact.sum()), "n_interval": int(interval.sum())}
    if exact.any():
        err = np.abs(pred_age[exact] - low[exact])
        out["mae"] = float(err.mean())
        out["cs5"] = float((err <= 5).mean())
    if interval.any():
        rounded = np.round(pred_age[interval])
        out["group_accuracy"] = float(((rounded >= low[interval]) & (rounded <= high[interval])).mean())
    return out


def gender_accuracy(prob_male: np.ndarray, gender: np.ndarray) -> dict:
    gender = np.asarray(gender)
    known = gender >= 0
    if not known.any():
        return {"n_gender": 0}
    correct = (np.asarray(prob_male)[known] >= 0.5).astype(int) == gender[known]
    return {"n_gender": int(known.sum()), "gender_accuracy": float(correct.mean())}


def summarize_predictions(pred_age, prob_male, low, high, gender) -> dict:
    return {**age_metrics(pred_age, low, high), **gender_accuracy(prob_male, gender)}
