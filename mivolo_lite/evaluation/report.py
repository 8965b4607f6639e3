"""``mivolo-lite eval`` / ``tools/evaluate.py``: metrics with breakdowns, a markdown report and
plots; ``mivolo-lite calibrate`` / ``tools/calibrate.py``: fit the interval calibration."""

from __future__ import annotations

import copy
import csv
import dataclasses
import json
import random
import sys
from pathlib import Path

import numpy as np

from ..calibration import AGE_GROUPS, AgeCalibration, age_group_name, calibration_of
from ..data.annotations import read_annotations
from ..data.dataset import AgeDataset
from .inference import Predictions, predict_dataset
from .metrics import per_person_weights, summarize_predictions

SAMPLE_SEED = 0  # --limit draws the same rows every run


def read_evaluation_records(csv_path, limit: int | None = None) -> list:
    """The rows to evaluate on. A CSV with neither box column is refused (the model would be
    scored on crops it never got); ``limit``: a random sample of that many rows (fixed seed), not
    the first ones (a CSV sorted by age would give a biased figure), and it is said so."""
    with open(csv_path, newline="") as f:
        columns = set(csv.DictReader(f).fieldnames or [])
    if not columns & {"face_box", "body_box"}:
        raise ValueError(f"{csv_path}: annotation CSV lacks the box columns 'face_box' and 'body_box' (give at "
                         "least one; a crop that is the face is written as the whole image's box)")
    records = read_annotations(csv_path)
    if limit and limit < len(records):
        keep = sorted(random.Random(SAMPLE_SEED).sample(range(len(records)), limit))
        print(f"{Path(csv_path).name}: a random sample of {limit} of {len(records)} rows (seed {SAMPLE_SEED})",
              file=sys.stderr)
        records = [records[i] for i in keep]
    return records

CHECK_THRESHOLDS = (18, 21, 25)


def _load(model):
    from ..hub import load_model_and_processor

    if isinstance(model, tuple):
        return model
    return load_model_and_processor(model)


def runner_for(model, backend: str = "torch", device: str = "cpu"):
    """The model itself (torch), or the estimator the predictor would run for ``backend`` (see
    :func:`~mivolo_lite.export.build_estimator`; ``"onnx-int8"``: the folder's int8 graphs)."""
    if backend == "torch":
        import torch

        # a channels-last copy: torch's convolutions run faster on it, on the CPU too (as in AgePredictor)
        return copy.deepcopy(model).to(memory_format=torch.channels_last)
    from ..export import build_estimator

    return build_estimator(copy.deepcopy(model).fuse_for_inference(), backend, device, "fp32")


def _predict_records(model, processor, records, batch_size, flip_tta) -> Predictions:
    return predict_dataset(model, AgeDataset(records, processor), batch_size=batch_size, flip_tta=flip_tta)


def interval_stats(preds: Predictions, calibration: AgeCalibration, coverage: float = 0.9) -> dict:
    exact = preds.exact_age
    if not exact.any():
        return {}
    low, high = calibration.interval(preds.age[exact], preds.age_std[exact], coverage)
    y = preds.age_low[exact]
    # The whole-year age must lie in the real-valued interval the API returns; no rounding outwards,
    # which would credit intervals that miss by up to a year on each side.
    covered = (y >= low) & (y <= high)
    out = {"coverage_target": coverage, "coverage": float(covered.mean()), "mean_width": float((high - low).mean()),
           "per_age_band": {}}
    for lo, hi in AGE_GROUPS:
        sel = (y >= lo) & (y <= hi)
        if sel.sum() >= 5:
            out["per_age_band"][age_group_name(lo, hi)] = {"n": int(sel.sum()), "coverage": float(covered[sel].mean()),
                                                       "mean_width": float((high - low)[sel].mean())}
    return out


def age_check_stats(preds: Predictions, calibration: AgeCalibration, thresholds=CHECK_THRESHOLDS,
                    risk: float = 0.05) -> dict:
    """For each threshold: share of under-age people wrongly passed as ``over`` (the costly
    error for a shop) and share of adults sent to ``uncertain`` (the cost in ID checks)."""
    exact = preds.exact_age
    y, age, std = preds.age_low[exact], preds.age[exact], preds.age_std[exact]
    out = {}
    for t in thresholds:
        p = calibration.prob_at_least(age, std, t)
        over, under = p >= 1 - risk, p <= risk
        minors, adults = y < t, y >= t
        out[str(t)] = {"risk": risk, "n_under": int(minors.sum()), "n_over": int(adults.sum()),
                       "under_passed_as_over": float(over[minors].mean()) if minors.any() else None,
                       "over_sent_to_uncertain": float((~over & ~under)[adults].mean()) if adults.any() else None,
                       "over_called_under": float(under[adults].mean()) if adults.any() else None,
                       "_prob": p.tolist(), "_truth": (y >= t).tolist()}
    return out


