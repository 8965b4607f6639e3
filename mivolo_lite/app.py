"""Gradio web demo: ``mivolo-lite demo`` or ``python demo/app.py``.

Photos (upload, webcam or clipboard) give an annotated image and a table with one row per person
(age, calibrated interval, gender, score); the age-check mode adds P(age >= threshold) and an
over / under / uncertain decision. An uploaded video gives an annotated video (VP8 WebM written
by OpenCV's bundled FFmpeg, which every current browser plays; no ffmpeg binary needed) and one
row per tracked person.

Offline by design: Gradio analytics off, no share links, models load from local folders only
(``local_files_only``) and detectors from local files only. Gradio is imported here and only
here, inside functions, so ``import mivolo_lite`` (and even ``import mivolo_lite.app``) stays
light.

Which models and detectors the UI offers:

- models: the default model shipped in the package, the folders passed to :func:`build_app`
  (``--model`` on the command line) and those in ``$MIVOLO_DEMO_MODELS`` (``os.pathsep``
  separated);
- detectors: ``opencv`` (built in) and the YOLO ``.pt`` files passed as ``yolo_weights``
  (``--yolo-weights``) or in ``$MIVOLO_DEMO_YOLO_WEIGHTS``.
"""

from __future__ import annotations

import html
import logging
import math
import os
import shutil
import tempfile
import threading
import time
import weakref
from pathlib import Path
from typing import Iterable, Sequence

log = logging.getLogger(__name__)

ENV_MODELS = "MIVOLO_DEMO_MODELS"
ENV_YOLO_WEIGHTS = "MIVOLO_DEMO_YOLO_WEIGHTS"
DEFAULT_MODEL_LABEL = "mivolo-lite-cpu (shipped default)"
OPENCV_LABEL = "opencv (built in, offline)"
DEFAULT_MAX_UPLOAD_MB = 25.0
DEFAULT_CONCURRENCY = 2
DEFAULT_QUEUE_SIZE = 32
DEFAULT_MAX_VIDEO_FRAMES = 90
DEFAULT_TIME_LIMIT_S = 120.0  # per request; photos take a second or two, videos up to VIDEO_FRAME_CAP frames
VIDEO_FRAME_CAP = 900  # the slider's top: 30 s at 30 fps
TITLE = "mivolo-lite: age & gender estimation"

DECISION_COLORS = {"over": (40, 170, 60), "under": (220, 50, 40), "uncertain": (230, 160, 20)}


def _offline_env() -> None:
    """Environment for a demo that sends nothing anywhere; set before gradio is imported."""
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    # ultralytics (tracker, examples, YOLO): no connectivity probe, no pip installs at run time
    os.environ.setdefault("YOLO_OFFLINE", "1")
    os.environ.setdefault("YOLO_AUTOINSTALL", "False")


def _gr():
    _offline_env()
    import gradio as gr

    return gr


# -- what is available locally ---------------------------------------------------------------------
def _split_env(name: str) -> list[str]:
    return [p for p in os.environ.get(name, "").split(os.pathsep) if p.strip()]


def _unique_label(label: str, taken: dict) -> str:
    out, i = label, 2
    while out in taken:
        out, i = f"{label} ({i})", i + 1
    return out


def available_models(models: Iterable[str | Path | None] | str | Path | None = None) -> dict[str, str | None]:
    """Label -> model spec (``None`` is the shipped default). ``models`` must be local model
    folders (``config.json`` + ``*.safetensors``) and raise when they are not; folders from
    ``$MIVOLO_DEMO_MODELS`` that are not usable are skipped with a warning."""
    from .hub import DEFAULT_MODEL_DIR, ModelNotFoundError

    if models is None or isinstance(models, (str, Path)):
        models = [models] if models is not None else []
    out: dict[str, str | None] = {}
    if (DEFAULT_MODEL_DIR / "config.json").exists():
        out[DEFAULT_MODEL_LABEL] = None
    explicit = [(m, True) for m in models if m is not None]
    for spec, strict in explicit + [(m, False) for m in _split_env(ENV_MODELS)]:
        path = Path(spec).expanduser()
        problem = None
        if not path.is_dir():
            problem = f"{str(spec)!r} is not a local model folder (the demo loads nothing from the network)"
        elif not (path / "config.json").exists() or not any(path.glob("*.safetensors")):
            problem = f"{str(spec)!r} has no config.json and *.safetensors: not a saved mivolo_lite model"
        if problem:
            if strict:
                raise ModelNotFoundError(problem)
            log.warning("%s: %s; skipped", ENV_MODELS, problem)
            continue
        resolved = str(path.resolve())
        if resolved in out.values():
            continue
        out[_unique_label(f"{path.resolve().name} ({resolved})", out)] = resolved
    if not out:
        raise ModelNotFoundError("no model available: the shipped default model is missing and none was given")
    return out


