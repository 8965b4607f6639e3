"""What the page's buttons and controls do: analyse a photo, redo the age check on the last
result, annotate a video. Bad input ends in a ``gr.Error`` with a clear message in the page."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

from ._gradio import esc, user_error
from .render import annotate, persons_table, photo_summary, tracks_table, video_summary
from .uploads import read_upload


def _cleanup_old(folder: Path, max_age_s: float = 3600) -> None:
    now = time.time()
    for f in folder.glob("*"):
        try:
            if f.is_file() and now - f.stat().st_mtime > max_age_s:
                f.unlink()
        except OSError:
            pass


class DemoCallbacks:
    """The event handlers, sharing one :class:`~mivolo_lite.app.pool.PredictorPool`.
    ``time_limit_s``: the longest a request may run; ``work_dir``: where annotated photos and videos
    are written before Gradio caches them."""

    def __init__(self, pool, max_pixels: int | None, max_upload_mb: float | None, time_limit_s: float | None,
                 work_dir: Path):
        self.pool, self.max_pixels, self.max_upload_mb = pool, max_pixels, max_upload_mb
        self.time_limit_s, self.work_dir = time_limit_s, work_dir

    def _predictor(self, model_label, detector_label):
        try:
            return self.pool.get(model_label, detector_label)
        except Exception as e:  # noqa: BLE001 - shown in the page
            raise user_error(esc(f"Cannot load {model_label!r} with detector {detector_label!r}: {e}"),
                             title="Model not available") from None

    def _within_time_limit(self, start: float, stage: str) -> None:
        if self.time_limit_s and time.perf_counter() - start > self.time_limit_s:
            raise user_error(f"The request ran over the time limit of {self.time_limit_s:g} s ({stage}); try a "
                             "smaller image.", title="Time limit")

    def _new_output(self, suffix: str) -> Path:
        """A file name in the work folder that no other request uses (old files are removed)."""
        _cleanup_old(self.work_dir)
        return self.work_dir / f"annotated_{os.getpid()}_{threading.get_ident()}_{time.time_ns()}{suffix}"

    def _image_file(self, rgb) -> str:
        """The annotated photo as a JPEG file of its own, handed to Gradio by path. Gradio caches a
        returned array by rewriting, in place, the file named after its content: two requests with the
        same answer (the same photo at once) then share one file, and one could download it while the
        other rewrites it (a truncated image). A path is copied into the cache under a temporary name
        and renamed, and the names here differ. Encoded as Gradio encodes (PIL, default JPEG settings)."""
        from PIL import Image

        path = self._new_output(".jpg")
        Image.fromarray(rgb).save(path, format="JPEG")
        return str(path)

    def _outputs(self, result, predictor, model_label, detector_label, age_check, threshold, risk, seconds):
        threshold, risk = float(threshold), float(risk)
        decisions = [p.check_age(threshold, risk) for p in result.persons] if age_check else None
        table = persons_table(result, bool(age_check), threshold, risk)
        summary = photo_summary(result, predictor, model_label, detector_label, decisions, seconds)
        return self._image_file(annotate(result, decisions)), table, summary

    def analyze(self, upload, model_label, detector_label, age_check, threshold, risk):
        """The photo (see :func:`~.uploads.read_upload` for ``upload``): annotated image, persons
        table, summary, and the state for :meth:`recheck`."""
        from .._image_io import ImageLoadError

        if upload is None:
            raise user_error("Upload a photo (or take one with the webcam) first.", title="No image")
        start = time.perf_counter()
        predictor = self._predictor(model_label, detector_label)
        try:
            image = read_upload(upload, self.max_pixels, self.max_upload_mb)
        except ImageLoadError as e:
            raise user_error(f"Cannot read the uploaded image: {esc(e.reason)}", "Bad image") from None
        self._within_time_limit(start, "reading the image")
        try:  # detection apart from estimation, so that the time limit is checked between them
            detections = predictor.detector.detect(image)
        except Exception as e:  # noqa: BLE001 - shown in the page
            raise user_error(esc(f"Cannot process the image: detection failed ({type(e).__name__}: {e})"),
                             title="Bad image") from None
        self._within_time_limit(start, "detection")
        result = predictor.predict(image, keep_images=True, errors="record", detections=[detections])[0]
        if not result.ok:
            raise user_error(f"Cannot process the image: {esc(result.error)}", title="Bad image")
        seconds = time.perf_counter() - start
        outputs = self._outputs(result, predictor, model_label, detector_label, age_check, threshold, risk, seconds)
        return (*outputs, (result, model_label, detector_label, seconds))

    def recheck(self, last, age_check, threshold, risk):
        """Age-check controls changed: redo the decisions on the last result (no new inference)."""
        if last is None:
            from ._gradio import import_gradio

            gr = import_gradio()
            return gr.skip(), gr.skip(), gr.skip()
        result, model_label, detector_label, seconds = last
        predictor = self._predictor(model_label, detector_label)  # already loaded: a dict lookup
        return self._outputs(result, predictor, model_label, detector_label, age_check, threshold, risk, seconds)

    def analyze_video(self, video_path, model_label, detector_label, stride, max_frames):
        """The video: annotated video (WebM where OpenCV can write it), tracks table, summary."""
        if video_path is None:
            raise user_error("Upload a video first.", title="No video")
        start = time.perf_counter()
        predictor = self._predictor(model_label, detector_label)
        out = self._new_output(".webm")  # WebM (VP8): what browsers play, 4x faster to encode than VP9 in MP4
        remaining = None if not self.time_limit_s else max(0.0, self.time_limit_s - (time.perf_counter() - start))
        video = predictor.predict_video(video_path, output=out, stride=max(1, int(stride)),
                                        max_frames=max(1, int(max_frames)), progress=True, max_seconds=remaining)
        if not video.frames:
            message = (video.error or "no frame could be decoded").replace(str(video_path), Path(video_path).name)
            raise user_error(f"Cannot process the video: {esc(message)}", title="Bad video")
        playable = Path(video.output) if video.output else None
        summary = video_summary(video, video_path, playable, model_label, detector_label,
                                time.perf_counter() - start)
        return (str(playable) if playable else None), tracks_table(video), summary
