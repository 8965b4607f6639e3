"""What the demo can run: the local models and detectors it offers, and one predictor per
(model, detector) pair, loaded once and shared by all users."""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

log = logging.getLogger(__name__)

ENV_MODELS = "MIVOLO_DEMO_MODELS"
ENV_YOLO_WEIGHTS = "MIVOLO_DEMO_YOLO_WEIGHTS"
DEFAULT_MODEL_LABEL = "mobile (shipped default)"
SHIPPED_LABEL = "{name} (shipped)"  # the other shipped models, by name
INT8_LABEL = "{name} int8 ({where}; faster, ages a little less exact)"  # a model's int8 graphs, when it has them
CENTERNET_LABEL = "centernet (built in, offline)"  # the library's default detector, offered first
CENTERNET_ACCURATE_LABEL = "centernet-accurate (built in; more people, ~5x slower)"
OPENCV_LABEL = "opencv (built in, offline)"


@dataclass(frozen=True)
class ModelChoice:
    """A model the demo offers: ``spec`` as ``load_model_and_processor`` takes it (``None``: the
    shipped default) and the ``backend`` it runs on (``"onnx-int8"``: its int8 graphs)."""

    spec: str | None
    backend: str = "auto"


def _has_int8_graphs(folder: Path) -> bool:
    from ..export import INT8_GRAPH_SETS, int8_graph_name

    return all((folder / int8_graph_name(branches)).is_file() for branches in INT8_GRAPH_SETS)


# -- what is available locally ---------------------------------------------------------------------
def _split_env(name: str) -> list[str]:
    return [p for p in os.environ.get(name, "").split(os.pathsep) if p.strip()]


def _unique_label(label: str, taken: dict) -> str:
    out, i = label, 2
    while out in taken:
        out, i = f"{label} ({i})", i + 1
    return out


def available_models(models: Iterable[str | Path | None] | str | Path | None = None) -> dict[str, ModelChoice]:
    """Label -> :class:`ModelChoice` (the shipped default first). ``models`` must be local model
    folders (``config.json`` + ``*.safetensors``) and raise when they are not; folders from
    ``$MIVOLO_DEMO_MODELS`` that are not usable are skipped with a warning. A folder that ships
    int8 graphs (``mivolo-lite quantize``) is offered a second time, run on them."""
    from ..hub import DEFAULT_MODEL, DEFAULT_MODEL_DIR, SHIPPED_MODELS, ModelNotFoundError

    if models is None or isinstance(models, (str, Path)):
        models = [models] if models is not None else []
    out: dict[str, ModelChoice] = {}

    def offer(label: str, spec: str | None, folder: Path, where: str, name: str) -> None:
        out[label] = ModelChoice(spec)
        if _has_int8_graphs(folder):
            out[_unique_label(INT8_LABEL.format(name=name, where=where), out)] = ModelChoice(spec, "onnx-int8")

    if (DEFAULT_MODEL_DIR / "config.json").exists():
        offer(DEFAULT_MODEL_LABEL, None, DEFAULT_MODEL_DIR, "shipped", DEFAULT_MODEL)
    for name, folder in SHIPPED_MODELS.items():
        if name != DEFAULT_MODEL and (folder / "config.json").exists():
            offer(SHIPPED_LABEL.format(name=name), name, folder, "shipped", name)
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
        if ModelChoice(resolved) in out.values():
            continue
        name = path.resolve().name
        offer(_unique_label(f"{name} ({resolved})", out), resolved, path, resolved, name)
    if not out:
        raise ModelNotFoundError("no model available: the shipped default model is missing and none was given")
    return out


def available_detectors(yolo_weights: Iterable[str | Path] | str | Path | None = None) -> dict[str, str]:
    """Label -> detector spec: ``centernet`` (the default, first), ``centernet-accurate``,
    ``opencv``, then each existing local YOLO ``.pt`` file (given ones must exist; missing ones
    from ``$MIVOLO_DEMO_YOLO_WEIGHTS`` are skipped with a warning)."""
    if yolo_weights is None or isinstance(yolo_weights, (str, Path)):
        yolo_weights = [yolo_weights] if yolo_weights is not None else []
    out = {CENTERNET_LABEL: "centernet", CENTERNET_ACCURATE_LABEL: "centernet-accurate", OPENCV_LABEL: "opencv"}
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
    from ..detection.base import Detector

    class LockedDetector(Detector):
        def __init__(self):
            self.inner, self.name, self._lock = inner, getattr(inner, "name", "detector"), threading.Lock()

        def detect(self, image):
            with self._lock:
                return self.inner.detect(image)

    return LockedDetector()


class PredictorPool:
    """One :class:`~mivolo_lite.AgePredictor` per (model, detector) pair, built on first use
    (the weights are loaded once per model folder and shared between detectors and backends).
    Concurrent first requests wait for one load instead of loading twice."""

    def __init__(self, models: dict[str, ModelChoice], detectors: dict[str, str], device: str = "cpu",
                 max_pixels: int | None = None):
        self.models, self.detectors, self.device, self.max_pixels = dict(models), dict(detectors), device, max_pixels
        self._weights: dict[str | None, tuple] = {}
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
                from ..hub import load_model_and_processor
                from ..predictor import AgePredictor

                choice = self.models[model_label]
                if choice.spec not in self._weights:
                    # local_files_only: a name that is not a local folder never reaches the network
                    self._weights[choice.spec] = load_model_and_processor(choice.spec, local_files_only=True)
                if detector_label not in self._dets:
                    from ..detection import build_detector

                    self._dets[detector_label] = _locked_detector(
                        build_detector(self.detectors[detector_label], device=self.device))
                model, processor = self._weights[choice.spec]
                self._predictors[key] = AgePredictor(model, processor, detector=self._dets[detector_label],
                                                     device=self.device, max_pixels=self.max_pixels,
                                                     backend=choice.backend)
            return self._predictors[key]
