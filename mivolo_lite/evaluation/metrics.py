"""Age and gender metrics that understand exact ages, age intervals and missing labels."""

from __future__ import annotations

import numpy as np


def exact_age_mask(low, high) -> np.ndarray:
    """Labels that are an exact age (``low == high``), not an age group or unknown (NaN)."""
    low, high = np.asarray(low, dtype=np.float64), np.asarray(high, dtype=np.float64)
    return np.isfinite(low) & (np.abs(high - low) < 0.5)


def age_scores(pred_age, low, high) -> dict[str, np.ndarray]:
    """Per-sample ``mae`` (absolute error) and ``cs5`` (within 5 years) on exact ages,
    ``group_accuracy`` (the predicted age rounds into the labelled interval) on intervals; NaN
    where a score does not apply (NaN labels are unknown ages). Each figure is their mean."""
    pred_age, low, high = (np.asarray(a, dtype=np.float64) for a in (pred_age, low, high))
    known = ~(np.isnan(low) | np.isnan(high))
    exact = exact_age_mask(low, high)
    err = np.abs(pred_age - low)
    rounded = np.round(pred_age)
    return {"mae": np.where(exact, err, np.nan), "cs5": np.where(exact, err <= 5, np.nan),
            "group_accuracy": np.where(known & ~exact, (rounded >= low) & (rounded <= high), np.nan)}


def gender_scores(prob_male, gender) -> dict[str, np.ndarray]:
    """Per-sample ``gender_accuracy`` (1 right, 0 wrong) on known genders (1 male, 0 female), NaN
    on unknown ones (-1)."""
    gender = np.asarray(gender)
    correct = (np.asarray(prob_male) >= 0.5).astype(int) == gender
    return {"gender_accuracy": np.where(gender >= 0, correct, np.nan)}


def per_sample_scores(pred_age, prob_male, low, high, gender) -> dict[str, np.ndarray]:
    return {**age_scores(pred_age, low, high), **gender_scores(prob_male, gender)}


def weighted_mean(values: np.ndarray, weights: np.ndarray | None = None) -> float:
    """Mean over the samples where ``values`` is not NaN (NaN when there are none)."""
    values = np.asarray(values, dtype=np.float64)
    ok = ~np.isnan(values)
    if not ok.any():
        return float("nan")
    return float(np.average(values[ok], weights=None if weights is None else np.asarray(weights, np.float64)[ok]))


# sample count reported beside the figures: figure it counts -> its key
COUNTS = {"mae": "n_exact", "group_accuracy": "n_interval", "gender_accuracy": "n_gender"}


def _summarize(scores: dict[str, np.ndarray], weights) -> dict:
    """Sample counts, then the (weighted) mean of each score that some sample has."""
    out = {COUNTS[k]: int((~np.isnan(v)).sum()) for k, v in scores.items() if k in COUNTS}
    out.update({k: weighted_mean(v, weights) for k, v in scores.items() if not np.isnan(v).all()})
    return out


def age_metrics(pred_age: np.ndarray, low: np.ndarray, high: np.ndarray, weights: np.ndarray | None = None) -> dict:
    """MAE and CS@5 on exact labels, age-group accuracy on interval labels (:func:`age_scores`).
    ``weights``: per-sample weights of the means (e.g. 1 / images of that person, see
    :func:`per_person_weights`)."""
    return _summarize(age_scores(pred_age, low, high), weights)


def gender_accuracy(prob_male: np.ndarray, gender: np.ndarray, weights: np.ndarray | None = None) -> dict:
    return _summarize(gender_scores(prob_male, gender), weights)


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
