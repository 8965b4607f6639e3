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

from .metrics import per_person_weights, per_sample_scores, weighted_mean
from .report import _fmt, _load, _predict_records, read_evaluation_records, runner_for

# figure -> (label, shown as a percentage)
FIGURES = {"mae": ("age MAE", False), "cs5": ("CS@5", True), "group_accuracy": ("age-group acc.", True),
           "gender_accuracy": ("gender acc.", True)}


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
        if np.isnan(a).all():
            continue
        out["figures"][name] = {}
        for how, w in weightings.items():
            diffs = [weighted_mean(b[r], w[r]) - weighted_mean(a[r], w[r]) for r in draws]
            low, high = np.nanpercentile(diffs, [2.5, 97.5])
            fig_a, fig_b = weighted_mean(a, w), weighted_mean(b, w)
            out["figures"][name][how] = {"a": fig_a, "b": fig_b, "diff": fig_b - fig_a, "ci95": [float(low), float(high)]}
    return out


def compare_models(model_a, model_b, annotations, device: str = "cpu", batch_size: int = 64, flip_tta: bool = True,
                   limit: int | None = None, n_boot: int = 2000, seed: int = 0,
                   backends: tuple[str, str] = ("torch", "torch")) -> tuple[dict, str]:
    """Returns the figures per CSV and a markdown report. ``backends``: what runs each model (see
    :func:`~mivolo_lite.export.build_estimator`); e.g. one model twice, ``("onnx", "onnx-int8")``,
    measures what its int8 graphs cost."""
    loaded = [(runner_for(model.to(device).eval(), backend, device), processor)
              for (model, processor), backend in zip(map(_load, (model_a, model_b)), backends)]
    annotations = [annotations] if isinstance(annotations, (str, Path)) else list(annotations)
    results = {}
    for csv_path in annotations:
        records = read_evaluation_records(csv_path, limit)
        scores = []
        for model, processor in loaded:
            p = _predict_records(model, processor, records, batch_size, flip_tta)
            scores.append(per_sample_scores(p.age, p.prob_male, p.age_low, p.age_high, p.gender))
        results[Path(csv_path).stem] = compare_scores(scores[0], scores[1], [r.person for r in records],
                                                      n_boot=n_boot, seed=seed)
    names = [f"`{m}`" + ("" if backend == "torch" else f" ({backend})") for m, backend in zip((model_a, model_b), backends)]
    return results, comparison_report(results, *names)


def comparison_report(results: dict, name_a: str, name_b: str, title: str = "Model comparison") -> str:
    """Markdown: per CSV, every figure of A and B with the bootstrap interval of ``B - A``."""
    lines = [f"# {title}", "", f"A: {name_a}", f"B: {name_b}", ""]
    for stem, result in results.items():
        lines += [f"## {stem} ({result['n_images']} images, {result['n_people']} people)", "",
                  "| figure | counted | A | B | B - A | 95 % interval (bootstrap over people) |", "|---|---|---|---|---|---|"]
        for name, by in result["figures"].items():
            label, pct = FIGURES[name]
            for how, f in by.items():
                scale = 100 if pct else 1
                lines.append(f"| {label} | per {'image' if how == 'images' else 'person'} | {_fmt(f['a'], pct)} | "
                             f"{_fmt(f['b'], pct)} | {scale * f['diff']:+.2f} | "
                             f"{scale * f['ci95'][0]:+.2f} … {scale * f['ci95'][1]:+.2f} |")
        lines.append("")
    return "\n".join(lines)
