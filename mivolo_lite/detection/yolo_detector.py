"""ultralytics YOLO backend: a face+person model (like the one MiVOLO publishes, classes
``person`` and ``face``), or a COCO model for persons plus an optional second model for faces.

Weights come from a local ``.pt`` path or a Hugging Face Hub repo id (``org/name`` or
``org/name/file.pt``; resolved through the HF cache, so it works offline once cached), and only
from what the caller names: nothing is fetched by default, and a missing local file is an error
rather than a download by ultralytics. YOLO ``.pt`` files are pickles, which can run code when
loaded: load only weights you trust.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .._ultralytics import ultralytics_offline
from .base import Detections, Detector

ultralytics_offline()


def resolve_weights(spec: str) -> str:
    path = Path(spec)
    if path.suffix in (".pt", ".yaml", ".onnx") and (path.exists() or spec.endswith(".yaml")):
        return str(path)
    if path.exists():
        raise FileNotFoundError(f"{spec!r} is not a YOLO weights file (.pt)")
    if path.suffix in (".pt", ".onnx") and spec.count("/") < 2:  # a file name, not org/repo/file.pt
        raise FileNotFoundError(f"YOLO weights {spec!r}: no such file (weights are never downloaded implicitly; "
                                "give a local path or a Hub id org/repo/file.pt)")
    from huggingface_hub import hf_hub_download, list_repo_files
    from huggingface_hub.errors import HFValidationError, LocalEntryNotFoundError, RepositoryNotFoundError

    from ..hub import hub_unreachable_reason

    parts = spec.split("/")
    repo_id, filename = "/".join(parts[:2]), "/".join(parts[2:]) or None
    unreachable = hub_unreachable_reason()  # then the HF cache only, failing at once (no retries)
    try:
        if filename is None:
            if unreachable:
                raise FileNotFoundError(f"the Hugging Face Hub cannot be reached ({unreachable}): name the weights "
                                        f"file inside {repo_id!r} as {repo_id}/<file>.pt to use the HF cache")
            candidates = [f for f in list_repo_files(repo_id) if f.endswith(".pt")]
            if not candidates:
                raise FileNotFoundError(f"Hub repo {repo_id!r} has no .pt file")
            filename = candidates[0]
        return hf_hub_download(repo_id, filename, local_files_only=unreachable is not None)
    except (RepositoryNotFoundError, LocalEntryNotFoundError, HFValidationError) as e:
        where = (f"not in the HF cache, and the Hugging Face Hub cannot be reached ({unreachable})" if unreachable
                 else f"not available from the Hugging Face Hub or its cache ({type(e).__name__})")
        raise FileNotFoundError(f"YOLO weights {spec!r}: not a local file and {where}") from None


class YOLODetector(Detector):
    name = "yolo"

    def __init__(self, weights: str, face_weights: str | None = None, device: str = "cpu", conf: float = 0.4,
                 iou: float = 0.7, imgsz: int = 640, half: bool = False):
        from ultralytics import YOLO

        self.model = YOLO(resolve_weights(weights), task="detect")
        self.face_model = YOLO(resolve_weights(face_weights), task="detect") if face_weights else None
        self.device, self.conf, self.iou, self.imgsz, self.half = device, conf, iou, imgsz, half
        self.person_ids = self._class_ids(self.model, "person")
        self.face_ids = self._class_ids(self.face_model or self.model, "face")
        if self.face_model is not None and not self.face_ids:
            self.face_ids = list(self.face_model.names)  # a single-class face model may call its class anything

    @staticmethod
    def _class_ids(model, name: str) -> list[int]:
        return [i for i, n in model.names.items() if str(n).lower() == name]

    def _run(self, model, images: list[np.ndarray]):
        bgr = [np.ascontiguousarray(im[:, :, ::-1]) for im in images]  # ultralytics takes numpy as BGR
        return model.predict(bgr, conf=self.conf, iou=self.iou, imgsz=self.imgsz, device=self.device,
                             half=self.half, verbose=False)

    @staticmethod
    def _select(boxes, ids: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        if boxes is None or len(boxes) == 0 or not ids:
            return torch.zeros(0, 4), torch.zeros(0)
        keep = torch.isin(boxes.cls.cpu().long(), torch.tensor(ids))
        return boxes.xyxy.cpu().float()[keep], boxes.conf.cpu().float()[keep]

    def detect_batch(self, images: list[np.ndarray]) -> list[Detections]:
        main = self._run(self.model, images)
        faces = self._run(self.face_model, images) if self.face_model is not None else main
        out = []
        for image, r, rf in zip(images, main, faces):
            pb, ps = self._select(r.boxes, self.person_ids)
            fb, fs = self._select(rf.boxes, self.face_ids)
            out.append(Detections(pb, ps, fb, fs).clipped(image.shape[1], image.shape[0]))
        return out

    def detect(self, image: np.ndarray) -> Detections:
        return self.detect_batch([image])[0]
