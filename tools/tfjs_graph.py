"""Reading TFJS models (``model.json`` + ``*.bin`` weight shards) and running TFJS *graph* models
with torch, for the converters in tools/ (``convert_faceres.py``, ``convert_detectors.py``).

:func:`read_tfjs_weights` reads a ``weightsManifest`` (float32/int32 tensors, and the uint8,
uint16 and float16 quantised ones, dequantised to float32). :class:`TFJSGraph` evaluates the
graph's nodes in order with TensorFlow semantics (NHWC tensors, TF "SAME" padding, the converter's
fused ops), enough of TensorFlow's op set for the detectors converted here; an op outside it
raises naming the node. It is a reference and an export route (``torch.onnx.export`` traces it),
not a fast runtime.
"""

from __future__ import annotations

import base64
import json
import math
from pathlib import Path
from typing import Dict, Tuple

import numpy as np
import torch
import torch.nn.functional as F

_DTYPES = {"float32": np.float32, "int32": np.int32, "float16": np.float16, "bool": np.bool_}
_QDTYPES = {"uint8": np.uint8, "uint16": np.uint16, "float16": np.float16}


def read_tfjs_weights(model_json: Path) -> Tuple[dict, Dict[str, np.ndarray]]:
    """Graph json and its weights (dequantised to float32 / kept int32) by name."""
    model = json.loads(Path(model_json).read_text())
    base = Path(model_json).parent
    weights: Dict[str, np.ndarray] = {}
    for group in model["weightsManifest"]:
        buf = b"".join((base / p).read_bytes() for p in group["paths"])
        off = 0
        for spec in group["weights"]:
            shape = [int(s) for s in spec["shape"]]
            count = int(np.prod(shape)) if shape else 1
            q = spec.get("quantization")
            if q:
                qd = np.dtype(_QDTYPES[q["dtype"]]).newbyteorder("<")
                raw = np.frombuffer(buf, dtype=qd, count=count, offset=off)
                off += raw.nbytes
                if q["dtype"] == "float16":
                    arr = raw.astype(np.float32)
                else:
                    scale = float(q.get("scale", 1.0))
                    minimum = float(q.get("min", 0.0))
                    arr = raw.astype(np.float32) * scale + minimum
                    if spec["dtype"] == "int32":
                        arr = np.round(arr).astype(np.int32)
            else:
                dt = np.dtype(_DTYPES[spec["dtype"]]).newbyteorder("<")
                arr = np.frombuffer(buf, dtype=dt, count=count, offset=off)
                off += arr.nbytes
            weights[spec["name"]] = np.array(arr).reshape(shape)
        if off != len(buf):
            raise ValueError(f"weights group {group['paths']}: read {off} of {len(buf)} bytes")
    return model, weights


def _attr(node: dict, key: str, default=None):
    a = node.get("attr", {}).get(key)
    if a is None:
        return default
    if "list" in a:
        lst = a["list"]
        if "i" in lst:
            return [int(v) for v in lst["i"]]
        if "s" in lst:
            return [base64.b64decode(v).decode() for v in lst["s"]]
        return []
    if "s" in a:
        return base64.b64decode(a["s"]).decode()
    if "i" in a:
        return int(a["i"])
    if "f" in a:
        return float(a["f"])
    if "b" in a:
        return bool(a["b"])
    return default


def _same_pad(size: int, k: int, s: int, d: int = 1) -> Tuple[int, int]:
    """TensorFlow's SAME padding (extra pixel at the end) for one spatial dimension."""
    out = math.ceil(size / s)
    total = max((out - 1) * s + (k - 1) * d + 1 - size, 0)
    return total // 2, total - total // 2


def _nchw_pad(x: torch.Tensor, padding: str, k: Tuple[int, int], s: Tuple[int, int], d: Tuple[int, int],
              value: float = 0.0) -> torch.Tensor:
    if padding != "SAME":
        return x
    # int(): constant pads in a traced export (the same for every input size that is a multiple
    # of the network's total stride), not shape arithmetic
    top, bottom = _same_pad(int(x.shape[2]), k[0], s[0], d[0])
    left, right = _same_pad(int(x.shape[3]), k[1], s[1], d[1])
    if top or bottom or left or right:
        x = F.pad(x, (left, right, top, bottom), value=value)
    return x


