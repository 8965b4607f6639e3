"""Growing a trained model: deeper without changing what it computes (function-preserving
deepening, as in Net2Net's "deeper" operator and progressive stacking), or to larger crops.

A pre-norm transformer block is ``x + attn(norm(x))`` then ``x + mlp(norm(x))``; with the
attention's output projection and the MLP's second layer set to zero, both branches add exactly
zero and the block is the identity. Inserted into a trained trunk, such blocks leave every
prediction as it was, yet their weights receive gradients from the first step (the inputs of the
zeroed layers are not zero), so further training starts from the trained model's loss with more
capacity, instead of from scratch.
"""

from __future__ import annotations

import torch
from torch import nn

from .configuration_mivolo_lite import MiVOLOLiteConfig
from .layers import resize_pos_embed
from .modeling_mivolo_lite import MiVOLOLiteModel


def zero_residual_(block: nn.Module) -> nn.Module:
    """Make a timm ``Transformer`` block an identity map by zeroing the last layer of each residual
    branch (attention output projection, MLP second layer)."""
    with torch.no_grad():
        for layer in (block.attn.proj, block.mlp.fc2):
            layer.weight.zero_()
            if layer.bias is not None:
                layer.bias.zero_()
    return block


def deepen_trunk(model: MiVOLOLiteModel, extra_blocks: int) -> MiVOLOLiteModel:
    """A copy of ``model`` whose last trunk stage has ``extra_blocks`` more transformer blocks,
    spread evenly between the existing ones and initialised as identities: the new model's
    outputs equal the old one's until it is trained.

    Only trunks whose last stage is a transformer stage can be deepened this way (an outlooker
    block has no single output projection to zero)."""
    if extra_blocks < 1:
        raise ValueError(f"extra_blocks must be >= 1, got {extra_blocks}")
    config: MiVOLOLiteConfig = model.config
    if config.stage_types[-1] != "transformer":
        raise ValueError(f"the last trunk stage is {config.stage_types[-1]!r}; only 'transformer' stages can be deepened")

    old_depth = config.stage_depths[-1]
    new_depth = old_depth + extra_blocks
    new_config = MiVOLOLiteConfig.from_dict({**config.to_dict(), "stage_depths": [*config.stage_depths[:-1], new_depth]})
    grown = MiVOLOLiteModel(new_config)

    # Which new block each old one becomes: old blocks keep their order, new ones go in between.
    first_old = len(model.stages) - old_depth  # index of the last stage's first block in model.stages
    first_new = len(grown.stages) - new_depth
    kept = {first_new + (i * new_depth) // old_depth: first_old + i for i in range(old_depth)}
    outside_stages = {k: v for k, v in model.state_dict().items() if not k.startswith("stages.")}
    missing, unexpected = grown.load_state_dict(outside_stages, strict=False)
    assert not unexpected and all(k.startswith("stages.") for k in missing)
    for index in range(first_old):  # earlier stages (d1: outlookers, downsample) are unchanged
        grown.stages[index].load_state_dict(model.stages[index].state_dict())
    for new_index, old_index in kept.items():
        grown.stages[new_index].load_state_dict(model.stages[old_index].state_dict())
    for index in range(first_new, len(grown.stages)):
        if index not in kept:
            zero_residual_(grown.stages[index])
    return grown


def resize_input(model: MiVOLOLiteModel, image_size: int) -> MiVOLOLiteModel:
    """A copy of ``model`` for ``image_size`` px crops: every weight kept, each branch's position
    embedding resampled (bicubic, as the forward pass already does for other input sizes) to the
    new token grid. Unlike :func:`deepen_trunk` this changes the predictions: more pixels per face
    is more detail (wrinkles, skin) than the weights were fitted on, so fine-tune the result at
    its new size (FixRes: train small, then fine-tune at the size you test at). Any calibration is
    dropped with the old predictions it was fitted on."""
    config: MiVOLOLiteConfig = model.config
    if image_size % config.total_stride:
        raise ValueError(f"image_size must be a multiple of the stem's stride {config.total_stride}, got {image_size}")
    resized = MiVOLOLiteModel(MiVOLOLiteConfig.from_dict({**config.to_dict(), "image_size": image_size,
                                                          "age_calibration": None}))
    grid = (image_size // config.total_stride,) * 2
    state = {k: resize_pos_embed(v, grid) if k.endswith("pos_embed") else v for k, v in model.state_dict().items()}
    resized.load_state_dict(state)
    return resized
