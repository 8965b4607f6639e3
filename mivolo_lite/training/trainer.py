"""The training loop (accelerate): DDP, mixed precision, gradient accumulation, EMA of weights,
age-balanced loss weights, checkpoints every N optimizer steps and exact resume.

Fault tolerance: a checkpoint is written under a temporary name and renamed when complete, so a
run killed at any moment (even while saving) resumes from its last complete checkpoint; on
resume, ``metrics.jsonl`` is cut back to that checkpoint, so that it lists every optimizer step
of the final model exactly once. Data order and augmentation depend on (seed, epoch, sample)
alone and the RNG states are restored, so a resumed run is bit-identical to an uninterrupted one
(tests/test_training_faults.py checks this with one process and ``data.num_workers: 0``).
Unreadable training images are skipped (zero weight) and counted in ``bad_images``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import shutil
import time
from pathlib import Path

import torch
from accelerate import Accelerator, DistributedDataParallelKwargs
from accelerate.utils import set_seed
from timm.utils import ModelEmaV3
from torch.utils.data import DataLoader
from tqdm.auto import tqdm
from transformers import get_cosine_schedule_with_warmup

from ..data.annotations import evenly_spaced, read_annotations
from ..data.converters import convert_all
from ..data.dataset import AgeDataset, AugmentConfig, EpochShuffleSampler
from ..data.teacher import centered_embeddings, read_teacher_embeddings, read_teacher_labels, teacher_key
from ..evaluation.inference import predict_batches
from ..evaluation.metrics import summarize_predictions
from ..hub import resolve_model, save_model
from ..models import MiVOLOLiteConfig, MiVOLOLiteImageProcessor, MiVOLOLiteModel
from ..models.backbones import load_pretrained_backbone
from .config import TrainConfig
from .loss import TrainingLoss

MODEL_INPUTS = ("face_pixel_values", "body_pixel_values", "face_mask", "body_mask")


class TrainingState:
    """Counters saved with every checkpoint (registered with accelerate)."""

    def __init__(self):
        self.step = 0  # optimizer steps done
        self.epoch = 0
        self.batches_in_epoch = 0  # dataloader batches of ``epoch`` already consumed
        self.bad_images = 0  # unreadable training samples skipped so far (all processes)

    def state_dict(self) -> dict:
        return dict(self.__dict__)

    def load_state_dict(self, state: dict) -> None:
        self.__dict__.update(state)


def _csv_lists(cfg: TrainConfig, accelerator: Accelerator) -> tuple[list[str], list[str]]:
    data = cfg.data
    train, val = list(data.train_csv), list(data.val_csv)
    if data.shared_root:
        ann_dir = Path(data.annotations_dir or Path(cfg.output_dir) / "annotations")
        if accelerator.is_main_process and not all((ann_dir / f"{s}_train.csv").exists() for s in data.sets):
            convert_all(data.shared_root, ann_dir, sets=data.sets)
        accelerator.wait_for_everyone()
        train += [str(ann_dir / f"{s}_train.csv") for s in data.sets]
        val += [str(ann_dir / f"{s}_val.csv") for s in data.sets]
    if not train:
        raise ValueError("no training data: set data.train_csv or data.shared_root in the config")
    return train, val


def _records(paths: list[str], limit: int | None):
    return [r for p in paths for r in evenly_spaced(read_annotations(p), limit)]


CHECKPOINT_NAME = re.compile(r"step_(\d+)")
PARTIAL_SUFFIX = ".partial"  # a checkpoint being written; renamed to step_N when complete


def complete_checkpoints(output_dir: str | Path) -> list[Path]:
    """The run's complete checkpoints, oldest first (folders still being written are skipped)."""
    folder = Path(output_dir, "checkpoints")
    found = [p for p in folder.glob("step_*") if p.is_dir() and CHECKPOINT_NAME.fullmatch(p.name)]
    return sorted(found, key=lambda p: int(CHECKPOINT_NAME.fullmatch(p.name).group(1)))


def latest_checkpoint(output_dir: str | Path) -> Path | None:
    ckpts = complete_checkpoints(output_dir)
    return ckpts[-1] if ckpts else None


