"""``mivolo-lite compare`` / ``tools/compare_models.py``: is model B better than model A, or is the
difference noise?

Both models run on the same annotation CSVs; for each figure the difference ``B - A`` gets a
95 % interval from a bootstrap that resamples *people* (``group_id``; the file name where a set
has no ids), not images, because images of one person are not independent: PETA's 977
validation images are 343 pedestrians, one of them in 57 frames. Figures are given per image
and, where people repeat, with each person counted once.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..data.annotations import read_annotations
from .metrics import per_person_weights
from .report import _fmt, _load, _predict_records

# figure -> (label, lower is better, shown as percentage)
FIGURES = {"mae": ("age MAE", True, False), "cs5": ("CS@5", False, True),
           "group_accuracy": ("age-group acc.", False, True), "gender_accuracy": ("gender acc.", False, True)}


def per_sample_scores(preds) -> dict[str, np.ndarray]:
    """Each figure as a per-sample score whose mean is the figure (NaN where it does not apply)."""
    exact = np.isfinite(preds.age_low) & (np.abs(preds.age_high - preds.age_low) < 0.5)
    interval = np.isfinite(preds.age_low) & np.isfinite(preds.age_high) & ~exact
    err = np.where(exact, np.abs(preds.age - preds.age_low), np.nan)
    rounded = np.round(preds.age)
    group_hit = (rounded >= preds.age_low) & (rounded <= preds.age_high)
    gender_hit = ((preds.prob_male >= 0.5).astype(int) == preds.gender)
    return {"mae": err, "cs5": np.where(exact, err <= 5, np.nan), "group_accuracy": np.where(interval, group_hit, np.nan),
            "gender_accuracy": np.where(preds.gender >= 0, gender_hit, np.nan)}


def _weighted_mean(values: np.ndarray, weights: np.ndarray) -> float:
    ok = np.isfinite(values)
    return float(np.average(values[ok], weights=weights[ok])) if ok.any() else float("nan")


def compare_scores(scores_a: dict, scores_b: dict, person_ids, n_boot: int = 2000, seed: int = 0) -> dict:
    """Figures of A and B, per image and per person, with bootstrap-over-people 95 % intervals of
    ``B - A``."""
    ids = np.asarray([str(i) for i in person_ids])
    people, inverse = np.unique(ids, return_inverse=True)
    rows_of = [np.flatnonzero(inverse == k) for k in range(len(people))]
    person_w = per_person_weights(ids)
    weightings = {"images": np.ones(len(ids))}
    if person_w is not None:
        weightings["people"] = person_w
    rng = np.random.default_rng(seed)
    draws = [np.concatenate([rows_of[k] for k in rng.integers(0, len(people), len(people))]) for _ in range(n_boot)]
    out = {"n_images": len(ids), "n_people": len(people), "figures": {}}
    for name in FIGURES:
        a, b = scores_a[name], scores_b[name]
        if not np.isfinite(a).any():
            continue
        out["figures"][name] = {}
        for how, w in weightings.items():
            diffs = [_weighted_mean(b[r], w[r]) - _weighted_mean(a[r], w[r]) for r in draws]
            low, high = np.nanpercentile(diffs, [2.5, 97.5])
            out["figures"][name][how] = {"a": _weighted_mean(a, w), "b": _weighted_mean(b, w),
                                         "diff": _weighted_mean(b, w) - _weighted_mean(a, w),
                                         "ci95": [float(low), float(high)]}
    return out


def compare_models(model_a, model_b, annotations, device: str = "cpu", batch_size: int = 64, flip_tta: bool = True,
                   limit: int | None = None, n_boot: int = 2000, seed: int = 0) -> tuple[dict, str]:
    """Returns the figures per CSV and a markdown report."""
    loaded = [_load(m) for m in (model_a, model_b)]
    annotations = [annotations] if isinstance(annotations, (str, Path)) else list(annotations)
    results, lines = {}, ["# Model comparison", "", f"A: `{model_a}`", f"B: `{model_b}`", ""]
    for csv_path in annotations:
        records = read_annotations(csv_path)[:limit] if limit else read_annotations(csv_path)
        scores = []
        for model, processor in loaded:
            preds = _predict_records(model.to(device).eval(), processor, records, batch_size, flip_tta)
            scores.append(per_sample_scores(preds))
        ids = [r.group_id or r.image for r in records]
        result = compare_scores(scores[0], scores[1], ids, n_boot=n_boot, seed=seed)
        results[Path(csv_path).stem] = result
        lines += [f"## {Path(csv_path).stem} ({result['n_images']} images, {result['n_people']} people)", "",
                  "| figure | counted | A | B | B - A | 95 % interval (bootstrap over people) |", "|---|---|---|---|---|---|"]
        for name, by in result["figures"].items():
            label, _, pct = FIGURES[name]
            for how, f in by.items():
                scale = 100 if pct else 1
                lines.append(f"| {label} | per {'image' if how == 'images' else 'person'} | {_fmt(f['a'], pct)} | "
                             f"{_fmt(f['b'], pct)} | {scale * f['diff']:+.2f} | "
                             f"{scale * f['ci95'][0]:+.2f} … {scale * f['ci95'][1]:+.2f} |")
        lines.append("")
    return results, "\n".join(lines)