def _breakdowns(preds: Predictions, records) -> dict:
    out = {"overall": summarize_predictions(preds.age, preds.prob_male, preds.age_low, preds.age_high, preds.gender)}
    # only sets with several images of one person get this (AnnotationRecord.person)
    weights = per_person_weights([records[i].person for i in preds.index])
    if weights is not None:
        out["per_person"] = {**summarize_predictions(preds.age, preds.prob_male, preds.age_low, preds.age_high,
                                                     preds.gender, weights), "n_people": int(round(weights.sum()))}
    y, exact = preds.age_low, preds.exact_age
    bands = {}
    for lo, hi in AGE_GROUPS:
        sel = exact & (y >= lo) & (y <= hi)
        if sel.any():
            bands[age_group_name(lo, hi)] = summarize_predictions(preds.age[sel], preds.prob_male[sel], y[sel],
                                                              preds.age_high[sel], preds.gender[sel])
    groups = sorted({r.age_group for r in records if r.age_group})
    for g in groups:
        sel = np.array([records[i].age_group == g for i in preds.index])
        bands[g] = summarize_predictions(preds.age[sel], preds.prob_male[sel], preds.age_low[sel],
                                         preds.age_high[sel], preds.gender[sel])
    out["per_age_group"] = bands
    for key, attr in (("per_gender", "gender"), ("per_race", "race")):
        values = sorted({getattr(r, attr) for r in records if getattr(r, attr)})
        if values:
            out[key] = {}
            for v in values:
                sel = np.array([getattr(records[i], attr) == v for i in preds.index])
                out[key][v] = summarize_predictions(preds.age[sel], preds.prob_male[sel], preds.age_low[sel],
                                                    preds.age_high[sel], preds.gender[sel])
    return out


def _fmt(v, pct=False):
    if v is None:
        return "–"
    return f"{100 * v:.1f} %" if pct else f"{v:.2f}"


def _metrics_table(rows: dict) -> list[str]:
    lines = ["| subset | n | MAE | CS@5 | age-group acc. | gender acc. |", "|---|---|---|---|---|---|"]
    for name, m in rows.items():
        n = m.get("n_exact", 0) + m.get("n_interval", 0)
        lines.append(f"| {name} | {n} | {_fmt(m.get('mae'))} | {_fmt(m.get('cs5'), True)} | "
                     f"{_fmt(m.get('group_accuracy'), True)} | {_fmt(m.get('gender_accuracy'), True)} |")
    return lines


