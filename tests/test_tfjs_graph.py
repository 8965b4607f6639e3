"""tools/tfjs_graph.py and tools/convert_detectors.py: the TF1 bilinear resize written for export
matches its definition, and (with MIVOLO_CENTERNET_JSON pointing at the npm package's
models/centernet.json) the conversion reproduces the shipped ONNX file's outputs."""

import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
from tfjs_graph import TFJSGraph  # noqa: E402


def tf1_resize(x, oh, ow):
    """TF1 resize_bilinear (no half-pixel centres, no corner alignment), written out: output
    pixel i samples input i * in / out, the last input repeated past the edge."""
    def weights(n_in, n_out):
        src = np.arange(n_out) * n_in / n_out
        i0 = np.minimum(np.floor(src).astype(int), n_in - 1)
        return i0, np.minimum(i0 + 1, n_in - 1), src - i0
    y0, y1, fy = weights(x.shape[2], oh)
    x0, x1, fx = weights(x.shape[3], ow)
    rows = x[:, :, y0] * (1 - fy)[:, None] + x[:, :, y1] * fy[:, None]
    return rows[..., x0] * (1 - fx) + rows[..., x1] * fx


@pytest.mark.parametrize("fy, fx", [(2, 2), (3, 2), (1, 2)])
def test_whole_factor_upsampling_is_tf1_bilinear(fy, fx):
    x = torch.randn(1, 3, 5, 7)
    ours = TFJSGraph._upsample_legacy(x, fy, fx)
    np.testing.assert_allclose(ours.numpy(), tf1_resize(x.numpy(), 5 * fy, 7 * fx), atol=1e-5)
    np.testing.assert_allclose(TFJSGraph._resize_legacy(x, (4, 9)).numpy(), tf1_resize(x.numpy(), 4, 9), atol=1e-5)


@pytest.mark.skipif(not os.environ.get("MIVOLO_CENTERNET_JSON"), reason="MIVOLO_CENTERNET_JSON not set")
def test_conversion_reproduces_the_shipped_file(tmp_path):
    import cv2

    from convert_detectors import OUTPUT, export

    fresh = export(Path(os.environ["MIVOLO_CENTERNET_JSON"]), tmp_path / "centernet_person.onnx")
    x = np.random.default_rng(0).uniform(0, 255, (1, 384, 512, 3)).astype(np.float32)
    outs = []
    for path in (fresh, OUTPUT):
        net = cv2.dnn.readNetFromONNX(str(path))
        net.setInput(x)
        outs.append(net.forward(["heatmap", "sizes"]))
    for a, b in zip(*outs):
        np.testing.assert_allclose(a, b, atol=1e-6)
