"""tools/convert_faceres.py: TFJS graph model (faceres-deep naming) -> torch MobileNet-v1.

A tiny random graph in the TFJS format is written by the test itself and the
converted module is compared with a plain numpy evaluation of that graph (NHWC,
TF 'SAME' padding, BN mul/add as separate ops as in the real graph). When
MIVOLO_FACERES_JSON points at the real ``package/models/faceres-deep.json`` the
converted network is compared with outputs of the original TFJS runtime saved in
tests/data/faceres_deep_tfjs_reference.json (made by tools/faceres_reference.mjs).
"""

import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import convert_faceres  # noqa: E402

REFERENCE = Path(__file__).parent / "data" / "faceres_deep_tfjs_reference.json"


def reference_input(n=2, size=224):
    """Deterministic caffe-range NHWC input (no RNG, so node and python agree)."""
    i, y, x, c = np.meshgrid(np.arange(n), np.arange(size), np.arange(size), np.arange(3), indexing="ij")
    v = 110.0 * np.sin(0.05 * x * (c + 1) + 0.031 * y * (i + 1) + 0.7 * c) + 10.0 * np.cos(0.2 * (x - y))
    return v.astype(np.float32)


def _node(name, op, inputs=(), strides=None):
    n = {"name": name, "op": op, "input": list(inputs), "attr": {}}
    if strides is not None:
        n["attr"] = {"strides": {"list": {"i": ["1", str(strides), str(strides), "1"]}},
                     "padding": {"s": "U0FNRQ=="}, "data_format": {"s": "TkhXQw=="},
                     "dilations": {"list": {"i": ["1", "1", "1", "1"]}}}
    return n


