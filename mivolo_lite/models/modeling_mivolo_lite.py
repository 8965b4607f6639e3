"""MiVOLO-lite: a dual-input (face + body) transformer for age and gender, after MiVOLO
(Kuprashevich & Tolstykh, arXiv 2307.04616).

    face crop -> conv stem -> tokens -> [transformer] --\
                                                          cross-attention fusion -> VOLO stages -> class attention -> heads
    body crop -> conv stem -> tokens -> [transformer] --/

Either input may be absent for any sample: the caller passes an explicit presence mask.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from timm.models.volo import ClassBlock, Downsample, Outlooker, Transformer
from torch import nn
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.utils import ModelOutput

from .age_distribution import distribution_median
from .configuration_mivolo_lite import MiVOLOLiteConfig
from .backbones import build_token_stem
from .layers import CrossAttentionFusion, resize_pos_embed
from .losses import age_distribution_loss, gender_loss


@dataclass
class MiVOLOLiteOutput(ModelOutput):
    """``age`` is the median (or, with ``config.age_estimate="mean"``, the mean) and ``age_std``
    the standard deviation of the predicted age distribution ``age_probs`` over
    ``config.min_age..config.max_age``; ``gender_prob`` is P(male). ``face_present`` and
    ``body_present`` are the presence masks the model used (after branch dropout in training);
    ``face_embedding`` is the training-only face-descriptor head's output, when the model has one."""

    loss: torch.Tensor | None = None
    age_loss: torch.Tensor | None = None
    gender_loss: torch.Tensor | None = None
    age_logits: torch.Tensor | None = None
    gender_logits: torch.Tensor | None = None
    age_probs: torch.Tensor | None = None
    age: torch.Tensor | None = None
    age_std: torch.Tensor | None = None
    gender_prob: torch.Tensor | None = None
    face_present: torch.Tensor | None = None
    body_present: torch.Tensor | None = None
    face_embedding: torch.Tensor | None = None


# Arguments of forward until the training objective moved to mivolo_lite.training.loss.
TRAINING_ONLY_ARGUMENTS = frozenset({
    "sample_weight", "branch_drop_prob", "teacher_age_probs", "teacher_male", "distill_age_weight",
    "distill_gender_weight", "age_l1_point", "teacher_face_embedding", "embedding_distill_weight"})


def append_mirrored(pixels: torch.Tensor | None) -> torch.Tensor | None:
    """The batch followed by its mirror images, for flip TTA in one forward pass (one call on
    twice the batch launches half the kernels of two calls, which is what a GPU waits on at small
    batches: 4.3 vs 9.1 ms at batch 1 on an H200). Undo with :meth:`MiVOLOLiteModel.summarize_mirrored`."""
    return None if pixels is None else torch.cat([pixels, pixels.flip(-1)])


def _stochastic_depths(config: MiVOLOLiteConfig) -> list[float]:
    total = config.branch_depth + sum(config.stage_depths)
    return torch.linspace(0, config.drop_path_rate, max(total, 1)).tolist()


class BranchEncoder(nn.Module):
    """One input's private path: token stem (``config.backbone``), position embedding, a few
    transformer blocks."""

    def __init__(self, config: MiVOLOLiteConfig, drop_paths: list[float], branch: str = "face"):
        super().__init__()
        dim = config.stage_dims[0]
        self.stem = build_token_stem(config, branch)
        grid = config.image_size // config.total_stride
        self.pos_embed = nn.Parameter(torch.zeros(1, grid, grid, dim))
        self.blocks = nn.Sequential(*[
            Transformer(dim, config.stage_heads[0], config.mlp_ratio, config.qkv_bias, drop_path=dp)
            for dp in drop_paths
        ])

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        tokens = self.stem(pixels)
        tokens = tokens + resize_pos_embed(self.pos_embed, tokens.shape[1:3])
        return self.blocks(tokens)


