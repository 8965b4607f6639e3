"""Training configuration: a YAML file mapped onto dataclasses (unknown keys are errors)."""

from __future__ import annotations

from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path

import yaml


@dataclass
class ModelSection:
    preset: str = "lite"
    overrides: dict = field(default_factory=dict)
    # start from a saved model's weights (and architecture) instead of random ones: a folder, a Hub
    # id or a shipped model's name ("mobile", "lite"), e.g. to fine-tune the shipped model on your
    # own data; preset is then ignored (overrides apply on top)
    init_from: str | None = None
    # a converted face-pretrained trunk (tools/convert_faceres.py) copied into the token stems of
    # pretrained_backbone_branches (presets with backbone "mobilenet_v1"); with init_from, it
    # replaces the started model's trunk there (e.g. to refit one branch from a fresh trunk)
    pretrained_backbone: str | None = None
    pretrained_backbone_branches: list[str] = field(default_factory=lambda: ["face", "body"])


@dataclass
class DataSection:
    # Either explicit annotation CSVs ...
    train_csv: list[str] = field(default_factory=list)
    val_csv: list[str] = field(default_factory=list)
    # ... or the research sets in shared/data, converted on the fly with the fixed split.
    shared_root: str | None = None
    sets: list[str] = field(default_factory=lambda: ["utkface", "aaf", "peta"])
    annotations_dir: str | None = None  # default: <output_dir>/annotations
    # N rows of each CSV, spread evenly over it (quick runs; files are often sorted, e.g. by age)
    limit_per_csv: int | None = None
    cache_images: bool = True
    num_workers: int = 1
    balance_ages: bool = True
    # loss weight per set (source), on top of the age balancing, e.g. {peta: 2.0}; others 1
    source_weights: dict = field(default_factory=dict)
    # weight each sample by (images of its person)^-power within its set, on top of the above:
    # 0 = off, 1 = every person counts once (PETA has up to 66 frames of one pedestrian)
    person_balance_power: float = 0.0
    # knowledge distillation: soft labels of a teacher for training faces (tools/research/teacher_labels.py)
    teacher_labels: str | None = None
    # feature distillation: face-recognition descriptors of the training faces (tools/research/probe_teacher.py
    # --cache); needs model.overrides.face_embedding_dim and optim.embedding_distill_weight
    teacher_embeddings: str | None = None
    # subtract the training faces' mean descriptor first (see data.teacher.centered_embeddings)
    center_teacher_embeddings: bool = False
    # training augmentation: fields of mivolo_lite.data.dataset.AugmentConfig to change, e.g.
    # {noise_prob: 0.2, jpeg_prob: 0.2, blur_prob: 0.1}
    augment: dict = field(default_factory=dict)


@dataclass
class OptimSection:
    epochs: int = 30
    batch_size: int = 64  # per process
    # Transformers from scratch at batch 64 diverge or stall above a few 1e-4 (DeiT scales
    # 5e-4 per 512 samples); the convolutional stem tolerates somewhat more.
    lr: float = 3e-4
    # learning rate of pretrained trunks (parameters under "<branch>_encoder.stem.trunk") as a
    # fraction of lr: fine-tune them gently while the new layers on top learn at the full rate
    backbone_lr_scale: float = 1.0
    min_lr_ratio: float = 0.02
    weight_decay: float = 0.05
    warmup_steps: int = 300
    grad_accum: int = 1
    grad_clip: float = 1.0
    ema_decay: float = 0.999
    branch_drop_prob: float = 0.15
    # The age loss (cross-entropy over 101 bins + L1 in years) has far larger gradients than the
    # gender BCE and swamps it in the shared layers; this weight evens them out.
    gender_loss_weight: float = 3.0
    # with data.teacher_labels: share of the teacher in the age-distribution and gender targets
    distill_age_weight: float = 0.5
    distill_gender_weight: float = 0.5
    # with data.teacher_embeddings: weight of the descriptor loss (1 - cosine) beside the age loss
    embedding_distill_weight: float = 0.0
    # the point of the age distribution the L1 terms pull onto the label: "mean" (every stage up
    # to 29) or "median" (the age the model reports by default)
    age_l1_point: str = "mean"
    mixed_precision: str = "no"  # "no" | "fp16" | "bf16"
    # Train only the parameters whose names start with one of these prefixes (e.g. [body_encoder,
    # missing_face] to refit the body branch without moving a single face-only prediction); the
    # rest is frozen, and modules with nothing left to train stay in eval mode so that their
    # BatchNorm statistics and drop-paths do not change either. Empty: train everything.
    train_only: list[str] = field(default_factory=list)


@dataclass
class TrainConfig:
    output_dir: str = "runs/lite"
    seed: int = 42
    model: ModelSection = field(default_factory=ModelSection)
    data: DataSection = field(default_factory=DataSection)
    optim: OptimSection = field(default_factory=OptimSection)
    checkpoint_every: int = 500  # optimizer steps
    log_every: int = 50  # optimizer steps between training lines in metrics.jsonl
    keep_checkpoints: int = 2
    eval_every_epochs: int = 1
    flip_tta: bool = True


def _build(cls, values: dict, where: str):
    known = {f.name: f for f in fields(cls)}
    unknown = set(values) - set(known)
    if unknown:
        raise ValueError(f"unknown key(s) in {where}: {sorted(unknown)}; allowed: {sorted(known)}")
    kwargs = {}
    for name, value in values.items():
        f = known[name]
        default = f.default_factory() if callable(f.default_factory) else f.default  # type: ignore[misc]
        if is_dataclass(default) and isinstance(value, dict):
            value = _build(type(default), value, f"{where}.{name}")
        kwargs[name] = value
    return cls(**kwargs)


def load_config(path: str | Path, overrides: list[str] | None = None) -> TrainConfig:
    """Load a YAML config; ``overrides`` are ``section.key=value`` strings (YAML-parsed values)."""
    with open(path) as f:
        values = yaml.safe_load(f) or {}
    for item in overrides or []:
        key, sep, raw = item.partition("=")
        if not sep:
            raise ValueError(f"override {item!r} must look like section.key=value")
        target = values
        parts = key.split(".")
        for p in parts[:-1]:
            target = target.setdefault(p, {})
        target[parts[-1]] = yaml.safe_load(raw)
    return _build(TrainConfig, values, str(path))