def make_tiny_graph(folder: Path, rng, size=32, stem=4, blocks=None, feat=6, bins=5):
    """Write tiny.json + tiny.bin in the faceres-deep naming pattern; returns weights."""
    blocks = blocks or [(4, 1), (6, 2), (6, 1), (8, 2), (8, 1), (8, 2),
                        (8, 1), (8, 1), (8, 1), (8, 1), (8, 1), (10, 2), (10, 1)]
    w = {}
    w["age_pred/kernel"] = rng.normal(0, 0.5, (feat, bins))
    w["age_pred/bias"] = rng.normal(0, 0.1, (bins,))
    w["feats/kernel"] = rng.normal(0, 0.5, (blocks[-1][0], feat))
    w["feats/bias"] = rng.normal(0, 0.1, (feat,))
    w["gender_pred/kernel"] = rng.normal(0, 0.5, (feat, 1))
    w["gender_pred/bias"] = rng.normal(0, 0.1, (1,))
    w["conv1/convolution/merged_input"] = rng.normal(0, 0.02, (3, 3, 3, stem))
    w["conv1_bn/batchnorm_1/sub"] = rng.normal(0, 0.5, (stem,))
    nodes, prev, c = [], "input_1", stem

    def relu(layer, x):
        w[f"{layer}_relu/Cast"] = np.array(6.0)
        w[f"{layer}_relu/Const_1"] = np.array(0.0)
        nodes.extend([_node(f"{layer}_relu/Relu", "Relu", [x]),
                      _node(f"{layer}_relu/clip_by_value/Minimum", "Minimum", [f"{layer}_relu/Relu", f"{layer}_relu/Cast"]),
                      _node(f"{layer}_relu/clip_by_value", "Maximum",
                            [f"{layer}_relu/clip_by_value/Minimum", f"{layer}_relu/Const_1"])])
        return f"{layer}_relu/clip_by_value"

    nodes.append(_node("conv1_bn/batchnorm_1/mul_1", "Conv2D", [prev, "conv1/convolution/merged_input"], 2))
    nodes.append(_node("conv1_bn/batchnorm_1/add_1", "Add", ["conv1_bn/batchnorm_1/mul_1", "conv1_bn/batchnorm_1/sub"]))
    prev = relu("conv1", "conv1_bn/batchnorm_1/add_1")
    for i, (cout, s) in enumerate(blocks, start=1):
        w[f"conv_dw_{i}/depthwise_kernel"] = rng.normal(0, 0.4, (3, 3, c, 1))
        w[f"conv_dw_{i}_bn/batchnorm_1/mul"] = rng.uniform(0.5, 1.5, (c,))
        w[f"conv_dw_{i}_bn/batchnorm_1/sub"] = rng.normal(0, 0.3, (c,))
        nodes.append(_node(f"conv_dw_{i}/depthwise", "DepthwiseConv2dNative", [prev, f"conv_dw_{i}/depthwise_kernel"], s))
        nodes.append(_node(f"conv_dw_{i}_bn/batchnorm_1/mul_1", "Mul", [f"conv_dw_{i}/depthwise", f"conv_dw_{i}_bn/batchnorm_1/mul"]))
        nodes.append(_node(f"conv_dw_{i}_bn/batchnorm_1/add_1", "Add", [f"conv_dw_{i}_bn/batchnorm_1/mul_1", f"conv_dw_{i}_bn/batchnorm_1/sub"]))
        prev = relu(f"conv_dw_{i}", f"conv_dw_{i}_bn/batchnorm_1/add_1")
        w[f"conv_pw_{i}/convolution/merged_input"] = rng.normal(0, 1.0 / np.sqrt(c), (1, 1, c, cout))
        w[f"conv_pw_{i}_bn/batchnorm_1/sub"] = rng.normal(0, 0.3, (cout,))
        nodes.append(_node(f"conv_pw_{i}_bn/batchnorm_1/mul_1", "Conv2D", [prev, f"conv_pw_{i}/convolution/merged_input"], 1))
        nodes.append(_node(f"conv_pw_{i}_bn/batchnorm_1/add_1", "Add", [f"conv_pw_{i}_bn/batchnorm_1/mul_1", f"conv_pw_{i}_bn/batchnorm_1/sub"]))
        prev = relu(f"conv_pw_{i}", f"conv_pw_{i}_bn/batchnorm_1/add_1")
        c = cout
    w["global_pooling/Mean/reduction_indices"] = np.array([1, 2], np.int32)
    nodes.append({"name": "input_1", "op": "Placeholder", "attr": {"dtype": {"type": "DT_FLOAT"}, "shape": {
        "shape": {"dim": [{"size": "-1"}, {"size": str(size)}, {"size": str(size)}, {"size": "3"}]}}}})
    specs, chunks = [], []
    for name, arr in w.items():
        if name == "feats/kernel":  # one uint8-quantised weight, as tfjs-converter --quantize_uint8 writes
            lo, hi = float(arr.min()), float(arr.max())
            scale = (hi - lo) / 255.0
            q = np.round((arr - lo) / scale).astype(np.uint8)
            w[name] = q.astype(np.float32) * np.float32(scale) + np.float32(lo)
            specs.append({"name": name, "shape": list(arr.shape), "dtype": "float32",
                          "quantization": {"dtype": "uint8", "scale": scale, "min": lo}})
            chunks.append(q.tobytes())
            continue
        dtype = "int32" if arr.dtype == np.int32 else "float32"
        w[name] = arr.astype(np.int32 if dtype == "int32" else np.float32)
        specs.append({"name": name, "shape": list(arr.shape), "dtype": dtype})
        chunks.append(w[name].astype("<i4" if dtype == "int32" else "<f4").tobytes())
    (folder / "tiny.bin").write_bytes(b"".join(chunks))
    (folder / "tiny.json").write_text(json.dumps({
        "format": "graph-model", "modelTopology": {"node": nodes},
        "weightsManifest": [{"paths": ["tiny.bin"], "weights": specs}]}))
    return w, blocks


