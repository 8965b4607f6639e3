"""Turning results into what the page shows: tables, annotated images, summaries and a video
that browsers play."""

from __future__ import annotations

import math
from pathlib import Path

from ._gradio import esc

DECISION_COLORS = {"over": (40, 170, 60), "under": (220, 50, 40), "uncertain": (230, 160, 20)}


def _fmt(x: float, digits: int = 1) -> float | None:
    return round(float(x), digits) if x is not None and math.isfinite(float(x)) else None


PERSON_COLUMNS = ["person", "age", "age interval", "gender", "gender score", "found by"]
TRACK_COLUMNS = {"track_id": "person (track)", "frames": "frames", "age": "age", "age_std": "age spread",
                 "gender": "gender", "gender_score": "gender score"}


def persons_table(result=None, age_check: bool = False, threshold: float = 18, risk: float = 0.05):
    """One row per person (left to right) as a pandas DataFrame; no rows but the column names
    for ``result=None`` (what the page shows before the first photo)."""
    import pandas as pd

    persons = result.persons if result is not None else []
    rows = []
    for i, p in enumerate(persons):
        lo, hi = p.age_interval if p.age_interval is not None else (float("nan"), float("nan"))
        row = {"person": i + 1, "age": _fmt(p.age), "age interval": f"{lo:.0f}–{hi:.0f}", "gender": p.gender,
               "gender score": _fmt(p.gender_score, 2),
               "found by": "+".join(k for k, box in (("face", p.face_box), ("body", p.body_box)) if box is not None)}
        if age_check:
            d = p.check_age(threshold, risk)
            row[f"P(age ≥ {threshold:g})"] = _fmt(d.prob_at_least, 3)
            row["decision"] = d.decision
        rows.append(row)
    columns = PERSON_COLUMNS + ([f"P(age ≥ {threshold:g})", "decision"] if age_check else [])
    df = pd.DataFrame(rows, columns=columns)
    coverage = next((p.coverage for p in persons if p.coverage), None)
    if coverage:
        df = df.rename(columns={"age interval": f"age interval ({coverage:.0%})"})
    return df


def tracks_table(video=None):
    """One row per tracked person of a :class:`~mivolo_lite.video.VideoResult` (ages to 0.1
    year, scores to 0.01); no rows but the column names for ``video=None``."""
    import pandas as pd

    tracks = sorted(video.tracks.values(), key=lambda t: t.track_id) if video is not None else []
    rows = [{"track_id": t.track_id, "frames": t.frames, "age": _fmt(t.age), "age_std": _fmt(t.age_std),
             "gender": t.gender, "gender_score": _fmt(t.gender_score, 2)} for t in tracks]
    return pd.DataFrame(rows, columns=list(TRACK_COLUMNS)).rename(columns=TRACK_COLUMNS)


def annotate(result, decisions=None):
    """``result.plot()`` with, in age-check mode, each person's decision (over / under / ?) in
    its colour at the end of the person's label."""
    if not decisions:
        return result.plot()
    texts = {"over": "{:g}+ yes", "under": "{:g}+ no", "uncertain": "{:g}+ ?"}
    return result.plot(tags=[(texts[d.decision].format(d.threshold), DECISION_COLORS[d.decision]) for d in decisions])


def photo_summary(result, predictor, model_label: str, detector_label: str, decisions, seconds: float) -> str:
    n = len(result.persons)
    lines = [f"**{n} person{'s' if n != 1 else ''} found** in {seconds:.1f} s · model: {model_label} · "
             f"detector: {detector_label}"]
    if n == 0:
        lines.append("No face or body was detected. The built-in OpenCV detector needs fairly frontal faces or "
                     "upright full bodies; try another photo or a YOLO detector.")
    if decisions:
        counts = {k: sum(d.decision == k for d in decisions) for k in ("over", "under", "uncertain")}
        d0 = decisions[0]
        lines.append(f"Age check at {d0.threshold:g} (accepted risk {d0.risk:g}): {counts['over']} over, "
                     f"{counts['under']} under, {counts['uncertain']} uncertain.")
    if not predictor.is_calibrated:
        lines.append("_This model has no interval calibration: the intervals and age-check probabilities assume "
                     "Gaussian errors._")
    return "\n\n".join(lines)


def video_summary(video, video_path, playable, model_label: str, detector_label: str, seconds: float) -> str:
    n_det = sum(len(f.persons) for f in video.frames)
    summary = (f"**{len(video.frames)} frame(s) analysed** in {seconds:.1f} s · "
               f"{len(video.tracks)} tracked person(s), {n_det} detection(s) · model: {model_label} · "
               f"detector: {detector_label}")
    if video.error:
        warning = video.error.replace(str(video_path), Path(video_path).name)
        summary += f"\n\n_Warning: {esc(warning)}_"
    if playable is not None and playable.suffix != ".webm":
        summary += "\n\n_This OpenCV has no WebM encoder: the video is mp4v, which browsers may not play; " \
                   "download it instead._"
    return summary


def browser_video(src: str | Path) -> Path:
    """Re-encode a video that browsers may not play (OpenCV's mp4v) as VP8 (or VP9) WebM, which
    they do; OpenCV's wheel bundles FFmpeg with libvpx, so this needs no ffmpeg binary. Returns
    ``src`` unchanged when no WebM writer is available (the file still downloads). The demo
    itself writes WebM directly (:meth:`~mivolo_lite.AgePredictor.predict_video`)."""
    import cv2

    from ..video import open_video_writer

    src = Path(src)
    cap = cv2.VideoCapture(str(src))
    try:
        ok, frame = cap.read()
        if not ok:
            return src
        try:
            writer, dst = open_video_writer(src.with_suffix(".webm"), cap.get(cv2.CAP_PROP_FPS) or 25.0,
                                            (frame.shape[1], frame.shape[0]), fallback=False)
        except OSError:
            return src
        try:
            while ok:
                writer.write(frame)
                ok, frame = cap.read()
        finally:
            writer.release()
    finally:
        cap.release()
    if not dst.exists() or dst.stat().st_size == 0:
        return src
    src.unlink(missing_ok=True)
    return dst