def available_detectors(yolo_weights: Iterable[str | Path] | str | Path | None = None) -> dict[str, str]:
    """Label -> detector spec: ``opencv`` plus each existing local YOLO ``.pt`` file (given ones
    must exist; missing ones from ``$MIVOLO_DEMO_YOLO_WEIGHTS`` are skipped with a warning)."""
    if yolo_weights is None or isinstance(yolo_weights, (str, Path)):
        yolo_weights = [yolo_weights] if yolo_weights is not None else []
    out = {OPENCV_LABEL: "opencv"}
    given = [(w, True) for w in yolo_weights]
    for spec, strict in given + [(w, False) for w in _split_env(ENV_YOLO_WEIGHTS)]:
        spec = str(spec)
        path = Path(spec[len("yolo:"):] if spec.startswith("yolo:") else spec).expanduser()
        if not path.is_file() or path.suffix.lower() != ".pt":
            problem = f"{spec!r} is not a local YOLO weights file (.pt); the demo downloads nothing"
            if strict:
                raise FileNotFoundError(problem)
            log.warning("%s: %s; skipped", ENV_YOLO_WEIGHTS, problem)
            continue
        target = "yolo:" + str(path.resolve())
        if target not in out.values():
            out[_unique_label(f"YOLO {path.name}", out)] = target
    return out


# -- models, loaded once and shared by all users ----------------------------------------------------
def _locked_detector(inner):
    """The detector behind a lock: OpenCV's cascade/HOG objects are not safe to share between
    threads, while the estimator (torch, no_grad) is, so only detection is serialised."""
    from .detection.base import Detector

    class LockedDetector(Detector):
        def __init__(self):
            self.inner, self.name, self._lock = inner, getattr(inner, "name", "detector"), threading.Lock()

        def detect(self, image):
            with self._lock:
                return self.inner.detect(image)

    return LockedDetector()


class PredictorPool:
    """One :class:`~mivolo_lite.AgePredictor` per (model, detector) pair, built on first use
    (the model weights are loaded once per model and shared between detectors). Concurrent
    first requests wait for one load instead of loading twice."""

    def __init__(self, models: dict[str, str | None], detectors: dict[str, str], device: str = "cpu",
                 max_pixels: int | None = None):
        self.models, self.detectors, self.device, self.max_pixels = dict(models), dict(detectors), device, max_pixels
        self._weights: dict[str, tuple] = {}
        self._dets: dict[str, object] = {}
        self._predictors: dict[tuple[str, str], object] = {}
        self._lock = threading.Lock()

    def get(self, model_label: str, detector_label: str):
        key = (model_label, detector_label)
        found = self._predictors.get(key)
        if found is not None:
            return found
        if model_label not in self.models:
            raise KeyError(f"unknown model {model_label!r}; available: {', '.join(self.models)}")
        if detector_label not in self.detectors:
            raise KeyError(f"unknown detector {detector_label!r}; available: {', '.join(self.detectors)}")
        with self._lock:
            if key not in self._predictors:
                from .hub import load_model_and_processor
                from .predictor import AgePredictor

                if model_label not in self._weights:
                    # local_files_only: a name that is not a local folder never reaches the network
                    self._weights[model_label] = load_model_and_processor(self.models[model_label],
                                                                          local_files_only=True)
                if detector_label not in self._dets:
                    from .detection import build_detector

                    self._dets[detector_label] = _locked_detector(
                        build_detector(self.detectors[detector_label], device=self.device))
                model, processor = self._weights[model_label]
                self._predictors[key] = AgePredictor(model, processor, detector=self._dets[detector_label],
                                                     device=self.device, max_pixels=self.max_pixels)
            return self._predictors[key]


