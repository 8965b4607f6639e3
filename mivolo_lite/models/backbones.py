"""Token stems: what turns one input's crop into the channels-last token grid ``(B, H, W, dim)`` that
the transformer blocks read. A registry of small builders (timm style), chosen by ``config.backbone``:

- ``"conv"``: strided convolutions and a patchifying projection, trained from scratch (``lite``, ``d1``).
- ``"mobilenet_v1"``: the MobileNet-v1 1.0 trunk of HSE FaceRes ``faceres-deep`` (pretrained on
  VGGFace2 faces, see :mod:`.mobilenet_v1`), its stride-16 or stride-32 feature map projected to the
  token width. Its weights come from ``tools/convert_faceres.py`` through
  :func:`load_pretrained_backbone`; a saved model carries them like any other weight.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from .configuration_mivolo_lite import MiVOLOLiteConfig
from .image_processing_mivolo_lite import IMAGENET_MEAN, IMAGENET_STD
from .layers import ConvPatchStem
from .mobilenet_v1 import CAFFE_MEAN_BGR, STRIDE16_BLOCK, MobileNetV1


class MobileNetV1TokenStem(nn.Module):
    """MobileNet-v1 trunk -> 1x1 projection -> channels-last tokens.

    Our image processor feeds ImageNet-normalised RGB; the FaceRes trunk was trained on "caffe"
    pixels (BGR, 0..255, minus the ImageNet mean). The affine map between the two runs first, so the
    pretrained filters see what they were trained on and the processor stays the same for every
    preset. ``stride`` 16 stops after block 11 (``[N, 512, H/16, W/16]``), 32 runs all 13 blocks;
    ``token_stride`` (default: ``stride``) may be coarser, the map then average-pooled to it, so that
    a branch reading the stride-16 map gives the same token grid as one reading the stride-32 map.
    """

    def __init__(self, embed_dim: int, stride: int = 32, token_stride: int | None = None):
        super().__init__()
        if stride not in (16, 32):
            raise ValueError(f"backbone_stride must be 16 or 32 for mobilenet_v1, got {stride}")
        token_stride = token_stride or stride
        if token_stride % stride:
            raise ValueError(f"the token stride {token_stride} must be a multiple of the feature map's {stride}")
        self.stride = stride
        self.pool = nn.AvgPool2d(token_stride // stride) if token_stride > stride else nn.Identity()
        blocks_used = STRIDE16_BLOCK if stride == 16 else None
        self.trunk = MobileNetV1()
        if blocks_used is not None:  # drop the stride-32 blocks: no dead weights in the file
            self.trunk.blocks = self.trunk.blocks[:blocks_used]
        channels = self.trunk.stride16_channels if stride == 16 else self.trunk.out_channels
        self.proj = nn.Conv2d(channels, embed_dim, kernel_size=1)
        self.norm = nn.LayerNorm(embed_dim)

    @staticmethod
    def to_caffe_pixels(x: torch.Tensor) -> torch.Tensor:
        """ImageNet-normalised RGB -> BGR in 0..255 minus the ImageNet mean (per-channel affine)."""
        mean = torch.tensor(IMAGENET_MEAN, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
        std = torch.tensor(IMAGENET_STD, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
        caffe_rgb = torch.tensor(CAFFE_MEAN_BGR[::-1], dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
        rgb = (x * std + mean) * 255.0 - caffe_rgb
        return rgb.flip(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.trunk.stem(self.to_caffe_pixels(x))
        for block in self.trunk.blocks:
            x = block(x)
        return self.norm(self.proj(self.pool(x)).permute(0, 2, 3, 1))


def _conv_stem(config: MiVOLOLiteConfig, branch: str) -> nn.Module:
    return ConvPatchStem(config.in_chans, config.stem_channels, config.stem_strides, config.stem_blocks_per_stage,
                         config.patch_size, config.stage_dims[0])


def _mobilenet_v1_stem(config: MiVOLOLiteConfig, branch: str) -> nn.Module:
    stride = config.body_backbone_stride if branch == "body" and config.body_backbone_stride else config.backbone_stride
    return MobileNetV1TokenStem(config.stage_dims[0], stride, token_stride=config.total_stride)


TOKEN_STEMS = {"conv": _conv_stem, "mobilenet_v1": _mobilenet_v1_stem}


def build_token_stem(config: MiVOLOLiteConfig, branch: str = "face") -> nn.Module:
    """The token stem of one input branch ("face" or "body")."""
    return TOKEN_STEMS[config.backbone](config, branch)


def load_pretrained_backbone(model: nn.Module, path: str | Path, branches=("face", "body")) -> list[str]:
    """Copy a converted FaceRes checkpoint (``tools/convert_faceres.py``: keys ``trunk.*``) into the
    trunk of each named branch (``<branch>_encoder.stem.trunk``). Returns the loaded keys of the first
    branch; raises if a branch has no MobileNet trunk or a weight is missing or of another shape.
    Blocks the model does not have (the stride-32 blocks of a stride-16 stem) are skipped."""
    from safetensors.torch import load_file

    source = {k.removeprefix("trunk."): v for k, v in load_file(str(path)).items() if k.startswith("trunk.")}
    if not source:
        raise ValueError(f"{path}: no 'trunk.*' weights (expected a file written by tools/convert_faceres.py)")
    loaded: list[str] = []
    for branch in branches:
        stem = getattr(model, f"{branch}_encoder").stem
        if not isinstance(stem, MobileNetV1TokenStem):
            raise ValueError(f"the {branch} branch has no MobileNet-v1 trunk (config.backbone={model.config.backbone!r})")
        target = stem.trunk.state_dict()
        missing = sorted(set(target) - set(source))
        if missing:
            raise ValueError(f"{path} lacks {len(missing)} trunk weight(s), e.g. {missing[:3]}")
        wrong = [k for k in target if source[k].shape != target[k].shape]
        if wrong:
            raise ValueError(f"{path}: shape mismatch for {wrong[:3]}")
        stem.trunk.load_state_dict({k: source[k] for k in target})
        loaded = loaded or sorted(target)
    return loaded
