"""BlazeFace full-range face detector (MediaPipe's model), run by OpenCV's DNN module.

The model file ships inside this package (``models/blazeface_full_range.tflite``, 1 MB, Apache
License 2.0, see ``models/NOTICE``): nothing is downloaded. It sees the image letterboxed to
192x192 and finds faces down to about 1/10 of the image's longer side, so larger photos are also
cut into overlapping tiles (a 2x2 grid by default) to reach smaller faces. On a 2-core CPU it is
10-20 times faster than OpenCV's Haar cascades and finds more faces, in profile too, with fewer
false ones (figures: ``tools/benchmark_detector.py``).
"""

from __future__ import annotations

import threading
from importlib import resources

import cv2
import numpy as np
import torch

from .base import all_faces_at_least, nms

MODEL_FILE = "blazeface_full_range.tflite"
INPUT_SIZE = 192
STRIDE = 4  # one anchor per cell of a 48x48 grid (MediaPipe's SSD options for the full-range model)
NUM_VALUES = 16  # per anchor: box centre, size, then 6 key points (unused here)


def _anchor_centres(size: int = INPUT_SIZE, stride: int = STRIDE) -> np.ndarray:
    cells = size // stride
    centres = (np.arange(cells, dtype=np.float32) + 0.5) / cells
    ys, xs = np.meshgrid(centres, centres, indexing="ij")
    return np.stack([xs.ravel(), ys.ravel()], axis=1) * size  # (cells*cells, 2) in input pixels


class BlazeFace:
    """Faces in an RGB uint8 image as ``(boxes (N, 4) xyxy pixels, scores (N,))`` tensors.

    ``score_threshold`` applies to the whole-image pass and ``tile_score_threshold`` to tiles (a
    tile magnifies clutter, hands and patterns into face-sized blobs: tiles need more evidence).
    ``tile_grids``: for images whose longer side is at least ``min_tiling_side``, each ``g`` in it
    adds a ``g x g`` grid of overlapping tiles; ``()`` turns tiling off, ``(2, 4)`` reaches faces
    about 1/30 of the image side (crowds) at 21 model runs instead of 5. Tiles are skipped when
    the whole-image pass found only faces of at least ``tile_below`` of the longer side
    (portraits, close-ups): smaller faces would then be background people at best.
    """

    def __init__(self, score_threshold: float = 0.5, tile_score_threshold: float = 0.6,
                 tile_grids: tuple[int, ...] = (2,), min_tiling_side: int = 480, tile_below: float = 1 / 6,
                 nms_iou: float = 0.3):
        model = resources.files(__package__).joinpath("models", MODEL_FILE)
        with resources.as_file(model) as path:
            # OpenCV 5's new DNN engine reports only one of the model's two outputs; its classic
            # engine (OpenCV 4's, the only one there) reports both
            engine = {"engine": cv2.dnn.ENGINE_CLASSIC} if hasattr(cv2.dnn, "ENGINE_CLASSIC") else {}
            self.net = cv2.dnn.readNetFromTFLite(str(path), **engine)
        self.outputs = self.net.getUnconnectedOutLayersNames()
        if len(self.outputs) != 2:
            raise RuntimeError(f"OpenCV {cv2.__version__} read {len(self.outputs)} output(s) of the BlazeFace model, "
                               "not its 2 (scores, boxes); install 'opencv-python<5'")
        self.anchors = _anchor_centres()
        self.score_threshold, self.tile_score_threshold = score_threshold, tile_score_threshold
        self.tile_grids, self.min_tiling_side, self.nms_iou = tuple(tile_grids), min_tiling_side, nms_iou
        self.tile_below = tile_below
        self._lock = threading.Lock()  # one cv2.dnn.Net must not run two forwards at once

    def _run(self, image: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray]:
        """One model pass on ``image`` letterboxed to the input size; boxes in image pixels."""
        h, w = image.shape[:2]
        scale = INPUT_SIZE / max(h, w)
        nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
        top, left = (INPUT_SIZE - nh) // 2, (INPUT_SIZE - nw) // 2
        canvas = np.zeros((INPUT_SIZE, INPUT_SIZE, 3), np.uint8)
        canvas[top:top + nh, left:left + nw] = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_AREA)
        blob = cv2.dnn.blobFromImage(canvas, 1 / 127.5, (INPUT_SIZE, INPUT_SIZE), (127.5, 127.5, 127.5))
        with self._lock:
            self.net.setInput(blob)
            outs = self.net.forward(self.outputs)
        logits, raw = sorted(outs, key=lambda o: o.shape[-1])  # (1, A, 1) scores, (1, A, 16) boxes
        scores = 1 / (1 + np.exp(-np.clip(logits.reshape(-1), -80, 80)))
        keep = scores >= threshold
        raw = raw.reshape(-1, NUM_VALUES)[keep]
        centre = raw[:, :2] + self.anchors[keep]
        half = np.abs(raw[:, 2:4]) / 2
        boxes = np.concatenate([centre - half, centre + half], axis=1)
        boxes = (boxes - [left, top, left, top]) / scale
        return boxes.astype(np.float32), scores[keep].astype(np.float32)

    def _tiles(self, h: int, w: int, faces: np.ndarray):
        """Overlapping square-ish tiles ``(x0, y0, x1, y1)`` for each grid in ``tile_grids``."""
        if max(h, w) < self.min_tiling_side or all_faces_at_least(faces, self.tile_below, (h, w)):
            return
        for g in self.tile_grids:
            if g < 2:
                continue
            side = int(max(h, w) * 1.1 / g)  # 10 % overlap so a face on a seam is whole in one tile
            for y0 in np.linspace(0, max(0, h - side), g).astype(int):
                for x0 in np.linspace(0, max(0, w - side), g).astype(int):
                    yield x0, y0, min(w, x0 + side), min(h, y0 + side)

    def __call__(self, image: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        found = [self._run(image, self.score_threshold)]
        for x0, y0, x1, y1 in self._tiles(*image.shape[:2], found[0][0]):
            boxes, scores = self._run(image[y0:y1, x0:x1], self.tile_score_threshold)
            # a face cut by a seam inside the image is whole in a neighbouring tile or the full pass
            inner = (((boxes[:, 0] < 2) & (x0 > 0)) | ((boxes[:, 1] < 2) & (y0 > 0))
                     | ((boxes[:, 2] > x1 - x0 - 2) & (x1 < image.shape[1]))
                     | ((boxes[:, 3] > y1 - y0 - 2) & (y1 < image.shape[0])))
            found.append((boxes[~inner] + np.array([x0, y0, x0, y0], np.float32), scores[~inner]))
        boxes = torch.from_numpy(np.concatenate([b for b, _ in found]))
        scores = torch.from_numpy(np.concatenate([s for _, s in found]))
        keep = nms(boxes, scores, self.nms_iou)
        return boxes[keep], scores[keep]