# -- turning results into what the page shows --------------------------------------------------------
def _fmt(x: float, digits: int = 1) -> float | None:
    return round(float(x), digits) if x is not None and math.isfinite(float(x)) else None


def persons_table(result, age_check: bool = False, threshold: float = 18, risk: float = 0.05):
    """One row per person (left to right) as a pandas DataFrame."""
    import pandas as pd

    coverage = None
    rows = []
    for i, p in enumerate(result.persons):
        coverage = coverage or p.coverage
        lo, hi = p.age_interval if p.age_interval is not None else (float("nan"), float("nan"))
        row = {"person": i + 1, "age": _fmt(p.age), "age interval": f"{lo:.0f}–{hi:.0f}", "gender": p.gender,
               "gender score": _fmt(p.gender_score, 2),
               "found by": "+".join(k for k, box in (("face", p.face_box), ("body", p.body_box)) if box is not None)}
        if age_check:
            d = p.check_age(threshold, risk)
            row[f"P(age ≥ {threshold:g})"] = _fmt(d.prob_at_least, 3)
            row["decision"] = d.decision
        rows.append(row)
    columns = ["person", "age", "age interval", "gender", "gender score", "found by"]
    if age_check:
        columns += [f"P(age ≥ {threshold:g})", "decision"]
    df = pd.DataFrame(rows, columns=columns)
    if coverage:
        df = df.rename(columns={"age interval": f"age interval ({coverage:.0%})"})
    return df


def annotate(result, decisions=None):
    """``result.plot()`` plus, in age-check mode, a coloured over/under/? tag under each person."""
    import cv2

    canvas = result.plot()
    if not decisions:
        return canvas
    h, w = canvas.shape[:2]
    fs = max(0.4, 0.0007 * (h + w))
    thick = max(1, round(0.001 * (h + w)))
    for p, d in zip(result.persons, decisions):
        text = {"over": f"{d.threshold:g}+ yes", "under": f"{d.threshold:g}+ no"}.get(d.decision, f"{d.threshold:g}+ ?")
        (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, fs, thick)
        if p.body_box is not None:  # bottom-left inside the body box, away from the labels at the faces
            x, y = p.body_box[0] + 2, p.body_box[3] - 2
        else:  # just under the face box
            x, y = p.face_box[0], p.face_box[3] + th + base + 2
        x = int(min(max(0, x), max(0, w - tw - 2)))
        y = int(min(max(th + base + 2, y), h - 1))
        cv2.rectangle(canvas, (x, y - th - base - 2), (x + tw + 2, y), DECISION_COLORS[d.decision], -1)
        cv2.putText(canvas, text, (x + 1, y - base), cv2.FONT_HERSHEY_SIMPLEX, fs, (255, 255, 255), thick,
                    cv2.LINE_AA)
    return canvas


def _summary(result, predictor, model_label: str, detector_label: str, decisions, seconds: float) -> str:
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


def _esc(text: str) -> str:
    """Error messages are rendered as HTML in the page: neutralise markup from file names etc."""
    return html.escape(str(text), quote=False)


def _user_error(gr, message: str, title: str = "Error"):
    """A gr.Error for bad user input: shown in the page, no traceback in the server log."""
    return gr.Error(message, title=title, print_exception=False)


def _cleanup_old(folder: Path, max_age_s: float = 3600) -> None:
    now = time.time()
    for f in folder.glob("*"):
        try:
            if f.is_file() and now - f.stat().st_mtime > max_age_s:
                f.unlink()
        except OSError:
            pass


def browser_video(src: str | Path) -> Path:
    """Re-encode OpenCV's mp4v output as VP8 (or VP9) WebM, which browsers play; OpenCV's wheel
    bundles FFmpeg with libvpx, so this needs no ffmpeg binary. Returns ``src`` unchanged when no
    WebM writer is available (the file still downloads)."""
    import cv2

    src = Path(src)
    cap = cv2.VideoCapture(str(src))
    try:
        ok, frame = cap.read()
        if not ok:
            return src
        fps = cap.get(cv2.CAP_PROP_FPS) or 25.0
        h, w = frame.shape[:2]
        dst = src.with_suffix(".webm")
        writer = None
        for code in ("VP80", "VP90"):
            writer = cv2.VideoWriter(str(dst), cv2.VideoWriter_fourcc(*code), fps, (w, h))
            if writer.isOpened():
                break
            writer.release()
            writer = None
        if writer is None:
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