def rewind_metrics(path: Path, step: int) -> None:
    """Drop what a killed run logged after its checkpoint at ``step``: the resumed run redoes it.
    Evaluation lines at ``step`` itself go too, because evaluation follows the checkpoint."""
    if not path.exists():
        return
    kept = []
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:  # a line cut short by the kill
            continue
        if record.get("step", 0) < step or (record.get("step") == step and "val" not in record):
            kept.append(line)
    tmp = path.with_name(path.name + PARTIAL_SUFFIX)
    tmp.write_text("".join(line + "\n" for line in kept))
    tmp.replace(path)


def freeze_all_but(model: torch.nn.Module, prefixes: list[str]) -> list[torch.nn.Module]:
    """Freeze every parameter whose name starts with none of ``prefixes``; returns the modules
    left with no trainable parameter, which the caller keeps in eval mode (BatchNorm statistics
    would otherwise still move, and with them the predictions of the frozen path)."""
    def under(name: str, prefix: str) -> bool:
        return name == prefix or name.startswith(prefix + ".")

    names = [n for n, _ in model.named_parameters()]
    unmatched = [p for p in prefixes if not any(under(n, p) for n in names)]
    if unmatched:
        top = sorted({n.split(".")[0] for n in names})
        raise ValueError(f"optim.train_only: no parameter is named {unmatched}; top-level names: {top}")
    for name, param in model.named_parameters():
        param.requires_grad_(any(under(name, p) for p in prefixes))
    return [m for m in model.modules()
            if any(True for _ in m.parameters()) and not any(p.requires_grad for p in m.parameters())]


def parameter_groups(model: torch.nn.Module, optim) -> list[dict]:
    """AdamW groups of the trainable parameters: no weight decay on norms, biases, position
    embeddings and learned tokens; pretrained trunks at ``optim.backbone_lr_scale`` times the lr."""
    def no_decay(name, p):
        return p.ndim <= 1 or name.endswith("pos_embed") or "missing_" in name or "cls_token" in name

    def in_trunk(name):
        return ".stem.trunk." in name

    groups = []
    for trunk in (False, True):
        for decay in (True, False):
            chosen = [p for n, p in model.named_parameters()
                      if p.requires_grad and in_trunk(n) == trunk and no_decay(n, p) != decay]
            if chosen:
                groups.append({"params": chosen, "weight_decay": optim.weight_decay if decay else 0.0,
                               "lr": optim.lr * (optim.backbone_lr_scale if trunk else 1.0)})
    return groups


def augment_config(overrides: dict) -> AugmentConfig:
    """``data.augment`` of a config onto the defaults; unknown names are errors."""
    known = {f.name for f in dataclasses.fields(AugmentConfig)}
    unknown = set(overrides) - known
    if unknown:
        raise ValueError(f"unknown key(s) in data.augment: {sorted(unknown)}; allowed: {sorted(known)}")
    return AugmentConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in overrides.items()})


def run_model_config(cfg: TrainConfig) -> MiVOLOLiteConfig:
    """The architecture a run trains: its starting model's (``model.init_from``, which may differ
    from any preset, e.g. a grown one) or else its preset with overrides."""
    if cfg.model.init_from:
        model_cfg = MiVOLOLiteConfig.from_pretrained(resolve_model(cfg.model.init_from))
        model_cfg.age_calibration = None  # a calibration belongs to the old weights
        for key, value in cfg.model.overrides.items():  # e.g. a head the start lacks
            setattr(model_cfg, key, value)
        return model_cfg
    return MiVOLOLiteConfig.from_preset(cfg.model.preset, **cfg.model.overrides)


def _channels_last(x: torch.Tensor) -> torch.Tensor:
    """Images (4-d) in the model's channels-last layout; masks as they are."""
    return x.contiguous(memory_format=torch.channels_last) if x.dim() == 4 else x