def _same_pad(x, k, s):
    h, wd = x.shape[1:3]
    ph = max((-(-h // s) - 1) * s + k - h, 0)
    pw = max((-(-wd // s) - 1) * s + k - wd, 0)
    return np.pad(x, ((0, 0), (ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2), (0, 0)))


def np_conv(x, hwio, s, depthwise=False):
    """NHWC conv with TF SAME padding, in float64."""
    k = hwio.shape[0]
    xp = _same_pad(x, k, s)
    n, h, w_, c = x.shape
    oh, ow = -(-h // s), -(-w_ // s)
    out = 0.0
    for dy in range(k):
        for dx in range(k):
            patch = xp[:, dy:dy + s * (oh - 1) + 1:s, dx:dx + s * (ow - 1) + 1:s, :]
            if depthwise:
                out = out + patch * hwio[dy, dx, :, 0]
            else:
                out = out + patch @ hwio[dy, dx]
    return out


def numpy_forward(w, blocks, x):
    r6 = lambda v: np.clip(v, 0, 6)  # noqa: E731
    x = x.astype(np.float64)
    x = r6(np_conv(x, w["conv1/convolution/merged_input"], 2) + w["conv1_bn/batchnorm_1/sub"])
    maps = {}
    for i, (_, s) in enumerate(blocks, start=1):
        x = np_conv(x, w[f"conv_dw_{i}/depthwise_kernel"], s, depthwise=True)
        x = r6(x * w[f"conv_dw_{i}_bn/batchnorm_1/mul"] + w[f"conv_dw_{i}_bn/batchnorm_1/sub"])
        x = r6(np_conv(x, w[f"conv_pw_{i}/convolution/merged_input"], 1) + w[f"conv_pw_{i}_bn/batchnorm_1/sub"])
        maps[i] = x
    pooled = x.mean(axis=(1, 2))
    f = np.maximum(pooled @ w["feats/kernel"] + w["feats/bias"], 0)
    logits = f @ w["age_pred/kernel"] + w["age_pred/bias"]
    e = np.exp(logits - logits.max(-1, keepdims=True))
    age = e / e.sum(-1, keepdims=True)
    gender = 1 / (1 + np.exp(-(f @ w["gender_pred/kernel"] + w["gender_pred/bias"])))
    return {"stride16": maps[11], "stride32": maps[len(blocks)], "pooled": pooled,
            "age_prob": age, "gender_prob": gender[:, 0]}


def test_tiny_graph_converts_and_matches_numpy(tmp_path):
    rng = np.random.default_rng(0)
    w, blocks = make_tiny_graph(tmp_path, rng, size=64)  # even sizes: TF SAME pads stride-2 convs only bottom/right
    out_file = tmp_path / "tiny.safetensors"
    net, arch = convert_faceres.convert(tmp_path / "tiny.json", out_file)
    assert arch["blocks"] == blocks
    assert arch["feat_dim"] == 6 and arch["age_bins"] == 5 and arch["input_shape_nhwc"] == [-1, 64, 64, 3]

    x = rng.uniform(-120, 130, (2, 64, 64, 3)).astype(np.float32)
    ref = numpy_forward(w, blocks, x)
    loaded, _ = convert_faceres.load_converted(out_file)
    for model in (net, loaded):
        with torch.no_grad():
            out = model(torch.from_numpy(x).permute(0, 3, 1, 2))
        for key in ("stride16", "stride32"):
            got = out[key].permute(0, 2, 3, 1).numpy()
            assert got.shape == ref[key].shape
            np.testing.assert_allclose(got, ref[key], atol=2e-4, rtol=1e-4)
        for key in ("pooled", "age_prob", "gender_prob"):
            np.testing.assert_allclose(out[key].numpy(), ref[key], atol=2e-5, rtol=1e-4)
    assert ref["stride16"].shape[1:3] == (4, 4) and ref["stride32"].shape[1:3] == (2, 2)


def test_quantised_weights_are_dequantised(tmp_path):
    w, _ = make_tiny_graph(tmp_path, np.random.default_rng(1))
    _, read = convert_faceres.read_tfjs_weights(tmp_path / "tiny.json")
    np.testing.assert_allclose(read["feats/kernel"], w["feats/kernel"], atol=1e-6)
    assert read["global_pooling/Mean/reduction_indices"].dtype == np.int32


@pytest.mark.skipif(not os.environ.get("MIVOLO_FACERES_JSON"), reason="MIVOLO_FACERES_JSON not set")
def test_real_faceres_matches_saved_tfjs_reference(tmp_path):
    net, arch = convert_faceres.convert(Path(os.environ["MIVOLO_FACERES_JSON"]), tmp_path / "f.safetensors")
    assert arch["input_shape_nhwc"] == [-1, 224, 224, 3]
    ref = json.loads(REFERENCE.read_text())
    x = reference_input()
    with torch.no_grad():
        out = net(torch.from_numpy(x).permute(0, 3, 1, 2))
    assert out["stride16"].shape == (2, 512, 14, 14) and out["stride32"].shape == (2, 1024, 7, 7)
    np.testing.assert_allclose(out["pooled"].numpy(), np.asarray(ref["global_pooling/Mean"]), atol=1e-4)
    np.testing.assert_allclose(out["age_prob"].numpy(), np.asarray(ref["age_pred/Softmax"]), atol=1e-5)
    np.testing.assert_allclose(out["gender_prob"].numpy(), np.asarray(ref["gender_pred/Sigmoid"])[:, 0], atol=1e-5)


def test_cli_writes_safetensors_with_arch_metadata(tmp_path, capsys):
    make_tiny_graph(tmp_path, np.random.default_rng(2))
    out = tmp_path / "out" / "tiny.safetensors"
    assert convert_faceres.main(["--model-json", str(tmp_path / "tiny.json"), "--output", str(out)]) == 0
    net, arch = convert_faceres.load_converted(out)
    assert arch["stem_channels"] == 4 and len(arch["blocks"]) == 13
    assert "architecture:" in capsys.readouterr().out
