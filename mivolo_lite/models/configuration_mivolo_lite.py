"""Configuration of the MiVOLO-lite dual-input (face + body) age and gender model."""

from __future__ import annotations

from transformers import PretrainedConfig

# Named architectures. Each is a plain dict of constructor arguments (timm style), so a preset is
# nothing more than defaults: any field can still be overridden when building a config.
PRESETS: dict[str, dict] = {
    # CPU default, sized by measurement on a 2-core CPU (see tools/benchmark.py): a cheap
    # convolutional stem (from-scratch training on a few thousand images needs the convolutional
    # inductive bias) to a 7x7 token grid, one private transformer block per input, fusion, four
    # shared blocks. Only "transformer" blocks: no Fold op, so it exports to ONNX.
    "lite": dict(
        image_size=112,
        stem_channels=[16, 32, 64],
        stem_strides=[2, 2, 2],
        stem_blocks_per_stage=0,
        patch_size=2,
        branch_depth=1,
        stage_types=["transformer"],
        stage_depths=[4],
        stage_dims=[128],
        stage_heads=[4],
        num_class_blocks=1,
        mlp_ratio=3.0,
        drop_path_rate=0.05,
    ),
    # Mirrors MiVOLO-D1 (VOLO-D1 at 224 px): 28x28 tokens, 4 outlookers at 192 channels, then
    # 14 transformers at 384 channels on 14x14 tokens, two class-attention blocks. GPU training.
    "d1": dict(
        image_size=224,
        stem_channels=[64, 64, 64],
        stem_strides=[2, 1, 1],
        stem_blocks_per_stage=0,
        patch_size=4,
        branch_depth=0,
        stage_types=["outlooker", "transformer"],
        stage_depths=[4, 14],
        stage_dims=[192, 384],
        stage_heads=[6, 12],
        num_class_blocks=2,
        mlp_ratio=3.0,
        drop_path_rate=0.1,
    ),
    # The default model: MiVOLO's design on face-pretrained trunks. Each input's token stem is the
    # MobileNet-v1 of HSE FaceRes (VGGFace2 faces; tools/convert_faceres.py), whose stride-32 map at
    # 160 px is a 5x5 grid of 1024-d features, projected to 256; one private transformer block per
    # input, cross-attention fusion, two shared blocks, class attention. 160 px, not the trunk's
    # 224: half the work per crop (290 vs 568 M multiply-adds) for the CPU speed budget. The body
    # branch reads the stride-16 map, pooled to 5x5: the last block is nearly silent on bodies.
    "mobile": dict(
        image_size=160,
        backbone="mobilenet_v1",
        backbone_stride=32,
        body_backbone_stride=16,
        branch_depth=1,
        stage_types=["transformer"],
        stage_depths=[2],
        stage_dims=[256],
        stage_heads=[8],
        num_class_blocks=1,
        mlp_ratio=3.0,
        drop_path_rate=0.1,
    ),
}

# Token stems (see models/backbones.py): "conv" trains from scratch, "mobilenet_v1" is the
# face-pretrained FaceRes trunk.
BACKBONES = ("conv", "mobilenet_v1")

# The one age reported per person, read off the predicted distribution: its median is the age
# with the least expected absolute error under the model's own belief (MAE is the measure),
# its mean the least squared error. The loss trains the distribution, not this choice.
AGE_ESTIMATES = ("median", "mean")