def train(cfg: TrainConfig, resume: bool = False, max_minutes: float | None = None,
          max_steps: int | None = None) -> Path | None:
    """Train; returns the folder of the exported final model (None if stopped early by
    ``max_minutes``/``max_steps``, after writing a checkpoint to resume from)."""
    # A batch may hold no faces (PETA bodies) or no bodies, and branch dropout skips inputs: some
    # parameters then get no gradient, which DDP must be told to expect.
    ddp = DistributedDataParallelKwargs(find_unused_parameters=True)
    accelerator = Accelerator(gradient_accumulation_steps=cfg.optim.grad_accum, kwargs_handlers=[ddp],
                              mixed_precision=cfg.optim.mixed_precision, project_dir=cfg.output_dir)
    set_seed(cfg.seed)
    out_dir = Path(cfg.output_dir)
    started = time.monotonic()

    model_cfg = run_model_config(cfg)
    if cfg.model.init_from:
        # fp32 master weights whatever the start was stored in (the shipped model: fp16)
        # overrides may change a layer's shape (e.g. body_backbone_stride): those layers start afresh
        model = MiVOLOLiteModel.from_pretrained(resolve_model(cfg.model.init_from), config=model_cfg, use_safetensors=True,
                                                dtype=torch.float32, ignore_mismatched_sizes=bool(cfg.model.overrides))
    else:
        model = MiVOLOLiteModel(model_cfg)
    if cfg.model.pretrained_backbone:
        branches = cfg.model.pretrained_backbone_branches
        loaded = load_pretrained_backbone(model, cfg.model.pretrained_backbone, branches)
        accelerator.print(f"pretrained trunk ({len(loaded)} tensors) from {cfg.model.pretrained_backbone} "
                          f"into the {' and '.join(branches)} branch(es)")
    # a training-time setting of the model (transformers style, like a dropout rate); inert in eval mode
    model.config.branch_drop_prob = cfg.optim.branch_drop_prob
    objective = TrainingLoss.from_optim(cfg.optim)
    processor = MiVOLOLiteImageProcessor(size=model_cfg.image_size)
    frozen = freeze_all_but(model, cfg.optim.train_only) if cfg.optim.train_only else []
    if frozen:
        n_trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        accelerator.print(f"training {n_trainable:,} of {sum(p.numel() for p in model.parameters()):,} parameters "
                          f"({', '.join(cfg.optim.train_only)}); the rest is frozen")

    train_csv, val_csv = _csv_lists(cfg, accelerator)
    teacher = read_teacher_labels(cfg.data.teacher_labels) if cfg.data.teacher_labels else None
    train_records = _records(train_csv, cfg.data.limit_per_csv)
    embeddings = read_teacher_embeddings(cfg.data.teacher_embeddings) if cfg.data.teacher_embeddings else None
    if embeddings is not None and cfg.data.center_teacher_embeddings:
        embeddings = centered_embeddings(embeddings, [teacher_key(r.image, r.face_box) for r in train_records
                                                      if r.face_box is not None])
    train_ds = AgeDataset(train_records, processor, train=True, augment=augment_config(cfg.data.augment),
                          cache=cfg.data.cache_images, balance_ages=cfg.data.balance_ages, seed=cfg.seed,
                          teacher=teacher, age_range=(model_cfg.min_age, model_cfg.max_age),
                          source_weights=cfg.data.source_weights,
                          person_balance_power=cfg.data.person_balance_power,
                          teacher_embeddings=embeddings)
    if teacher is not None:
        accelerator.print(f"teacher labels for {train_ds.teacher_labelled} of {len(train_ds)} training samples "
                          f"({cfg.data.teacher_labels})")
    if train_ds.teacher_embeddings is not None:
        if model_cfg.face_embedding_dim != train_ds.embedding_dim:
            raise ValueError(f"{cfg.data.teacher_embeddings} holds {train_ds.embedding_dim}-d descriptors but the "
                             f"model's face_embedding_dim is {model_cfg.face_embedding_dim} (model.overrides)")
        accelerator.print(f"face descriptors for {sum(e is not None for e in train_ds.teacher_embeddings)} of "
                          f"{len(train_ds)} training samples ({cfg.data.teacher_embeddings})")
    val_sets = {Path(p).stem: AgeDataset(_records([p], cfg.data.limit_per_csv), processor, cache=cfg.data.cache_images)
                for p in val_csv}
    # (index, epoch) pairs: augmentation draws depend on them alone, so a resumed run continues exactly
    sampler = EpochShuffleSampler(len(train_ds), seed=cfg.seed, with_epoch=True)
    workers = cfg.data.num_workers
    # Own generator: starting a DataLoader iterator draws a seed from it, and drawing from the global
    # torch RNG instead would shift the model's random numbers after a resume.
    loader = DataLoader(train_ds, batch_size=cfg.optim.batch_size, sampler=sampler, num_workers=workers,
                        drop_last=True, persistent_workers=workers > 0,
                        generator=torch.Generator().manual_seed(cfg.seed))
    val_loaders = {k: DataLoader(v, batch_size=cfg.optim.batch_size * 2, num_workers=0) for k, v in val_sets.items()}

    optimizer = torch.optim.AdamW(parameter_groups(model, cfg.optim), lr=cfg.optim.lr)
    steps_per_epoch = math.ceil(len(loader) / accelerator.num_processes / cfg.optim.grad_accum)
    total_steps = steps_per_epoch * cfg.optim.epochs
    scheduler = get_cosine_schedule_with_warmup(optimizer, cfg.optim.warmup_steps, total_steps)
    # cosine to min_lr_ratio rather than zero, in every parameter group
    base_lambda = scheduler.lr_lambdas[0]
    scheduler.lr_lambdas = [lambda s: cfg.optim.min_lr_ratio + (1 - cfg.optim.min_lr_ratio) * base_lambda(s)
                            ] * len(optimizer.param_groups)

    # Convolutions train faster on channels-last (NHWC) tensors, on the CPU too: the first 40 steps
    # of configs/mobile.yaml took 2.07 s each against 2.76 s on 2 cores (data loading included);
    # lite's steps are unchanged. The weights are the same numbers, and they are saved contiguous.
    model.to(memory_format=torch.channels_last)
    model, optimizer, loader, scheduler = accelerator.prepare(model, optimizer, loader, scheduler)
    val_loaders = {k: accelerator.prepare(v) for k, v in val_loaders.items()}
    # warmup: the average must not cling to the random initial weights early in a run
    ema = ModelEmaV3(accelerator.unwrap_model(model), decay=cfg.optim.ema_decay, use_warmup=True)
    state = TrainingState()
    accelerator.register_for_checkpointing(ema, state)

    out_dir.mkdir(parents=True, exist_ok=True)
    metrics_path = out_dir / "metrics.jsonl"
    if resume:
        ckpt = latest_checkpoint(out_dir)
        if ckpt is None:
            accelerator.print(f"--resume: no checkpoint under {out_dir / 'checkpoints'}, starting fresh")
        else:
            accelerator.load_state(str(ckpt))
            accelerator.print(f"resumed from {ckpt} at step {state.step} (epoch {state.epoch}, "
                              f"batch {state.batches_in_epoch})")
            if accelerator.is_main_process:
                rewind_metrics(metrics_path, state.step)
    if accelerator.is_main_process:  # leftovers of a run killed while saving
        for partial in Path(out_dir, "checkpoints").glob(f"step_*{PARTIAL_SUFFIX}"):
            shutil.rmtree(partial, ignore_errors=True)
    accelerator.wait_for_everyone()

    def save_checkpoint():
        path = out_dir / "checkpoints" / f"step_{state.step}"
        partial = path.with_name(path.name + PARTIAL_SUFFIX)
        accelerator.save_state(str(partial))
        accelerator.wait_for_everyone()  # every process has written its part
        if accelerator.is_main_process:
            shutil.rmtree(path, ignore_errors=True)  # a same-step checkpoint from an earlier attempt
            partial.rename(path)
            for p in complete_checkpoints(out_dir)[: -cfg.keep_checkpoints]:
                shutil.rmtree(p, ignore_errors=True)
        accelerator.wait_for_everyone()
        return path

    def evaluate() -> dict:
        results = {}
        for name, vl in val_loaders.items():
            preds = predict_batches(ema.module, vl, flip_tta=cfg.flip_tta, gather=accelerator.gather_for_metrics)
            results[name] = summarize_predictions(preds.age, preds.prob_male, preds.age_low, preds.age_high, preds.gender)
        return results

    stop_early = False
    progress = tqdm(total=total_steps, initial=state.step, disable=not accelerator.is_local_main_process,
                    desc="training", dynamic_ncols=True)
    while state.epoch < cfg.optim.epochs and not stop_early:
        model.train()
        for module in frozen:
            module.eval()
        epoch_loader = accelerator.skip_first_batches(loader, state.batches_in_epoch) if state.batches_in_epoch else loader
        # Not sampler.set_epoch: when iterated, accelerate's loaders give the sampler their own count of
        # iterations, which restarts at 0 in a resumed run and in the loader that skips consumed batches.
        epoch_loader.set_epoch(state.epoch)
        for batch in epoch_loader:
            # counted on every batch (a collective: all processes take part) so the count survives a resume
            state.bad_images += int(accelerator.reduce((~batch["image_ok"]).sum(), reduction="sum"))
            with accelerator.accumulate(model):
                out = model(**{k: _channels_last(batch[k]) for k in MODEL_INPUTS if k in batch})
                parts = objective(out, batch, accelerator.unwrap_model(model).age_grid)
                loss = parts.total
                accelerator.backward(loss)
                if accelerator.sync_gradients and cfg.optim.grad_clip:
                    accelerator.clip_grad_norm_(model.parameters(), cfg.optim.grad_clip)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
            state.batches_in_epoch += 1
            if not accelerator.sync_gradients:
                continue
            state.step += 1
            ema.update(accelerator.unwrap_model(model), step=state.step)
            progress.update(1)
            losses = parts.logged()
            progress.set_postfix(**{k.removesuffix("_loss"): f"{v:.3f}" for k, v in losses.items()},
                                 lr=f"{scheduler.get_last_lr()[0]:.2e}", epoch=state.epoch)
            if state.step % cfg.log_every == 0 and accelerator.is_main_process:
                with open(metrics_path, "a") as f:
                    f.write(json.dumps({"step": state.step, "epoch": state.epoch, **losses,
                                        "lr": scheduler.get_last_lr()[0], "bad_images": state.bad_images,
                                        "minutes": (time.monotonic() - started) / 60}) + "\n")
            out_of_time = max_minutes is not None and (time.monotonic() - started) / 60 >= max_minutes
            out_of_steps = max_steps is not None and state.step >= max_steps
            if state.step % cfg.checkpoint_every == 0 or out_of_time or out_of_steps:
                save_checkpoint()
            if out_of_time or out_of_steps:
                stop_early = True
                break
        else:
            state.epoch += 1
            state.batches_in_epoch = 0
            if val_loaders and (state.epoch % cfg.eval_every_epochs == 0 or state.epoch == cfg.optim.epochs):
                results = evaluate()
                accelerator.print(f"epoch {state.epoch}: " + json.dumps(results))
                if accelerator.is_main_process:
                    with open(metrics_path, "a") as f:
                        f.write(json.dumps({"step": state.step, "epoch": state.epoch, "val": results}) + "\n")
    progress.close()
    if state.bad_images:
        accelerator.print(f"skipped {state.bad_images} unreadable training sample(s) so far (see the warnings)")
    if stop_early:
        accelerator.print(f"stopped at step {state.step}; continue with --resume")
        accelerator.end_training()
        return None

    final_dir = out_dir / "final"
    if accelerator.is_main_process:
        save_model(ema.module, processor, final_dir)
        with open(final_dir / "training_summary.json", "w") as f:
            json.dump({"steps": state.step, "epochs": state.epoch, "minutes": (time.monotonic() - started) / 60,
                       "processes": accelerator.num_processes, "device": str(accelerator.device),
                       "skipped_bad_images": state.bad_images}, f, indent=2)
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return final_dir