# -- the app -------------------------------------------------------------------------------------------
def _data_url_bytes(url: str, max_bytes: int | None) -> bytes:
    """The bytes of a ``data:`` URL (how an API client may send an image inline), refused above
    the upload limit before decoding, as a file upload would be."""
    import base64
    import binascii
    from urllib.parse import unquote_to_bytes

    from ._image_io import ImageLoadError

    header, _, data = url.partition(",")
    if max_bytes and len(data) * 3 // 4 > max_bytes:
        raise ImageLoadError("<inline image>", f"it is larger than the upload limit of {max_bytes / 2**20:g} MB")
    try:
        return base64.b64decode(data) if header.endswith(";base64") else unquote_to_bytes(data)
    except (binascii.Error, ValueError) as e:
        raise ImageLoadError("<inline image>", f"the data URL is not valid base64 ({e})") from None


def _defer_decoding(gr, component, max_upload_mb: float | None = None) -> None:
    """Make ``component`` (a ``gr.Image(type="filepath")``) hand over the uploaded file's path
    (or, for an inline ``data:`` URL, its bytes) without opening it, so that every bad upload (not
    an image, truncated, a decompression bomb) reaches :func:`~mivolo_lite.load_image` and gets
    its clear message in the page, instead of a generic preprocessing error from PIL, and so that
    no image is decoded before its pixel count is checked. (An instance attribute, not a
    subclass: Gradio writes a ``.pyi`` file next to the module of every Component subclass.)"""
    from ._image_io import ImageLoadError

    original = component.preprocess
    max_bytes = int(max_upload_mb * 2**20) if max_upload_mb else None

    def preprocess(payload):
        url = str(getattr(payload, "url", None) or "")
        if payload is not None and url.startswith("data:"):
            try:
                return _data_url_bytes(url, max_bytes)
            except ImageLoadError as e:
                raise _user_error(gr, f"Cannot read the uploaded image: {_esc(e.reason)}", "Bad image") from None
        if payload is not None and getattr(payload, "path", None):
            return str(payload.path)  # already checked by Gradio to be an upload in its cache
        try:
            return original(payload)
        except gr.Error:
            raise
        except Exception as e:  # noqa: BLE001 - e.g. a webcam frame that does not decode
            raise _user_error(gr, _esc(f"Cannot read the image: {type(e).__name__}: {e}"), title="Bad image") \
                from None

    component.preprocess = preprocess


def _read_upload(path, max_pixels):
    """``load_image`` with every failure as ``ImageLoadError``."""
    from ._image_io import ImageLoadError, load_image

    try:
        return load_image(path, max_pixels)
    except ImageLoadError:
        raise
    except ImportError:
        # ultralytics patches PIL.Image.open to import pi-heif for files PIL cannot identify; without
        # pi-heif that surfaces as ImportError instead of "unrecognised format"
        raise ImageLoadError(path, "not an image file (unrecognised format)") from None
    except Exception as e:  # noqa: BLE001
        raise ImageLoadError(path, f"the file could not be decoded ({type(e).__name__}: {e})") from None


def _example_images() -> list[str]:
    try:
        from ultralytics.utils import ASSETS
    except Exception:  # noqa: BLE001 - examples are optional
        return []
    return [str(Path(ASSETS) / n) for n in ("bus.jpg", "zidane.jpg") if (Path(ASSETS) / n).is_file()]


