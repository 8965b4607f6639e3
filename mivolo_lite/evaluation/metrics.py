"""Age and gender metrics that understand exact ages, age intervals and missing labels."""

from __future__ import annotations

import numpy as np


def _mean(values: np.ndarray, weights: np.ndarray | None) -> float:
    return float(np.average(values, weights=weights))


def age_metrics(pred_age: np.ndarray, low: np.ndarray, high: np.ndarray, weights: np.ndarray | None = None) -> dict:
    """MAE and CS@5 (share within 5 years) on exact labels; age-group accuracy (predicted age
    rounds into the labelled interval) on interval labels. NaN labels are ignored. ``weights``:
    per-sample weights of the means (e.g. 1 / images of that person, see :func:`per_person_weights`)."""
    pred_age, low, high = (np.asarray(a, dtype=np.float64) for a in (pred_age, low, high))
    w = None if weights is None else np.asarray(weights, dtype=np.float64)
    known = ~(np.isnan(low) | np.isnan(high))
    exact = known & (np.abs(high - low) < 0.5)
    interval = known & ~exact
    out: dict = {"n_exact": int(exact.sum()), "n_interval": int(interval.sum())}
    if exact.any():
        err = np.abs(pred_age[exact] - low[exact])
        out["mae"] = _mean(err, None if w is None else w[exact])
        out["cs5"] = _mean(err <= 5, None if w is None else w[exact])
    if interval.any():
        rounded = np.round(pred_age[interval])
        hit = (rounded >= low[interval]) & (rounded <= high[interval])
        out["group_accuracy"] = _mean(hit, None if w is None else w[interval])
    return out


def gender_accuracy(prob_male: np.ndarray, gender: np.ndarray, weights: np.ndarray | None = None) -> dict:
    gender = np.asarray(gender)
    known = gender >= 0
    if not known.any():
        return {"n_gender": 0}
    correct = (np.asarray(prob_male)[known] >= 0.5).astype(int) == gender[known]
    return {"n_gender": int(known.sum()),
            "gender_accuracy": _mean(correct, None if weights is None else np.asarray(weights, np.float64)[known])}


def summarize_predictions(pred_age, prob_male, low, high, gender, weights=None) -> dict:
    return {**age_metrics(pred_age, low, high, weights), **gender_accuracy(prob_male, gender, weights)}


def per_person_weights(person_ids) -> np.ndarray | None:
    """``1 / (images of that person)`` per sample, so that every person counts once; ``None``
    when no person has more than one image. Sets gathered from video (PETA: up to 66 frames of
    one pedestrian) otherwise let a few people decide an image-level figure: one of them
    flipping moves it by several points."""
    ids = np.asarray([str(i) for i in person_ids])
    _, inverse, counts = np.unique(ids, return_inverse=True, return_counts=True)
    return None if counts.max(initial=1) <= 1 else 1.0 / counts[inverse]