def evaluate_model(model, annotations, output_dir, device: str = "cpu", batch_size: int = 64, flip_tta: bool = True,
                   limit: int | None = None, coverage: float = 0.9, plots: bool = True, backend: str = "torch") -> Path:
    """Evaluate on annotation CSVs; writes ``report.md``, ``metrics.json`` and PNG plots to
    ``output_dir`` and returns the report path. ``backend``: what runs the model, as in
    :class:`~mivolo_lite.AgePredictor` (e.g. ``"onnx-int8"`` to measure its int8 graphs)."""
    model, processor = _load(model)
    model = model.to(device).eval()
    runner = runner_for(model, backend, device)
    calibration, calibrated = calibration_of(model.config, getattr(runner, "age_calibration", None))
    out_dir = Path(output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    annotations = [annotations] if isinstance(annotations, (str, Path)) else list(annotations)
    summary, lines = {}, ["# Evaluation report", ""]
    lines += [f"Model: `{getattr(model, 'name_or_path', '') or model.config.preset}` (preset `{model.config.preset}`), "
              f"{'' if backend == 'torch' else f'backend: {backend}, '}"
              f"flip TTA: {flip_tta}, intervals: {'calibrated, ' + calibration.fitted_on if calibrated else 'UNCALIBRATED'}.", ""]
    for csv_path in annotations:
        name = Path(csv_path).stem
        records = read_evaluation_records(csv_path, limit)
        preds = _predict_records(runner, processor, records, batch_size, flip_tta)
        result = _breakdowns(preds, records)
        # input modes, where a person has both a face and a body
        both = [r for r in records if r.face_box is not None and r.body_box is not None]
        if both:
            modes = {"face+body": both, "face only": [dataclasses.replace(r, body_box=None) for r in both],
                     "body only": [dataclasses.replace(r, face_box=None) for r in both]}
            result["per_input"] = {}
            for mode, recs in modes.items():
                p = _predict_records(runner, processor, recs, batch_size, flip_tta)
                result["per_input"][mode] = summarize_predictions(p.age, p.prob_male, p.age_low, p.age_high, p.gender)
        result["intervals"] = interval_stats(preds, calibration, coverage)
        checks = age_check_stats(preds, calibration)
        result["age_check"] = {t: {k: v for k, v in c.items() if not k.startswith("_")} for t, c in checks.items()}
        summary[name] = result

        lines += [f"## {name} ({len(records)} people, `{csv_path}`)", ""]
        headline = {"all": result["overall"]}
        if "per_person" in result:
            headline[f"all, each of {result['per_person']['n_people']} people counted once"] = result["per_person"]
        lines += _metrics_table(headline) + [""]
        lines += ["### Per age group", ""] + _metrics_table(result["per_age_group"]) + [""]
        for key, title in (("per_gender", "Per gender"), ("per_race", "Per race"), ("per_input", "Per input")):
            if key in result:
                lines += [f"### {title}", ""] + _metrics_table(result[key]) + [""]
        iv = result["intervals"]
        if iv:
            lines += [f"### {100 * coverage:.0f} % age intervals", "",
                      f"Overall coverage {_fmt(iv['coverage'], True)}, mean width {iv['mean_width']:.1f} years.", "",
                      "| true age | n | coverage | mean width |", "|---|---|---|---|"]
            lines += [f"| {b} | {v['n']} | {_fmt(v['coverage'], True)} | {v['mean_width']:.1f} |"
                      for b, v in iv["per_age_band"].items()] + [""]
        if any(c["n_under"] or c["n_over"] for c in checks.values()):
            lines += ["### Age check (risk 5 %)", "", "| threshold | minors | minors passed as over | adults | "
                      "adults sent to uncertain |", "|---|---|---|---|---|"]
            lines += [f"| {t} | {c['n_under']} | {_fmt(c['under_passed_as_over'], True)} | {c['n_over']} | "
                      f"{_fmt(c['over_sent_to_uncertain'], True)} |" for t, c in checks.items()] + [""]
        if plots:
            from .plots import save_plots

            images = save_plots(preds, records, result, checks, out_dir, name)
            lines += [f"![{Path(p).stem}]({Path(p).name})" for p in images] + [""]
    with open(out_dir / "metrics.json", "w") as f:
        json.dump(summary, f, indent=1)
    report = out_dir / "report.md"
    report.write_text("\n".join(lines))
    return report


def exact_age_predictions(model, annotations, batch_size: int = 64, limit: int | None = None,
                          flip_tta: bool = True) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """``(predicted age, predicted spread, true age)`` of the exactly-aged people of each CSV:
    what calibration is fitted on."""
    model, processor = _load(model)
    out = []
    for csv_path in annotations:
        records = read_annotations(csv_path, limit)
        preds = _predict_records(model, processor, records, batch_size, flip_tta)
        exact = preds.exact_age
        out.append((preds.age[exact], preds.age_std[exact], preds.age_low[exact]))
    return out


def fit_age_calibration(model, annotations, config, batch_size: int = 64, limit: int | None = None,
                        flip_tta: bool = True) -> AgeCalibration:
    """:class:`AgeCalibration` fitted on the exact ages in ``annotations`` as ``model`` (a folder,
    or a ``(model or estimator, processor)`` pair) reads them; ``config``: the model's (age range,
    age estimate). Raises ValueError when the CSVs hold too few exact ages."""
    annotations = [annotations] if isinstance(annotations, (str, Path)) else list(annotations)
    per_csv = exact_age_predictions(model, annotations, batch_size, limit, flip_tta)
    ages, stds, truth = (np.concatenate(columns) for columns in zip(*per_csv))
    # the CSVs that gave exact ages (PETA's age groups give none)
    fitted_on = ", ".join(Path(a).name for a, (_, _, t) in zip(annotations, per_csv) if len(t))
    return AgeCalibration.fit(ages, stds, truth, min_age=config.min_age, max_age=config.max_age,
                              fitted_on=fitted_on, age_estimate=config.age_estimate)


def calibrate_model(model, annotations, output=None, device: str = "cpu", batch_size: int = 64,
                    limit: int | None = None, flip_tta: bool = True, weights_dtype: str = "float32") -> dict:
    """Fit :class:`AgeCalibration` on the exact ages in ``annotations`` (held-out data, never the
    training split) and save the model with it to ``output`` (default: the model's own folder),
    its weights stored in ``weights_dtype`` (see :func:`mivolo_lite.hub.save_model`). A calibrated
    model is one to ship: training-only heads are dropped (the predictions are the same)."""
    from ..hub import round_to_storage, save_model

    source = model
    model, processor = _load(model)
    model = round_to_storage(model.drop_training_heads(), weights_dtype).to(device).eval()
    # the predictions through the runner evaluate_model uses (the model saved below stays as it is)
    calibration = fit_age_calibration((runner_for(model, "torch", device), processor), annotations, model.config,
                                      batch_size, limit, flip_tta)
    model.config.age_calibration = calibration.to_dict()
    target = output or (source if isinstance(source, (str, Path)) and Path(source).is_dir() else None)
    if target is None:
        raise ValueError("give output=<folder> to save the calibrated model")
    save_model(model, processor, target, weights_dtype)
    return model.config.age_calibration