class MiVOLOLiteConfig(PretrainedConfig):
    """Hyper-parameters of :class:`~mivolo_lite.models.MiVOLOLiteModel`.

    Build one from a preset with ``MiVOLOLiteConfig.from_preset("lite", **overrides)``.

    Age is predicted as a distribution over integer ages ``min_age..max_age``; labels outside
    that range are clipped. ``age_estimate`` is the point read off it (see ``AGE_ESTIMATES``:
    ``"median"``, the default, or ``"mean"``). ``backbone`` picks each input's token stem (``BACKBONES``):
    ``"conv"`` (from scratch; ``stem_*`` and ``patch_size`` shape it) or ``"mobilenet_v1"`` (the
    face-pretrained FaceRes trunk; ``backbone_stride`` 16 or 32 picks its feature map, and
    ``body_backbone_stride`` the body branch's, average-pooled to the same token grid when finer:
    the face trunk's last block is nearly silent on bodies, 98 % of its outputs zero). ``age_calibration`` holds the conformal calibration (see
    :mod:`mivolo_lite.calibration`) so that it travels with the weights. ``face_embedding_dim`` > 0
    adds a training-only head that regresses a face-recognition descriptor of that size from the
    face encoder's tokens (feature distillation, ``optim.embedding_distill_weight``); 0: none.
    ``branch_drop_prob``: in training mode, the chance per sample with both inputs that one of them
    is hidden (each with this probability), so the model learns to work from either alone; the
    trainer sets it from ``optim.branch_drop_prob``.
    """

    model_type = "mivolo_lite"

    def __init__(
        self,
        preset: str = "lite",
        image_size: int = 112,
        in_chans: int = 3,
        backbone: str = "conv",
        backbone_stride: int = 32,
        body_backbone_stride: int | None = None,
        stem_channels: list[int] | None = None,
        stem_strides: list[int] | None = None,
        stem_blocks_per_stage: int = 0,
        patch_size: int = 2,
        branch_depth: int = 1,
        fusion_heads: int | None = None,
        stage_types: list[str] | None = None,
        stage_depths: list[int] | None = None,
        stage_dims: list[int] | None = None,
        stage_heads: list[int] | None = None,
        num_class_blocks: int = 1,
        mlp_ratio: float = 3.0,
        qkv_bias: bool = True,
        drop_rate: float = 0.0,
        drop_path_rate: float = 0.05,
        min_age: int = 0,
        max_age: int = 100,
        age_estimate: str = "median",
        age_calibration: dict | None = None,
        face_embedding_dim: int = 0,
        branch_drop_prob: float = 0.0,
        **kwargs,
    ):
        self.preset = preset
        self.image_size = image_size
        self.in_chans = in_chans
        if backbone not in BACKBONES:
            raise ValueError(f"backbone must be one of {BACKBONES}, got {backbone!r}")
        self.backbone = backbone
        self.backbone_stride = backbone_stride
        self.body_backbone_stride = body_backbone_stride
        self.stem_channels = list(stem_channels or [16, 32, 64])
        self.stem_strides = list(stem_strides or [2] * len(self.stem_channels))
        self.stem_blocks_per_stage = stem_blocks_per_stage
        self.patch_size = patch_size
        self.branch_depth = branch_depth
        self.stage_types = list(stage_types or ["transformer"])
        self.stage_depths = list(stage_depths or [4])
        self.stage_dims = list(stage_dims or [128])
        self.stage_heads = list(stage_heads or [4])
        self.fusion_heads = fusion_heads or self.stage_heads[0]
        self.num_class_blocks = num_class_blocks
        self.mlp_ratio = mlp_ratio
        self.qkv_bias = qkv_bias
        self.drop_rate = drop_rate
        self.drop_path_rate = drop_path_rate
        self.min_age = min_age
        self.max_age = max_age
        if age_estimate not in AGE_ESTIMATES:
            raise ValueError(f"age_estimate must be one of {AGE_ESTIMATES}, got {age_estimate!r}")
        self.age_estimate = age_estimate
        self.age_calibration = age_calibration
        self.face_embedding_dim = face_embedding_dim
        self.branch_drop_prob = branch_drop_prob
        lengths = {len(self.stage_types), len(self.stage_depths), len(self.stage_dims), len(self.stage_heads)}
        if len(lengths) != 1:
            raise ValueError("stage_types, stage_depths, stage_dims and stage_heads must have the same length")
        if len(self.stem_channels) != len(self.stem_strides):
            raise ValueError("stem_channels and stem_strides must have the same length")
        unknown = set(self.stage_types) - {"outlooker", "transformer"}
        if unknown:
            raise ValueError(f"unknown stage types {sorted(unknown)}; use 'outlooker' or 'transformer'")
        if max_age <= min_age:
            raise ValueError("max_age must be greater than min_age")
        super().__init__(**kwargs)

    @classmethod
    def from_preset(cls, name: str, **overrides) -> "MiVOLOLiteConfig":
        if name not in PRESETS:
            raise ValueError(f"unknown preset {name!r}; available: {sorted(PRESETS)}")
        return cls(preset=name, **{**PRESETS[name], **overrides})

    @property
    def total_stride(self) -> int:
        """Pixels per token along each side of the crop."""
        if self.backbone == "mobilenet_v1":
            return self.backbone_stride
        stride = self.patch_size
        for s in self.stem_strides:
            stride *= s
        return stride

    @property
    def num_age_bins(self) -> int:
        return self.max_age - self.min_age + 1