def build_app(models: Iterable[str | Path] | str | Path | None = None,
              yolo_weights: Iterable[str | Path] | str | Path | None = None, device: str = "cpu",
              concurrency: int = DEFAULT_CONCURRENCY, queue_size: int = DEFAULT_QUEUE_SIZE,
              max_upload_mb: float = DEFAULT_MAX_UPLOAD_MB, max_pixels: int | None = None,
              preload: bool = True, time_limit_s: float | None = DEFAULT_TIME_LIMIT_S):
    """The demo as a ``gr.Blocks`` (queue configured; launch it with :func:`serve`).

    ``models``: local model folders offered besides the shipped default (the first given is
    selected); ``yolo_weights``: local YOLO ``.pt`` files offered besides OpenCV;
    ``concurrency``: photo requests processed at once (videos: one at a time), others wait in a
    queue of ``queue_size`` (more are refused: "queue is full"); ``max_upload_mb``: shown in the
    page and applied by :func:`serve`; ``max_pixels``: the largest image accepted (default
    :data:`~mivolo_lite._image_io.MAX_IMAGE_PIXELS`); ``time_limit_s``: the longest a request may
    run: a photo is refused when reading or detection has used it up, a video stops there and
    shows the frames analysed so far;
    ``preload``: load the selected model and detector now rather than on the first request."""
    gr = _gr()
    from ._image_io import MAX_IMAGE_PIXELS, ImageLoadError

    model_choices = available_models(models)
    detector_choices = available_detectors(yolo_weights)
    first_model = next(iter(model_choices))
    if models is not None:
        given = [models] if isinstance(models, (str, Path)) else list(models)
        if given:
            wanted = str(Path(given[0]).expanduser().resolve())
            first_model = next((k for k, v in model_choices.items() if v == wanted), first_model)
    pool = PredictorPool(model_choices, detector_choices, device=device, max_pixels=max_pixels)
    if preload:
        pool.get(first_model, OPENCV_LABEL)
    pixel_limit = max_pixels or MAX_IMAGE_PIXELS
    work_dir = Path(tempfile.mkdtemp(prefix="mivolo_demo_"))  # annotated videos before Gradio caches them

    def _predictor(model_label, detector_label):
        try:
            return pool.get(model_label, detector_label)
        except Exception as e:  # noqa: BLE001 - shown in the page
            raise _user_error(gr, _esc(f"Cannot load {model_label!r} with detector {detector_label!r}: {e}"),
                              title="Model not available") from None

    def _outputs(result, predictor, model_label, detector_label, age_check, threshold, risk, seconds):
        threshold, risk = float(threshold), float(risk)
        decisions = [p.check_age(threshold, risk) for p in result.persons] if age_check else None
        table = persons_table(result, bool(age_check), threshold, risk)
        summary = _summary(result, predictor, model_label, detector_label, decisions, seconds)
        return annotate(result, decisions), table, summary

    def analyze(image_path, model_label, detector_label, age_check, threshold, risk):
        if image_path is None:
            raise _user_error(gr, "Upload a photo (or take one with the webcam) first.", title="No image")
        start = time.perf_counter()
        predictor = _predictor(model_label, detector_label)
        try:
            image = _read_upload(image_path, max_pixels)
        except ImageLoadError as e:
            raise _user_error(gr, f"Cannot read the uploaded image: {_esc(e.reason)}", "Bad image") from None
        _within_time_limit(start, "reading the image")
        try:  # detection apart from estimation, so that the time limit is checked between them
            detections = predictor.detector.detect(image)
        except Exception as e:  # noqa: BLE001 - shown in the page
            raise _user_error(gr, _esc(f"Cannot process the image: detection failed ({type(e).__name__}: {e})"),
                              title="Bad image") from None
        _within_time_limit(start, "detection")
        result = predictor.predict(image, keep_images=True, errors="record", detections=[detections])[0]
        if not result.ok:
            raise _user_error(gr, f"Cannot process the image: {_esc(result.error)}", title="Bad image")
        seconds = time.perf_counter() - start
        outputs = _outputs(result, predictor, model_label, detector_label, age_check, threshold, risk, seconds)
        return (*outputs, (result, model_label, detector_label, seconds))

    def _within_time_limit(start: float, stage: str) -> None:
        if time_limit_s and time.perf_counter() - start > time_limit_s:
            raise _user_error(gr, f"The request ran over the time limit of {time_limit_s:g} s ({stage}); try a "
                                  "smaller image.", title="Time limit")

    def recheck(last, age_check, threshold, risk):
        """Age-check controls changed: redo the decisions on the last result (no new inference)."""
        if last is None:
            return gr.skip(), gr.skip(), gr.skip()
        result, model_label, detector_label, seconds = last
        predictor = _predictor(model_label, detector_label)  # already loaded: a dict lookup
        return _outputs(result, predictor, model_label, detector_label, age_check, threshold, risk, seconds)

    def analyze_video(video_path, model_label, detector_label, stride, max_frames,
                      progress=gr.Progress(track_tqdm=True)):
        import pandas as pd

        if video_path is None:
            raise _user_error(gr, "Upload a video first.", title="No video")
        start = time.perf_counter()
        predictor = _predictor(model_label, detector_label)
        _cleanup_old(work_dir)
        out = work_dir / f"annotated_{os.getpid()}_{threading.get_ident()}_{time.time_ns()}.mp4"
        remaining = None if not time_limit_s else max(0.0, time_limit_s - (time.perf_counter() - start))
        video = predictor.predict_video(video_path, output=out, stride=max(1, int(stride)),
                                        max_frames=max(1, int(max_frames)), progress=True, max_seconds=remaining)
        if not video.frames:
            message = (video.error or "no frame could be decoded").replace(str(video_path), Path(video_path).name)
            raise _user_error(gr, f"Cannot process the video: {_esc(message)}", title="Bad video")
        playable = browser_video(video.output) if video.output else None
        rows = [t.to_dict() for t in sorted(video.tracks.values(), key=lambda t: t.track_id)]
        columns = ["track_id", "frames", "age", "age_std", "gender", "gender_score"]
        table = pd.DataFrame(rows, columns=columns).rename(columns={"track_id": "person (track)",
                                                                   "age_std": "age spread",
                                                                   "gender_score": "gender score"})
        n_det = sum(len(f.persons) for f in video.frames)
        summary = (f"**{len(video.frames)} frame(s) analysed** in {time.perf_counter() - start:.1f} s · "
                   f"{len(video.tracks)} tracked person(s), {n_det} detection(s) · model: {model_label} · "
                   f"detector: {detector_label}")
        if video.error:
            warning = video.error.replace(str(video_path), Path(video_path).name)
            summary += f"\n\n_Warning: {_esc(warning)}_"
        if playable is not None and playable.suffix != ".webm":
            summary += "\n\n_This OpenCV has no WebM encoder: the video is mp4v, which browsers may not play; " \
                       "download it instead._"
        return (str(playable) if playable else None), table, summary

    limit_text = f"{max_upload_mb:g} MB" if max_upload_mb else "no limit"
    with gr.Blocks(title=TITLE, analytics_enabled=False, delete_cache=(1800, 3600)) as demo:
        gr.Markdown(f"# {TITLE}\nAge and gender of every person in a photo or video. Runs entirely on this "
                    f"machine: nothing is uploaded anywhere else. Uploads up to {limit_text} and "
                    f"{pixel_limit / 1e6:g} megapixels" + (f"; each request may run for up to {time_limit_s:g} s."
                                                            if time_limit_s else "."))
        with gr.Row():
            model_dd = gr.Dropdown(list(model_choices), value=first_model, label="Model", elem_id="model")
            detector_dd = gr.Dropdown(list(detector_choices), value=OPENCV_LABEL, label="Detector",
                                      elem_id="detector")
        with gr.Tab("Photo", elem_id="photo-tab"):
            with gr.Row():
                with gr.Column():
                    image_in = gr.Image(type="filepath", image_mode=None, sources=["upload", "webcam", "clipboard"],
                                        label="Photo", elem_id="input-image")
                    _defer_decoding(gr, image_in, max_upload_mb)
                    age_check = gr.Checkbox(False, label="Age check: is each person at least the threshold age?",
                                            elem_id="age-check")
                    with gr.Row():
                        threshold = gr.Slider(1, 80, value=18, step=1, label="Age threshold (years)",
                                              elem_id="threshold")
                        risk = gr.Slider(0.01, 0.25, value=0.05, step=0.01, label="Accepted risk",
                                         info="largest accepted chance of a wrong over/under decision",
                                         elem_id="risk")
                    run_btn = gr.Button("Estimate age & gender", variant="primary", elem_id="run-btn")
                    examples = _example_images()
                    if examples:
                        gr.Examples([[e] for e in examples], inputs=[image_in], label="Example photos",
                                    cache_examples=False, elem_id="examples")
                with gr.Column():
                    image_out = gr.Image(type="numpy", format="jpeg", label="Annotated", interactive=False,
                                         elem_id="output-image")
                    summary_out = gr.Markdown(elem_id="summary")
            table_out = gr.Dataframe(label="Persons", interactive=False, elem_id="persons-table", wrap=True)
        with gr.Tab("Video", elem_id="video-tab"):
            with gr.Row():
                with gr.Column():
                    video_in = gr.Video(sources=["upload"], include_audio=True, label="Video", elem_id="input-video")
                    with gr.Row():
                        stride = gr.Slider(1, 10, value=1, step=1, label="Analyse every n-th frame", elem_id="stride")
                        max_frames = gr.Slider(1, VIDEO_FRAME_CAP, value=DEFAULT_MAX_VIDEO_FRAMES, step=1,
                                               label="Read at most this many frames", elem_id="max-frames")
                    video_btn = gr.Button("Annotate video", variant="primary", elem_id="video-btn")
                with gr.Column():
                    video_out = gr.Video(label="Annotated video", interactive=False, elem_id="output-video")
                    video_summary = gr.Markdown(elem_id="video-summary")
            tracks_out = gr.Dataframe(label="Tracked persons (age averaged over frames)", interactive=False,
                                      elem_id="tracks-table")

        last = gr.State(None)  # per browser session: the last photo result, for live age-check changes
        photo_outputs = [image_out, table_out, summary_out]
        run_btn.click(analyze, [image_in, model_dd, detector_dd, age_check, threshold, risk],
                      [*photo_outputs, last], api_name="predict", concurrency_limit=concurrency,
                      concurrency_id="photo")
        for control in (age_check, threshold, risk):
            control.change(recheck, [last, age_check, threshold, risk], photo_outputs, api_name=False,
                           trigger_mode="always_last", show_progress="hidden", queue=False)
        # a new photo (or none) makes the shown result stale: clear it, so that an error for the new
        # upload is not shown next to the previous photo's persons
        image_in.change(lambda: (None, None, "", None), None, [*photo_outputs, last], api_name=False, queue=False)
        video_btn.click(analyze_video, [video_in, model_dd, detector_dd, stride, max_frames],
                        [video_out, tracks_out, video_summary], api_name="predict_video", concurrency_limit=1,
                        concurrency_id="video")

    demo.queue(max_size=queue_size, default_concurrency_limit=concurrency)
    weakref.finalize(demo, shutil.rmtree, work_dir, ignore_errors=True)  # also runs at interpreter exit
    demo.mivolo_pool = pool  # for callers and tests
    demo.mivolo_max_upload_mb = max_upload_mb
    return demo


