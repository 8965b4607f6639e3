"""AgePredictor: detect faces and bodies, pair them, estimate age and gender of every person."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np
import torch

from ._image_io import ImageLoadError, load_image
from .calibration import AgeDecision, calibration_of
from .detection import Detections, InvalidBoxesError, build_detector
from .detection.pairing import PersonCrops, crop_persons, match_faces_to_bodies
from .export import OnnxEstimator, build_estimator
from .hub import load_model_and_processor
from .models.image_processing_mivolo_lite import align_crop_lists
from .results import ImageResult, PersonResult
from .sources import expand_sources, is_video, source_name

if TYPE_CHECKING:
    from .video import VideoResult


class AgePredictor:
    """Age and gender of every person in photos, folders and videos.

    >>> predictor = AgePredictor.from_pretrained()          # the default model shipped with the package
    >>> result = predictor.predict("photo.jpg")[0]
    >>> [(p.age, p.gender) for p in result.persons]
    """

    def __init__(self, model, processor, detector=None, device: str = "cpu", batch_size: int = 32,
                 flip_tta: bool = True, coverage: float = 0.9, max_pixels: int | None = None,
                 backend: str = "auto", precision: str = "auto"):
        self.device = torch.device(device)
        # self.model stays the model as loaded (BatchNorms intact), so saving it gives a folder that
        # loads back; what runs is a copy with the BatchNorms folded into the convolutions
        self.model = model.to(self.device).eval()
        self._fused_model = copy.deepcopy(self.model).fuse_for_inference()
        # What runs the estimator: the torch model (fp32, or autocast in bf16/fp16: "auto" precision
        # is bf16 on a GPU for large models such as d1) or onnxruntime ("auto" backend: onnxruntime
        # on CPU when it is installed, measured faster there; see the README's Speed section)
        self.estimator = build_estimator(self._fused_model, backend, self.device, precision)
        # torch's convolutions run fastest on channels-last (NHWC) tensors, on a GPU under autocast
        # and on the CPU too (mobile's trunks: 30 -> 21 ms per face with flip TTA on 2 cores; lite
        # unchanged); onnxruntime takes plain NCHW arrays.
        self.memory_format = torch.contiguous_format if isinstance(self.estimator, OnnxEstimator) \
            else torch.channels_last
        self._fused_model.to(memory_format=self.memory_format)
        self.processor = processor
        self._detector_spec = detector
        self._detector = None
        self.batch_size = batch_size
        self.flip_tta = flip_tta
        self.coverage = coverage
        self.max_pixels = max_pixels
        # the int8 backend brings a calibration fitted on its own ages
        backend_table = getattr(self.estimator, "age_calibration", None)
        self.calibration, self.is_calibrated = calibration_of(model.config, backend_table)

    @classmethod
    def from_pretrained(cls, name_or_path: str | Path | None = None, device: str = "cpu", detector=None,
                        revision: str | None = None, **kwargs) -> "AgePredictor":
        """``name_or_path``: ``None`` (the default model shipped in the package, works offline), a
        local folder, or a Hugging Face Hub repo id. ``detector``: ``None``/``"centernet"`` (offline
        default, shipped in the package), ``"opencv"``, ``"yolo:<weights.pt or repo id>"``, or a
        :class:`~mivolo_lite.detection.Detector`. ``backend``:
        ``"auto"`` (default: onnx on CPU when onnxruntime is installed, else torch), ``"torch"``,
        ``"onnx"`` (onnxruntime, CPU only; the graph is exported on first use and cached) or
        ``"onnx-int8"`` (the int8 graphs the model folder ships, made by ``mivolo-lite quantize``:
        faster on a CPU, ages a little less exact; see the README's Speed section).
        ``precision`` (torch backend): ``"auto"`` (bf16 autocast on a GPU for models of 10 M
        parameters or more such as ``d1``, fp16 on GPUs without bf16; fp32 for ``lite``, which is
        launch-bound there, and on the CPU), ``"fp32"``, ``"bf16"`` or ``"fp16"``."""
        model, processor = load_model_and_processor(name_or_path, revision=revision)
        return cls(model, processor, detector=detector, device=device, **kwargs)

    @property
    def detector(self):
        """Built on first use, so predict_crops never loads a detector."""
        if self._detector is None:
            self._detector = build_detector(self._detector_spec, device=str(self.device))
        return self._detector

    # -- estimation on crops ----------------------------------------------------------------------
    @torch.no_grad()
    def _estimate(self, faces: Sequence, bodies: Sequence) -> list[dict]:
        out = []
        to_device = lambda x: x.to(self.device, memory_format=self.memory_format)  # noqa: E731
        for start in range(0, len(faces), self.batch_size):
            f, b = faces[start:start + self.batch_size], bodies[start:start + self.batch_size]
            inputs = self.processor(faces=f, bodies=b)
            has_face, has_body = bool(inputs["face_mask"].any()), bool(inputs["body_mask"].any())
            pred = self.estimator.predict(
                face_pixel_values=to_device(inputs["face_pixel_values"]) if has_face else None,
                body_pixel_values=to_device(inputs["body_pixel_values"]) if has_body else None,
                face_mask=inputs["face_mask"].to(self.device), body_mask=inputs["body_mask"].to(self.device),
                flip_tta=self.flip_tta)
            if not (torch.isfinite(pred.age).all() and torch.isfinite(pred.age_std).all()
                    and torch.isfinite(pred.gender_prob).all()):
                # broken weights (e.g. a model saved without its BatchNorms) must never pass for ages
                folder = getattr(self.model.config, "_name_or_path", "") or "the model in memory"
                raise RuntimeError(f"model {folder} produced NaN or infinite outputs: its weights are broken; "
                                   "re-save it from an unmodified AgePredictor.from_pretrained(...).model")
            for i in range(len(f)):
                out.append({"age": float(pred.age[i]), "age_std": float(pred.age_std[i]),
                            "prob_male": float(pred.gender_prob[i]), "age_probs": pred.age_probs[i].cpu().numpy()})
        return out

    def _person(self, est: dict, face_box=None, body_box=None, face_score=None, body_score=None,
                track_id=None) -> PersonResult:
        low, high = self.calibration.interval(est["age"], est["age_std"], self.coverage)
        male = est["prob_male"] >= 0.5
        return PersonResult(face_box=face_box, body_box=body_box, age=est["age"], age_std=est["age_std"],
                            gender="male" if male else "female",
                            gender_score=est["prob_male"] if male else 1 - est["prob_male"],
                            age_interval=(float(low[0]), float(high[0])), coverage=self.coverage,
                            face_score=face_score, body_score=body_score, track_id=track_id,
                            age_probs=est["age_probs"], _checker=self.calibration)

    def predict_crops(self, faces: Sequence | None = None, bodies: Sequence | None = None) -> list[PersonResult]:
        """Already-cropped inputs: lists of equal length (``None`` entries mark a missing crop),
        images as paths, PIL images or RGB arrays. No detector runs."""
        faces, bodies = align_crop_lists(faces, bodies)
        faces = [None if x is None else load_image(x, self.max_pixels) for x in faces]
        bodies = [None if x is None else load_image(x, self.max_pixels) for x in bodies]
        for i, (f, b) in enumerate(zip(faces, bodies)):
            if f is None and b is None:
                raise ValueError(f"person {i}: both the face and the body crop are None")
        return [self._person(e) for e in self._estimate(faces, bodies)]

    # -- full pipeline on photos --------------------------------------------------------------------
    def _crops(self, image: np.ndarray, det: Detections) -> list[PersonCrops]:
        det = det.checked().clipped(image.shape[1], image.shape[0])
        pairs = match_faces_to_bodies(det.face_boxes, det.person_boxes)
        fill = self.processor.fill_value
        persons = crop_persons(image, det.face_boxes, det.person_boxes, pairs, det.face_scores, det.person_scores,
                               det.track_ids, fill=tuple(int(v) for v in fill))
        return [p for p in persons if p.face_crop is not None or p.body_crop is not None]

    def predict(self, source, keep_images: bool = True, errors: str | None = None,
                detections: Sequence[Detections] | None = None) -> list[ImageResult]:
        """``source``: a path (image, video or folder), a PIL image, an RGB array, or a list of
        them. Returns one :class:`ImageResult` per image (per frame for videos). Crops from all
        images are estimated together in batches.

        ``errors``: ``"record"`` puts a failure in ``ImageResult.error`` and carries on (the
        default for lists and folders); ``"raise"`` raises :class:`ImageLoadError` (the default
        for a single input).

        ``detections``: one :class:`Detections` per input, used instead of running the detector.
        Boxes outside the image are clipped; NaN/infinite boxes or swapped corners are that
        input's failure (:class:`~mivolo_lite.detection.InvalidBoxesError`)."""
        items = expand_sources(source)
        single = len(items) == 1 and not isinstance(source, (list, tuple)) and not (
            isinstance(source, (str, Path)) and Path(source).is_dir())
        errors = errors or ("raise" if single else "record")
        if errors not in ("raise", "record"):
            raise ValueError("errors must be 'raise' or 'record'")
        if isinstance(detections, Detections):
            detections = [detections]
        if detections is not None and len(detections) != len(items):
            raise ValueError(f"detections: {len(detections)} given for {len(items)} input(s); give one per input")
        detector = self.detector if detections is None else None  # a broken detector fails here, once
        results: list[ImageResult] = []
        pending: list[tuple[ImageResult, list[PersonCrops]]] = []
        for i, item in enumerate(items):
            name = source_name(item, i)
            if is_video(item):
                video = self.predict_video(item, progress=False)
                results.extend(video.frames)
                if video.error:
                    if errors == "raise" and not video.frames:
                        raise ImageLoadError(name, video.error)
                    results.append(ImageResult(name, error=video.error))
                continue
            try:
                image = load_image(item, self.max_pixels)
                det = detections[i] if detections is not None else detector.detect(image)
                crops = self._crops(image, det)
            except Exception as e:  # noqa: BLE001 - one bad input costs its own result, never the batch
                if errors == "raise":
                    raise
                results.append(ImageResult(name, error=_failure_message(name, e)))
                continue
            result = ImageResult(name, image=image if keep_images else None,
                                 detector=getattr(detector, "name", None) if detections is None else "given")
            results.append(result)
            pending.append((result, crops))
        self._estimate_pending(pending)
        return results

    def _estimate_pending(self, pending: list[tuple[ImageResult, list[PersonCrops]]]) -> None:
        """One batched estimator pass over the persons of many images."""
        flat = [(r, p) for r, persons in pending for p in persons]
        estimates = self._estimate([p.face_crop for _, p in flat], [p.body_crop for _, p in flat]) if flat else []
        for (result, p), est in zip(flat, estimates):
            result.persons.append(self._person(est, p.face_box, p.body_box, p.face_score, p.body_score, p.track_id))
        for result, _ in pending:
            result.persons.sort(key=lambda q: (q.face_box or q.body_box)[0])

    def predict_video(self, path, output: str | Path | None = None, stride: int = 1, max_frames: int | None = None,
                      progress: bool = True, max_seconds: float | None = None) -> VideoResult:
        """Age and gender of the people in the video at ``path``, tracked across frames: a
        :class:`~mivolo_lite.video.VideoResult` with the analysed frames and one summary per
        tracked person (age pooled over its frames).

        ``stride``: analyse every ``stride``-th frame; ``max_frames``: read at most this many
        frames; ``max_seconds``: stop after this long (the frames done are kept); ``progress``: a
        progress bar; ``output``: write the annotated video there, VP9 in ``.mp4`` or VP8 in
        ``.webm``, which browsers play, where OpenCV has the encoder (else mp4v;
        ``VideoResult.output`` is the file written). A bad video never raises: see
        ``VideoResult.error``."""
        from .video import predict_video

        return predict_video(self, path, output=output, stride=stride, max_frames=max_frames, progress=progress,
                             max_seconds=max_seconds)

    # -- age check ---------------------------------------------------------------------------------
    def check_age(self, source, threshold: float = 18, risk: float = 0.05) -> list[list[AgeDecision]]:
        """For each image, for each person (left to right): P(age >= threshold) and a decision
        ``over`` / ``under`` / ``uncertain`` at ``risk`` (the largest accepted probability of being
        wrong). A shop asking "ID unless surely over 25" uses ``threshold=25`` and acts on ``over``."""
        return [[p.check_age(threshold, risk) for p in r.persons] for r in self.predict(source)]

    def __repr__(self) -> str:
        c = self.model.config
        return (f"AgePredictor(preset={c.preset!r}, device={self.device}, detector={self._detector_spec or 'centernet'}, "
                f"calibrated={self.is_calibrated})")


def _failure_message(name: str, error: Exception) -> str:
    if isinstance(error, ImageLoadError):
        return str(error)  # already names the input
    if isinstance(error, InvalidBoxesError):
        return f"{name}: invalid detections: {error}"
    return f"{name}: {type(error).__name__}: {error}"