class MiVOLOLitePreTrainedModel(PreTrainedModel):
    config_class = MiVOLOLiteConfig
    base_model_prefix = "mivolo_lite"
    main_input_name = "face_pixel_values"

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            init.trunc_normal_(module.weight, std=0.02)
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, nn.Conv2d):
            init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, (nn.LayerNorm, nn.BatchNorm2d)):
            init.ones_(module.weight)
            init.zeros_(module.bias)
        elif isinstance(module, BranchEncoder):
            init.trunc_normal_(module.pos_embed, std=0.02)
        elif isinstance(module, MiVOLOLiteModel):
            for p in (module.missing_face, module.missing_body, module.cls_token):
                init.trunc_normal_(p, std=0.02)


class MiVOLOLiteModel(MiVOLOLitePreTrainedModel):
    def __init__(self, config: MiVOLOLiteConfig):
        super().__init__(config)
        drop_paths = _stochastic_depths(config)
        branch_dp, stage_dp = drop_paths[: config.branch_depth], drop_paths[config.branch_depth:]
        dim0 = config.stage_dims[0]
        self.face_encoder = BranchEncoder(config, branch_dp, "face")
        self.body_encoder = BranchEncoder(config, branch_dp, "body")
        # Stand-ins for a branch whose input is absent (learned, one vector broadcast over the grid).
        self.missing_face = nn.Parameter(torch.zeros(1, 1, 1, dim0))
        self.missing_body = nn.Parameter(torch.zeros(1, 1, 1, dim0))
        self.fusion = CrossAttentionFusion(dim0, config.fusion_heads, config.qkv_bias)

        stages: list[nn.Module] = []
        prev_dim = dim0
        for kind, depth, dim, heads in zip(config.stage_types, config.stage_depths, config.stage_dims, config.stage_heads):
            if dim != prev_dim:  # VOLO's stage transition: halve the grid, widen the channels
                stages.append(Downsample(prev_dim, dim, patch_size=2))
            for _ in range(depth):
                dp = stage_dp.pop(0)
                if kind == "outlooker":
                    stages.append(Outlooker(dim, kernel_size=3, padding=1, stride=2, num_heads=heads,
                                            mlp_ratio=config.mlp_ratio, qkv_bias=config.qkv_bias, drop_path=dp))
                else:
                    stages.append(Transformer(dim, heads, config.mlp_ratio, config.qkv_bias, drop_path=dp))
            prev_dim = dim
        self.stages = nn.Sequential(*stages)

        final_dim = config.stage_dims[-1]
        self.cls_token = nn.Parameter(torch.zeros(1, 1, final_dim))
        self.class_blocks = nn.ModuleList(
            ClassBlock(final_dim, config.stage_heads[-1], mlp_ratio=config.mlp_ratio, qkv_bias=config.qkv_bias)
            for _ in range(config.num_class_blocks)
        )
        self.norm = nn.LayerNorm(final_dim)
        self.head_drop = nn.Dropout(config.drop_rate)
        self.age_head = nn.Linear(final_dim, config.num_age_bins)
        self.gender_head = nn.Linear(final_dim, 1)
        # Training only: regresses a face-recognition network's descriptor of the face from the face
        # encoder's tokens, so the encoder learns what a network trained on millions of faces sees.
        self.face_embedding_head = (nn.Sequential(nn.LayerNorm(dim0), nn.Linear(dim0, config.face_embedding_dim))
                                    if config.face_embedding_dim > 0 else None)
        # ONNX/torch.export cannot follow data-dependent branches: exporters set this to run both
        # encoders on the whole batch and select with torch.where.
        self.static_branches = False
        self.post_init()

    @property
    def age_grid(self) -> torch.Tensor:
        """Integer ages of the distribution's bins. Computed, not a buffer: transformers builds
        models on the meta device and would leave a non-persistent buffer uninitialised."""
        return torch.arange(self.config.min_age, self.config.max_age + 1, dtype=torch.float32,
                            device=self.age_head.weight.device)

    # -- encoding -------------------------------------------------------------------------------
    def _encode(self, encoder: BranchEncoder, pixels: torch.Tensor | None, present: torch.Tensor,
                missing: torch.Tensor, grid: tuple[int, int] | None) -> torch.Tensor:
        """Tokens of ``encoder`` for present samples, the learned stand-in for absent ones. Eager
        mode only runs the encoder on present samples (saves the work for face-only persons)."""
        if pixels is None:
            assert grid is not None
            return missing.expand(present.shape[0], grid[0], grid[1], -1)
        if self.static_branches:
            return torch.where(present.view(-1, 1, 1, 1), encoder(pixels), missing)
        if bool(present.all()):
            return encoder(pixels)
        tokens = None
        if bool(present.any()):
            encoded = encoder(pixels[present])
            tokens = missing.expand(present.shape[0], *encoded.shape[1:3], -1).clone()
            tokens[present] = encoded.to(tokens.dtype)
        else:
            g = pixels.shape[-2] // self.config.total_stride, pixels.shape[-1] // self.config.total_stride
            tokens = missing.expand(present.shape[0], g[0], g[1], -1)
        return tokens

    def _drop_branches(self, face_mask: torch.Tensor, body_mask: torch.Tensor, drop_prob: float):
        """Training-time branch dropout: for samples with both inputs, hide one of them at random
        so the model learns to work from either alone."""
        both = face_mask & body_mask
        u = torch.rand(face_mask.shape, device=face_mask.device)
        drop_face = both & (u < drop_prob)
        drop_body = both & (u >= drop_prob) & (u < 2 * drop_prob)
        return face_mask & ~drop_face, body_mask & ~drop_body

    def forward(
        self,
        face_pixel_values: torch.Tensor | None = None,
        body_pixel_values: torch.Tensor | None = None,
        face_mask: torch.Tensor | None = None,
        body_mask: torch.Tensor | None = None,
        age_low: torch.Tensor | None = None,
        age_high: torch.Tensor | None = None,
        gender: torch.Tensor | None = None,
        **kwargs,
    ) -> MiVOLOLiteOutput:
        """Inputs: face and/or body crops ``(B, 3, H, W)`` with presence masks ``(B,)``. Labels
        (optional, as in transformers): ``age_low``/``age_high`` (an exact age is ``low == high``,
        an age group an interval, NaN unknown) and ``gender`` (1 male, 0 female, -1 unknown); with
        labels, ``loss`` is the plain unweighted age + gender loss. Training objectives with sample
        weights, loss weights and teachers live in :class:`mivolo_lite.training.loss.TrainingLoss`.
        In training mode, ``config.branch_drop_prob`` hides one of two present inputs at random."""
        moved = sorted(TRAINING_ONLY_ARGUMENTS & kwargs.keys())
        if moved:  # the signature before 0.2: say where they went rather than ignore them
            raise TypeError(f"MiVOLOLiteModel.forward no longer takes {moved}: teacher targets, sample weights and "
                            "loss weights belong to mivolo_lite.training.loss.TrainingLoss, branch dropout to "
                            "config.branch_drop_prob")
        if face_pixel_values is None and body_pixel_values is None:
            raise ValueError("MiVOLOLiteModel needs face_pixel_values, body_pixel_values or both")
        reference = face_pixel_values if face_pixel_values is not None else body_pixel_values
        batch, device = reference.shape[0], reference.device
        face_mask = self._mask(face_mask, face_pixel_values, batch, device)
        body_mask = self._mask(body_mask, body_pixel_values, batch, device)
        if self.training and self.config.branch_drop_prob > 0:
            face_mask, body_mask = self._drop_branches(face_mask, body_mask, self.config.branch_drop_prob)

        grid = (reference.shape[-2] // self.config.total_stride, reference.shape[-1] // self.config.total_stride)
        face = self._encode(self.face_encoder, face_pixel_values, face_mask, self.missing_face, grid)
        body = self._encode(self.body_encoder, body_pixel_values, body_mask, self.missing_body, grid)
        tokens = self.stages(self.fusion(face, body, face_mask, body_mask))

        tokens = tokens.flatten(1, 2)
        x = torch.cat([self.cls_token.expand(batch, -1, -1), tokens], dim=1)
        for block in self.class_blocks:
            x = block(x)
        pooled = self.head_drop(self.norm(x[:, 0]))
        age_logits = self.age_head(pooled)
        gender_logits = self.gender_head(pooled).squeeze(-1)
        out = self.summarize(age_logits, gender_logits)
        out.face_present, out.body_present = face_mask, body_mask
        if self.face_embedding_head is not None:
            out.face_embedding = self.face_embedding_head(face.mean(dim=(1, 2)))

        if age_low is not None or gender is not None:
            out.age_loss = (age_distribution_loss(age_logits, self.age_grid, age_low, age_high)
                            if age_low is not None else age_logits.sum() * 0.0)
            out.gender_loss = gender_loss(gender_logits, gender) if gender is not None else gender_logits.sum() * 0.0
            out.loss = out.age_loss + out.gender_loss
        return out

    @staticmethod
    def _mask(mask: torch.Tensor | None, pixels: torch.Tensor | None, batch: int, device) -> torch.Tensor:
        if pixels is None:
            return torch.zeros(batch, dtype=torch.bool, device=device)
        if mask is None:
            return torch.ones(batch, dtype=torch.bool, device=device)
        return mask.to(device=device, dtype=torch.bool).view(batch)

    def summarize(self, age_logits: torch.Tensor, gender_logits: torch.Tensor) -> MiVOLOLiteOutput:
        """Expected age, spread and P(male) from raw head outputs."""
        probs = age_logits.float().softmax(dim=-1)
        return self.summarize_probs(probs, gender_logits.float().sigmoid(), age_logits, gender_logits)

    def summarize_probs(self, probs: torch.Tensor, gender_prob: torch.Tensor, age_logits=None,
                        gender_logits=None) -> MiVOLOLiteOutput:
        grid = self.age_grid.to(probs.device)
        mean = (probs * grid).sum(-1)
        std = ((probs * (grid - mean.unsqueeze(-1)) ** 2).sum(-1)).clamp_min(0).sqrt()
        age = distribution_median(probs, grid) if self.config.age_estimate == "median" else mean
        return MiVOLOLiteOutput(age_logits=age_logits, gender_logits=gender_logits, age_probs=probs,
                                age=age, age_std=std, gender_prob=gender_prob)

    def summarize_mirrored(self, probs: torch.Tensor, gender_prob: torch.Tensor) -> MiVOLOLiteOutput:
        """Outputs for a batch built by :func:`append_mirrored`: each person's two halves averaged."""
        n = probs.shape[0] // 2
        return self.summarize_probs((probs[:n] + probs[n:]) / 2, (gender_prob[:n] + gender_prob[n:]) / 2)

    def drop_training_heads(self) -> "MiVOLOLiteModel":
        """Remove what only training uses (the face-descriptor head of feature distillation), as
        before shipping: the predictions stay the same and the file and config lose the head."""
        self.face_embedding_head = None
        self.config.face_embedding_dim = 0
        return self

    @torch.no_grad()
    def fuse_for_inference(self) -> "MiVOLOLiteModel":
        """Fold each BatchNorm into the convolution before it (eval only): fewer, cheaper ops
        on CPU, same outputs. Irreversible: do not train the fused model."""
        from torch.nn.utils.fusion import fuse_conv_bn_eval

        from .layers import ConvNormAct

        self.eval()
        for module in self.modules():
            if isinstance(module, ConvNormAct) and isinstance(module[1], nn.BatchNorm2d):
                module[0] = fuse_conv_bn_eval(module[0], module[1])
                module[1] = nn.Identity()
        return self

    @torch.no_grad()
    def predict(self, face_pixel_values=None, body_pixel_values=None, face_mask=None, body_mask=None,
                flip_tta: bool = True) -> MiVOLOLiteOutput:
        """Inference: optionally averages the age distribution and gender probability over the
        input and its mirror image (test-time augmentation)."""
        if not flip_tta:
            return self(face_pixel_values, body_pixel_values, face_mask, body_mask)
        twice = lambda m: None if m is None else torch.cat([m, m])  # noqa: E731
        out = self(append_mirrored(face_pixel_values), append_mirrored(body_pixel_values),
                   twice(face_mask), twice(body_mask))
        return self.summarize_mirrored(out.age_probs, out.gender_prob)