def serve(demo, host: str = "127.0.0.1", port: int | None = 7860, max_upload_mb: float | None = None,
          prevent_thread_lock: bool = False, quiet: bool = False):
    """Launch ``demo`` (from :func:`build_app`) locally: no share link, upload size limit, errors
    shown in the page. Returns what ``gr.Blocks.launch`` returns."""
    _gr()
    mb = getattr(demo, "mivolo_max_upload_mb", DEFAULT_MAX_UPLOAD_MB) if max_upload_mb is None else max_upload_mb
    return demo.launch(server_name=host, server_port=port, share=False, inbrowser=False, show_error=True,
                       max_file_size=int(mb * 1024 * 1024) if mb else None, prevent_thread_lock=prevent_thread_lock,
                       quiet=quiet, ssr_mode=False, mcp_server=False, enable_monitoring=False, pwa=False)


def launch(model=None, host: str = "127.0.0.1", port: int = 7860, share: bool = False) -> None:
    """``mivolo-lite demo``: build the demo around ``model`` (default: the shipped model) and
    serve it until interrupted. YOLO weights come from ``$MIVOLO_DEMO_YOLO_WEIGHTS``."""
    if share:
        raise ValueError("share links are disabled in the mivolo_lite demo: it serves locally only")
    demo = build_app(models=[model] if model else None)
    print(f"mivolo-lite demo on http://{host}:{port} (Ctrl+C to stop)")
    serve(demo, host=host, port=port)


__all__: Sequence[str] = ["build_app", "serve", "launch", "available_models", "available_detectors",
                          "PredictorPool", "persons_table", "annotate", "browser_video"]