class TFJSGraph(torch.nn.Module):
    """A TFJS graph model as a torch module: ``forward(x)`` takes the graph's input (NHWC or as
    the graph expects) and returns ``{output name: tensor}`` for the names in ``outputs``."""

    def __init__(self, model_json: Path, outputs: list[str], any_input_size: bool = False):
        super().__init__()
        self.model, weights = read_tfjs_weights(model_json)
        self.nodes = {n["name"]: n for n in self.model["modelTopology"]["node"]}
        self.consts = {k: torch.from_numpy(v.copy()) for k, v in weights.items()}
        self.outputs = list(outputs)
        self.order = self._order()
        # Resizes whose output size is a constant of the graph (made for one input size) become
        # resizes by the factor they have at that size, so the graph runs at other input sizes
        self.resize_factors: Dict[str, Tuple[float, float]] | None = None
        if any_input_size:
            placeholder = next(n for n in self.nodes.values() if n["op"] == "Placeholder")
            shape = [int(d["size"]) for d in placeholder["attr"]["shape"]["shape"]["dim"]]
            self.resize_factors = {}
            with torch.no_grad():
                self.forward(torch.zeros(shape))

    def _order(self) -> list[str]:
        """Nodes the outputs need, in an order where inputs come first."""
        order, seen = [], set()

        def visit(name):
            name = name.split(":")[0].lstrip("^")
            if name in seen:
                return
            seen.add(name)
            for i in self.nodes[name].get("input", []):
                visit(i)
            order.append(name)

        for o in self.outputs:
            visit(o)
        return order

    def forward(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        values: Dict[str, object] = {}
        for name in self.order:
            node = self.nodes[name]
            op = node["op"]
            if op == "Placeholder":
                values[name] = x
            elif op == "Const":
                values[name] = self.consts[name]
            else:
                ins = [self._get(values, i) for i in node.get("input", []) if not i.startswith("^")]
                try:
                    values[name] = self._eval(node, op, ins)
                except Exception as e:
                    raise RuntimeError(f"TFJS node {name} ({op}): {e}") from e
        return {o: self._get(values, o) for o in self.outputs}

    @staticmethod
    def _get(values, ref: str):
        name, _, index = ref.partition(":")
        v = values[name]
        if isinstance(v, tuple):
            return v[int(index or 0)]
        return v

    def _eval(self, node, op, ins):  # noqa: C901 - one branch per TF op
        a = lambda key, default=None: _attr(node, key, default)  # noqa: E731
        if op in ("Identity", "StopGradient"):
            return ins[0]
        if op in ("Conv2D", "_FusedConv2D", "DepthwiseConv2dNative", "FusedDepthwiseConv2dNative"):
            return self._conv(node, op, ins)
        if op in ("Add", "AddV2", "BiasAdd"):
            return ins[0] + ins[1]
        if op == "AddN":
            out = ins[0]
            for t in ins[1:]:
                out = out + t
            return out
        if op == "Sub":
            return ins[0] - ins[1]
        if op == "Mul":
            return ins[0] * ins[1]
        if op == "RealDiv":
            return ins[0] / ins[1]
        if op == "FloorDiv":
            return torch.div(ins[0], ins[1], rounding_mode="floor")
        if op == "FloorMod":
            return torch.remainder(ins[0], ins[1])
        if op == "Maximum":
            return torch.maximum(ins[0], ins[1].to(ins[0].dtype))
        if op == "Minimum":
            return torch.minimum(ins[0], ins[1].to(ins[0].dtype))
        if op == "SquaredDifference":
            return (ins[0] - ins[1]) ** 2
        if op == "Equal":
            return ins[0] == ins[1]
        if op == "Relu":
            return F.relu(ins[0])
        if op == "Relu6":
            return F.relu6(ins[0])
        if op == "LeakyRelu":
            return F.leaky_relu(ins[0], a("alpha", 0.2))
        if op == "Sigmoid":
            return torch.sigmoid(ins[0])
        if op == "Tanh":
            return torch.tanh(ins[0])
        if op == "Exp":
            return torch.exp(ins[0])
        if op == "Abs":
            return torch.abs(ins[0])
        if op == "Sqrt":
            return torch.sqrt(ins[0])
        if op == "Rsqrt":
            return torch.rsqrt(ins[0])
        if op == "Reciprocal":
            return 1.0 / ins[0]
        if op == "Neg":
            return -ins[0]
        if op == "Softmax":
            return torch.softmax(ins[0], dim=-1)
        if op == "Cast":
            dst = a("DstT")
            return ins[0].to(torch.float32 if dst == "DT_FLOAT" else torch.int64 if dst in ("DT_INT32", "DT_INT64")
                             else torch.bool if dst == "DT_BOOL" else ins[0].dtype)
        if op == "Transpose":
            return ins[0].permute(*[int(v) for v in ins[1].tolist()])
        if op == "Reshape":
            return ins[0].reshape([int(v) for v in ins[1].tolist()])
        if op == "Squeeze":
            dims = a("squeeze_dims", []) or [i for i, s in enumerate(ins[0].shape) if s == 1]
            out = ins[0]
            for d in sorted((d % out.dim() for d in dims), reverse=True):
                out = out.squeeze(d)
            return out
        if op == "ExpandDims":
            return ins[0].unsqueeze(int(ins[1].reshape(-1)[0]))
        if op == "ConcatV2":
            axis = int(ins[-1].reshape(-1)[0])
            ts = ins[:-1]
            dtype = torch.float32 if any(t.is_floating_point() for t in ts) else ts[0].dtype
            return torch.cat([t.to(dtype) for t in ts], dim=axis)
        if op == "Pack":
            return torch.stack(ins, dim=a("axis", 0))
        if op in ("Pad", "PadV2", "MirrorPad"):
            pads = [int(v) for v in ins[1].reshape(-1).tolist()]
            flat = []
            for i in range(len(pads) // 2 - 1, -1, -1):
                flat += [pads[2 * i], pads[2 * i + 1]]
            value = float(ins[2].reshape(-1)[0]) if op == "PadV2" else 0.0
            return F.pad(ins[0], flat, value=value)
        if op in ("MaxPool", "AvgPool"):
            k, s = a("ksize"), a("strides")
            x = ins[0].permute(0, 3, 1, 2)
            fill = float("-inf") if op == "MaxPool" else 0.0
            x = _nchw_pad(x, a("padding"), (k[1], k[2]), (s[1], s[2]), (1, 1), value=fill)
            pool = F.max_pool2d if op == "MaxPool" else F.avg_pool2d
            return pool(x, (k[1], k[2]), (s[1], s[2])).permute(0, 2, 3, 1)
        if op == "Mean":
            dims = [int(v) for v in ins[1].reshape(-1).tolist()]
            return ins[0].mean(dim=dims, keepdim=a("keep_dims", False))
        if op in ("Sum", "Max"):
            dims = [int(v) for v in ins[1].reshape(-1).tolist()]
            f = torch.sum if op == "Sum" else torch.amax
            return f(ins[0], dim=dims, keepdim=a("keep_dims", False))
        if op == "ResizeBilinear":
            size = [int(v) for v in ins[1].tolist()]
            x = ins[0].permute(0, 3, 1, 2)
            factors = self.resize_factors
            if factors is not None and node["name"] in factors:
                fy, fx = factors[node["name"]]
                if fy == int(fy) and fx == int(fx) and not a("align_corners", False) \
                        and not a("half_pixel_centers", False):
                    return self._upsample_legacy(x, int(fy), int(fx)).permute(0, 2, 3, 1)
                size = [round(int(x.shape[2]) * fy), round(int(x.shape[3]) * fx)]
            elif factors is not None:
                factors[node["name"]] = (size[0] / x.shape[2], size[1] / x.shape[3])
            if a("align_corners", False):
                y = F.interpolate(x, size=size, mode="bilinear", align_corners=True)
            elif a("half_pixel_centers", False):
                y = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
            else:
                y = self._resize_legacy(x, size)
            return y.permute(0, 2, 3, 1)
        if op in ("SplitV", "Split"):
            if op == "Split":
                axis, x = int(ins[0]), ins[1]
                return tuple(torch.chunk(x, a("num_split"), dim=axis))
            sizes, axis = [int(v) for v in ins[1].tolist()], int(ins[2])
            return tuple(torch.split(ins[0], sizes, dim=axis))
        if op == "SparseToDense":
            idx, shape, vals, default = (t.numpy() for t in ins)
            out = np.full([int(v) for v in np.reshape(shape, -1)], default, dtype=vals.dtype)
            idx = np.reshape(idx, (-1,) if out.ndim == 1 else (-1, out.ndim))
            out[tuple(idx.T) if out.ndim > 1 else idx] = vals
            return torch.from_numpy(out)
        if op == "StridedSlice":
            return self._strided_slice(node, ins)
        raise NotImplementedError(f"op {op} is not supported")

    @staticmethod
    def _resize_legacy(x, size):
        """TF1 bilinear resize (align_corners=False, half_pixel_centers=False): output pixel ``i``
        samples the input at ``i * in / out``. Integer factors are written with slices and
        concatenations only, so an exported graph keeps working at other input sizes."""
        h, w = x.shape[2], x.shape[3]
        oh, ow = size
        if oh % h == 0 and ow % w == 0:
            return TFJSGraph._upsample_legacy(x, oh // h, ow // w)

        def coords(n_in, n_out):
            src = torch.arange(n_out, dtype=torch.float32) * (n_in / n_out)
            i0 = src.floor().long().clamp(max=n_in - 1)
            i1 = (i0 + 1).clamp(max=n_in - 1)
            return i0, i1, (src - i0.float())

        y0, y1, fy = coords(h, oh)
        x0, x1, fx = coords(w, ow)
        top = x[:, :, y0] * (1 - fy)[None, None, :, None] + x[:, :, y1] * fy[None, None, :, None]
        return top[..., x0] * (1 - fx) + top[..., x1] * fx

    @staticmethod
    def _upsample_legacy(x, fy: int, fx: int):
        """:meth:`_resize_legacy` by whole factors: output ``f*i + r`` mixes inputs ``i`` and ``i+1``
        (the last one repeated) with weights ``1 - r/f`` and ``r/f``. Written as an edge pad and a
        depthwise transposed convolution, so an exported graph has no shape arithmetic (OpenCV's
        ONNX importer refuses it) and runs at any input size."""
        channels = x.shape[1]
        # 1-D kernels of length 2f-1 (weights 1/f, 2/f .. 1 .. 1/f), made in numpy so that a
        # traced export sees a constant weight
        ky, kx = ([1 - abs(k - (f - 1)) / f for k in range(2 * f - 1)] for f in (fy, fx))
        weight = torch.from_numpy(np.ascontiguousarray(np.broadcast_to(
            np.outer(ky, kx).astype(np.float32), (channels, 1, len(ky), len(kx)))))
        x = F.pad(x, (0, 1 if fx > 1 else 0, 0, 1 if fy > 1 else 0), mode="replicate")
        y = F.conv_transpose2d(x, weight, stride=(fy, fx), groups=channels)
        # y[f*i + f - 1 + r] is output f*i + r; the last padded input adds f cells past the end
        rows = slice(fy - 1, -fy) if fy > 1 else slice(None)
        cols = slice(fx - 1, -fx) if fx > 1 else slice(None)
        return y[:, :, rows, cols]

    def _conv(self, node, op, ins):
        x, w = ins[0], ins[1]
        s, d = _attr(node, "strides"), _attr(node, "dilations", [1, 1, 1, 1])
        padding = _attr(node, "padding")
        x = x.permute(0, 3, 1, 2)
        kh, kw = w.shape[0], w.shape[1]
        depthwise = "Depthwise" in op
        if depthwise:  # HWC1 -> C1HW, groups = C
            weight, groups = w.permute(2, 3, 0, 1).reshape(-1, 1, kh, kw), x.shape[1]
        else:  # HWIO -> OIHW
            weight, groups = w.permute(3, 2, 0, 1), 1
        if padding == "EXPLICIT":
            p = _attr(node, "explicit_paddings")
            x = F.pad(x, (p[4], p[5], p[2], p[3]))
        else:
            x = _nchw_pad(x, padding, (kh, kw), (s[1], s[2]), (d[1], d[2]))
        y = F.conv2d(x, weight.contiguous(), None, (s[1], s[2]), 0, (d[1], d[2]), groups)
        for fused in _attr(node, "fused_ops", []):
            if fused == "BiasAdd":
                y = y + ins[2].reshape(1, -1, 1, 1)
            elif fused == "Relu":
                y = F.relu(y)
            elif fused == "Relu6":
                y = F.relu6(y)
            elif fused == "LeakyRelu":
                y = F.leaky_relu(y, _attr(node, "leakyrelu_alpha", 0.2))
            elif fused == "Prelu":
                y = torch.where(y >= 0, y, y * ins[3].reshape(1, -1, 1, 1))
            else:
                raise NotImplementedError(f"fused op {fused}")
        return y.permute(0, 2, 3, 1)

    @staticmethod
    def _strided_slice(node, ins):
        x, begin, end, strides = ins[0], ins[1].tolist(), ins[2].tolist(), ins[3].tolist()
        bm, em = _attr(node, "begin_mask", 0), _attr(node, "end_mask", 0)
        sm, nm, elm = _attr(node, "shrink_axis_mask", 0), _attr(node, "new_axis_mask", 0), _attr(node, "ellipsis_mask", 0)
        if nm or elm:
            raise NotImplementedError("StridedSlice with new_axis or ellipsis masks")
        index = []
        for i in range(len(begin)):
            if sm & (1 << i):
                index.append(int(begin[i]))
                continue
            b = None if bm & (1 << i) else int(begin[i])
            e = None if em & (1 << i) else int(end[i])
            index.append(slice(b, e, int(strides[i])))
        return x[tuple(index)]
