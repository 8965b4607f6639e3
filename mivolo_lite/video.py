"""Video: per-frame detection, ByteTrack tracking (ultralytics) of persons, a per-track age
pooled over frames (the mixture of the per-frame age distributions), and an annotated video
that browsers play where OpenCV has the encoder."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch
from tqdm.auto import tqdm

from .calibration import MIN_STD
from .results import ImageResult


@dataclass
class TrackSummary:
    """One tracked person: the age and P(male) pooled over the ``frames`` it was seen in, and the
    calibrated interval of the pooled age at ``coverage``."""

    track_id: int
    frames: int
    age: float
    age_std: float
    gender: str
    gender_score: float
    age_interval: tuple[float, float] | None = None
    coverage: float | None = None

    def to_dict(self) -> dict:
        d = {k: (round(v, 3) if isinstance(v, float) else v) for k, v in self.__dict__.items()}
        if self.age_interval is not None:
            d["age_interval"] = [round(float(v), 2) for v in self.age_interval]
        return d


@dataclass
class VideoResult:
    """The analysed frames of one video (each an :class:`ImageResult` with its ``frame`` index and
    the persons' ``track_id``), one :class:`TrackSummary` per tracked person, and ``output``, the
    annotated video written (``None`` when none was asked or it could not be written)."""

    source: str
    frames: list[ImageResult] = field(default_factory=list)
    tracks: dict[int, TrackSummary] = field(default_factory=dict)
    fps: float = 0.0
    frames_expected: int | None = None
    error: str | None = None
    output: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_df(self, tracks: bool = False):
        """One row per person per analysed frame (as :meth:`ImageResult.to_df`, with ``frame`` and
        ``track_id``), or with ``tracks=True`` one row per tracked person."""
        import pandas as pd

        if tracks:
            rows = [{"source": self.source, **t.to_dict()} for t in sorted(self.tracks.values(),
                                                                          key=lambda t: t.track_id)]
            return pd.DataFrame(rows, columns=["source", *TrackSummary.__dataclass_fields__])
        return pd.DataFrame([row for f in self.frames for row in f.rows()])

    def to_dict(self) -> dict:
        return {"source": self.source, "fps": self.fps, "frames_expected": self.frames_expected,
                "frames_analysed": len(self.frames), "error": self.error, "output": self.output,
                "tracks": [t.to_dict() for t in sorted(self.tracks.values(), key=lambda t: t.track_id)],
                "frames": [f.to_dict() for f in self.frames]}

    def to_json(self, **kwargs) -> str:
        return json.dumps(self.to_dict(), **kwargs)


# Codecs tried for an annotated video, by container, those that browsers play first: VP9 in MP4
# and VP8/VP9 in WebM play in every current browser (OpenCV's wheels bundle FFmpeg with libvpx;
# they have no H.264 encoder); mp4v (MPEG-4 part 2), which every OpenCV writes, plays in none.
VIDEO_CODECS = {".webm": ("VP80", "VP90"), ".mp4": ("vp09", "mp4v")}


def open_video_writer(path: str | Path, fps: float, size: tuple[int, int], fallback: bool = True):
    """``(writer, path written)``: an opened ``cv2.VideoWriter`` for ``size`` = (width, height)
    frames, with the first codec of :data:`VIDEO_CODECS` for the suffix of ``path`` (the
    ``.mp4`` ones for other suffixes) that this OpenCV can write; with ``fallback``, a ``.webm``
    asked from an OpenCV without VP8/VP9 becomes an ``.mp4`` (mp4v). Raises ``OSError`` when
    none opens."""
    import cv2

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    choices = [(path, code) for code in VIDEO_CODECS.get(path.suffix.lower(), VIDEO_CODECS[".mp4"])]
    if fallback and path.suffix.lower() == ".webm":
        choices.append((path.with_suffix(".mp4"), "mp4v"))
    for target, code in choices:
        writer = cv2.VideoWriter(str(target), cv2.VideoWriter_fourcc(*code), fps, size)
        if writer.isOpened():
            return writer, target
        writer.release()
    raise OSError(f"cannot write the video {str(path)!r}: this OpenCV has no encoder for {path.suffix or 'it'}")


def _tracker(frame_rate: float):
    from ._ultralytics import ultralytics_offline

    ultralytics_offline()
    from ultralytics.trackers.byte_tracker import BYTETracker

    # ultralytics 8.4 dropped BYTETracker's frame_rate argument: a track survives ``track_buffer``
    # frames unseen, so scale it to about one second whatever the frame rate.
    buffer = max(1, int(round((frame_rate or 30) / 30 * 30)))
    args = SimpleNamespace(tracker_type="bytetrack", track_high_thresh=0.25, track_low_thresh=0.1,
                           new_track_thresh=0.25, track_buffer=buffer, match_thresh=0.8, fuse_score=True)
    return BYTETracker(args)


def _track(tracker, det, shape) -> torch.Tensor:
    """Track ids for ``det.person_boxes`` (-1 where the tracker did not confirm a track)."""
    from ultralytics.engine.results import Boxes

    ids = torch.full((len(det.person_boxes),), -1, dtype=torch.long)
    data = torch.cat([det.person_boxes, det.person_scores[:, None], torch.zeros(len(det.person_boxes), 1)], dim=1)
    tracks = tracker.update(Boxes(data.numpy(), shape[:2]), None)
    for row in np.asarray(tracks).reshape(-1, tracks.shape[-1] if len(tracks) else 8):
        ids[int(row[-1])] = int(row[4])
    return ids


class AgeSmoother:
    """Per track: the mixture of its frames' age distributions (inverse-variance weighted) and mean
    P(male). Frames of one track are far from independent views (the same face a few ms apart), so
    the pooled std is the mixture's, never the std of n independent draws: n identical frames
    give exactly the one frame's interval, frames that disagree widen it."""

    def __init__(self):
        self.stats: dict[int, list[float]] = {}

    def update(self, track_id: int, age: float, std: float, prob_male: float) -> tuple[float, float, float]:
        std = max(std, MIN_STD)
        w = 1.0 / std ** 2
        s = self.stats.setdefault(track_id, [0.0, 0.0, 0.0, 0, 0.0])
        s[0] += w
        s[1] += w * age
        s[2] += prob_male
        s[3] += 1
        s[4] += w * (std ** 2 + age ** 2)  # second moment of the mixture
        mean = s[1] / s[0]
        return mean, max(s[4] / s[0] - mean ** 2, MIN_STD ** 2) ** 0.5, s[2] / s[3]


def _analyse_frame(predictor, image: np.ndarray, tracker, path: str, frame_index: int) -> ImageResult:
    """Detection, tracking, face-body pairing and estimation for one RGB frame."""
    det = predictor.detector.detect(image).checked().clipped(image.shape[1], image.shape[0])
    det.track_ids = _track(tracker, det, image.shape)  # on the clipped boxes that the crops will use
    crops = predictor._crops(image, det)
    frame_result = ImageResult(path, image=image, detector=predictor.detector.name, frame=frame_index)
    predictor._estimate_pending([(frame_result, crops)])
    return frame_result


def predict_video(predictor, path, output: str | Path | None = None, stride: int = 1, max_frames: int | None = None,
                  progress: bool = True, max_seconds: float | None = None) -> VideoResult:
    """Run ``predictor`` over the frames of the video at ``path``; see
    :meth:`mivolo_lite.AgePredictor.predict_video` for the options.

    Never raises for a bad video: one that cannot be opened, that ends before its declared
    length, whose analysis fails on a frame or that runs out of time is reported in
    ``VideoResult.error``, with the frames analysed until then in ``VideoResult.frames``."""
    import cv2

    path = str(path)
    result = VideoResult(source=path)
    if not Path(path).is_file():
        result.error = f"cannot read video {path!r}: no such file"
        return result
    cap = cv2.VideoCapture(path)
    if not cap.isOpened():
        result.error = f"cannot read video {path!r}: not a video OpenCV can decode"
        return result
    result.fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
    declared = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
    result.frames_expected = declared or None
    tracker, smoother = _tracker(result.fps / max(stride, 1)), AgeSmoother()
    deadline = None if max_seconds is None else time.monotonic() + max_seconds
    writer = None
    index = 0
    stopped = None  # why the loop ended before the video did
    write_error = written = None
    bar = tqdm(total=declared or None, desc=Path(path).name, disable=not progress, unit="frame")
    try:
        while max_frames is None or index < max_frames:
            if deadline is not None and time.monotonic() >= deadline:
                stopped = (f"video {path!r}: stopped at the time limit of {max_seconds:g} s after "
                           f"{len(result.frames)} analysed frame(s)")
                break
            ok, frame = cap.read()
            if not ok or frame is None:
                break
            index += 1
            bar.update(1)
            if (index - 1) % stride:
                continue
            image = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
            try:
                frame_result = _analyse_frame(predictor, image, tracker, path, index - 1)
            except Exception as e:  # noqa: BLE001 - reported with the frames done so far, not raised
                stopped = f"video {path!r}: analysis failed at frame {index - 1}: {type(e).__name__}: {e}"
                break
            for person in frame_result.persons:
                if person.track_id is not None and person.track_id >= 0:
                    person.age, person.age_std, prob_male = smoother.update(
                        person.track_id, person.age, person.age_std, person.prob_male)
                    person.gender = "male" if prob_male >= 0.5 else "female"
                    person.gender_score = prob_male if prob_male >= 0.5 else 1 - prob_male
                    low, high = predictor.calibration.interval(person.age, person.age_std, predictor.coverage)
                    person.age_interval = (float(low[0]), float(high[0]))
                    s = smoother.stats[person.track_id]
                    result.tracks[person.track_id] = TrackSummary(
                        person.track_id, int(s[3]), person.age, person.age_std, person.gender, person.gender_score,
                        person.age_interval, person.coverage)
            if output is not None:
                annotated = cv2.cvtColor(frame_result.plot(), cv2.COLOR_RGB2BGR)
                if writer is None:
                    try:
                        writer, written = open_video_writer(output, (result.fps or 25.0) / max(stride, 1),
                                                            (annotated.shape[1], annotated.shape[0]))
                    except OSError as e:  # the analysis goes on without the annotated video
                        write_error, output = str(e), None
                if writer is not None:
                    writer.write(annotated)
            frame_result.image = None  # do not hold every frame in memory
            result.frames.append(frame_result)
    finally:
        bar.close()
        cap.release()
        if writer is not None:
            writer.release()
            result.output = str(written)
    if stopped is not None:
        result.error = stopped
    elif index == 0:
        result.error = f"cannot read video {path!r}: no frame could be decoded"
    elif declared and index < (declared if max_frames is None else min(declared, max_frames)) - 1:
        # one frame of slack: some containers declare one frame more than they hold
        result.error = f"video {path!r} ended early: decoded {index} of {declared} declared frames"
    if write_error is not None:
        result.error = "; ".join(e for e in (result.error, write_error) if e)
    return result
