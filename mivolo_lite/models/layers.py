"""Building blocks of the dual-input model: convolutional stem, token grids, cross-attention fusion.

Everything works on channels-last token grids ``(B, H, W, C)``, the layout timm's VOLO blocks use,
so the fused grid can flow straight into ``timm.models.volo`` outlookers and transformers.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ConvNormAct(nn.Sequential):
    def __init__(self, in_chs: int, out_chs: int, kernel_size: int = 3, stride: int = 1, act: bool = True):
        super().__init__(
            nn.Conv2d(in_chs, out_chs, kernel_size, stride, padding=kernel_size // 2, bias=False),
            nn.BatchNorm2d(out_chs),
            nn.GELU() if act else nn.Identity(),
        )


class ResidualConvBlock(nn.Module):
    """ResNet basic block: the stem's extra depth, cheap at low resolution and easy to train."""

    def __init__(self, chs: int):
        super().__init__()
        self.conv1 = ConvNormAct(chs, chs)
        self.conv2 = ConvNormAct(chs, chs, act=False)
        self.act = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(x + self.conv2(self.conv1(x)))


class ConvPatchStem(nn.Module):
    """Image -> channels-last token grid: strided 3x3 convolutions, then a patchifying projection.

    Only convolutions and BatchNorm: nothing depends on the input resolution, so any image size
    divisible by the total stride works.
    """

    def __init__(self, in_chans: int, channels: list[int], strides: list[int], blocks_per_stage: int,
                 patch_size: int, embed_dim: int):
        super().__init__()
        layers: list[nn.Module] = []
        prev = in_chans
        for chs, stride in zip(channels, strides):
            layers.append(ConvNormAct(prev, chs, 3, stride))
            layers.extend(ResidualConvBlock(chs) for _ in range(blocks_per_stage))
            prev = chs
        self.convs = nn.Sequential(*layers)
        self.proj = nn.Conv2d(prev, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(self.convs(x)).permute(0, 2, 3, 1)


def resize_pos_embed(pos_embed: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """Bicubically resample a ``(1, H, W, C)`` position embedding to another token grid."""
    if pos_embed.shape[1:3] == grid:
        return pos_embed
    resized = F.interpolate(pos_embed.permute(0, 3, 1, 2), size=grid, mode="bicubic", align_corners=False)
    return resized.permute(0, 2, 3, 1)


class CrossAttention(nn.Module):
    """Queries from one token grid, keys and values from the other."""

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True):
        super().__init__()
        self.num_heads = num_heads
        self.q = nn.Linear(dim, dim, bias=qkv_bias)
        self.kv = nn.Linear(dim, dim * 2, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, queries: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        B, H, W, C = queries.shape
        heads, head_dim = self.num_heads, C // self.num_heads
        q = self.q(queries).reshape(B, H * W, heads, head_dim).transpose(1, 2)
        kv = self.kv(context).reshape(B, -1, 2, heads, head_dim).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, kv[0], kv[1])
        return self.proj(out.transpose(1, 2).reshape(B, H, W, C))


class CrossAttentionFusion(nn.Module):
    """MiVOLO's fusion: face tokens attend to body tokens and body tokens to face tokens, then the
    two grids are concatenated channel-wise and projected back to one grid.

    A branch whose input is missing contributes nothing through attention: its update to the
    other branch is multiplied by the per-sample presence mask (so missing inputs are explicit,
    not an implicit "black image" convention).
    """

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True):
        super().__init__()
        self.norm_face = nn.LayerNorm(dim)
        self.norm_body = nn.LayerNorm(dim)
        self.face_from_body = CrossAttention(dim, num_heads, qkv_bias)
        self.body_from_face = CrossAttention(dim, num_heads, qkv_bias)
        self.merge = nn.Sequential(nn.LayerNorm(2 * dim), nn.Linear(2 * dim, dim))

    def forward(self, face: torch.Tensor, body: torch.Tensor, face_mask: torch.Tensor,
                body_mask: torch.Tensor) -> torch.Tensor:
        face_n, body_n = self.norm_face(face), self.norm_body(body)
        gate_face = face_mask.to(face.dtype).view(-1, 1, 1, 1)
        gate_body = body_mask.to(face.dtype).view(-1, 1, 1, 1)
        face = face + gate_body * self.face_from_body(face_n, body_n)
        body = body + gate_face * self.body_from_face(body_n, face_n)
        return self.merge(torch.cat([face, body], dim=-1))
