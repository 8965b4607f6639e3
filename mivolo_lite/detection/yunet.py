"""YuNet face detector (OpenCV Zoo, libfacedetection), run by OpenCV's ``cv2.FaceDetectorYN``.

The model file ships inside this package (``models/yunet_2023mar_int8bq.onnx``, 120 KB, see
``models/NOTICE``): nothing is downloaded. It sees the whole photo at its own resolution (photos
whose longer side exceeds ``max_side`` are scaled down to it, bounding the time on large photos),
so it finds faces down to about 10 pixels: the crowd in the stands of a 640x480 baseball photo.
On coco128 it found 28 of the 29 labelled faces (BlazeFace with 2x2 tiles: 19) in half
BlazeFace's time (``tools/benchmark_detector.py --faces`` compares them on AAF too).
"""

from __future__ import annotations

import threading
from importlib import resources

import cv2
import numpy as np
import torch

MODEL_FILE = "yunet_2023mar_int8bq.onnx"
MIN_SIDE = 10


class YuNet:
    """Faces in an RGB uint8 image as ``(boxes (N, 4) xyxy pixels, scores (N,))`` tensors.

    ``score_threshold`` 0.7: on coco128 it keeps 27 of the 28 labelled faces found at 0.6 and
    79 faces in all instead of 132; those between 0.6 and 0.7 were mostly small faces in crowds
    that COCO does not label, but also blurred background blobs (one on zidane.jpg). Images
    whose shorter side is under ``MIN_SIDE`` pixels hold no face it could find (and give it
    non-finite boxes): none is reported."""

    def __init__(self, score_threshold: float = 0.7, nms_iou: float = 0.3, max_side: int = 1280):
        model = resources.files(__package__).joinpath("models", MODEL_FILE)
        with resources.as_file(model) as path:
            self.net = cv2.FaceDetectorYN.create(str(path), "", (320, 320), score_threshold, nms_iou, 5000)
        self.max_side = max_side
        self._lock = threading.Lock()  # the detector's input size is state shared by calls

    def __call__(self, image: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        h, w = image.shape[:2]
        if min(h, w) < MIN_SIDE:
            return torch.zeros(0, 4), torch.zeros(0)
        scale = min(1.0, self.max_side / max(h, w))
        if scale < 1.0:
            image = cv2.resize(image, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
        bgr = np.ascontiguousarray(image[:, :, ::-1])
        with self._lock:
            self.net.setInputSize((bgr.shape[1], bgr.shape[0]))
            _, found = self.net.detect(bgr)
        if found is None:
            return torch.zeros(0, 4), torch.zeros(0)
        found = found[np.isfinite(found[:, :4]).all(axis=1) & np.isfinite(found[:, -1])]
        boxes = torch.from_numpy(found[:, :4].copy())  # x, y, width, height
        boxes[:, 2:] += boxes[:, :2]
        return boxes / scale, torch.from_numpy(found[:, -1].copy())
