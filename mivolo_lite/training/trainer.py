"""The training loop (accelerate): DDP, mixed precision, gradient accumulation, EMA of weights,
age-balanced loss weights, checkpoints every N optimizer steps and exact resume."""

from __future__ import annotations

import json
import math
import shutil
import time
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from timm.utils import ModelEmaV3
from torch.utils.data import DataLoader
from tqdm.auto import tqdm
from transformers import get_cosine_schedule_with_warmup

from ..data.annotations import read_annotations
from ..data.converters import convert_all
from ..data.dataset import AgeDataset, EpochShuffleSampler
from ..evaluation.inference import predict_batches
from ..evaluation.metrics import summarize_predictions
from ..models import MiVOLOLiteConfig, MiVOLOLiteImageProcessor, MiVOLOLiteModel
from .config import TrainConfig


class TrainingState:
    """Counters saved with every checkpoint (registered with accelerate)."""

    def __init__(self):
        self.step = 0  # optimizer steps done
        self.epoch = 0
        self.batches_in_epoch = 0  # dataloader batches of ``epoch`` already consumed
        self.bad_images = 0

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
    out = []
    for p in paths:
        rows = read_annotations(p)
        out.extend(rows[:limit] if limit else rows)
    return out


def latest_checkpoint(output_dir: str | Path) -> Path | None:
    ckpts = sorted(Path(output_dir, "checkpoints").glob("step_*"), key=lambda p: int(p.name.split("_")[1]))
    return ckpts[-1] if ckpts else None


def train(cfg: TrainConfig, resume: bool = False, max_minutes: float | None = None,
          max_steps: int | None = None) -> Path | None:
    """Train; returns the folder of the exported final model (None if stopped early by
    ``max_minutes``/``max_steps``, after writing a checkpoint to resume from)."""
    accelerator = Accelerator(gradient_accumulation_steps=cfg.optim.grad_accum,
                              mixed_precision=cfg.optim.mixed_precision, project_dir=cfg.output_dir)
    set_seed(cfg.seed)
    out_dir = Path(cfg.output_dir)
    started = time.monotonic()

    if cfg.model.init_from:
        model = MiVOLOLiteModel.from_pretrained(cfg.model.init_from, use_safetensors=True)
        model.config.age_calibration = None  # a calibration belongs to the old weights
        model_cfg = model.config
    else:
        model_cfg = MiVOLOLiteConfig.from_preset(cfg.model.preset, **cfg.model.overrides)
        model = MiVOLOLiteModel(model_cfg)
    processor = MiVOLOLiteImageProcessor(size=model_cfg.image_size)

    train_csv, val_csv = _csv_lists(cfg, accelerator)
    train_ds = AgeDataset(_records(train_csv, cfg.data.limit_per_csv), processor, train=True,
                          cache=cfg.data.cache_images, balance_ages=cfg.data.balance_ages, seed=cfg.seed)
    val_sets = {Path(p).stem: AgeDataset(_records([p], cfg.data.limit_per_csv), processor, cache=cfg.data.cache_images)
                for p in val_csv}
    sampler = EpochShuffleSampler(len(train_ds), seed=cfg.seed)
    workers = cfg.data.num_workers
    loader = DataLoader(train_ds, batch_size=cfg.optim.batch_size, sampler=sampler, num_workers=workers,
                        drop_last=True, persistent_workers=workers > 0)
    val_loaders = {k: DataLoader(v, batch_size=cfg.optim.batch_size * 2, num_workers=0) for k, v in val_sets.items()}

    no_decay = lambda n, p: p.ndim <= 1 or n.endswith("pos_embed") or "missing_" in n or "cls_token" in n  # noqa: E731
    params = [
        {"params": [p for n, p in model.named_parameters() if not no_decay(n, p)], "weight_decay": cfg.optim.weight_decay},
        {"params": [p for n, p in model.named_parameters() if no_decay(n, p)], "weight_decay": 0.0},
    ]
    optimizer = torch.optim.AdamW(params, lr=cfg.optim.lr)
    steps_per_epoch = math.ceil(len(loader) / accelerator.num_processes / cfg.optim.grad_accum)
    total_steps = steps_per_epoch * cfg.optim.epochs
    scheduler = get_cosine_schedule_with_warmup(optimizer, cfg.optim.warmup_steps, total_steps)
    # cosine to min_lr_ratio rather than zero
    base_lambda = scheduler.lr_lambdas[0]
    scheduler.lr_lambdas[0] = lambda s: cfg.optim.min_lr_ratio + (1 - cfg.optim.min_lr_ratio) * base_lambda(s)

    model, optimizer, loader, scheduler = accelerator.prepare(model, optimizer, loader, scheduler)
    val_loaders = {k: accelerator.prepare(v) for k, v in val_loaders.items()}
    # warmup: the average must not cling to the random initial weights early in a run
    ema = ModelEmaV3(accelerator.unwrap_model(model), decay=cfg.optim.ema_decay, use_warmup=True)
    state = TrainingState()
    accelerator.register_for_checkpointing(ema, state)

    if resume:
        ckpt = latest_checkpoint(out_dir)
        if ckpt is None:
            accelerator.print(f"--resume: no checkpoint under {out_dir / 'checkpoints'}, starting fresh")
        else:
            accelerator.load_state(str(ckpt))
            accelerator.print(f"resumed from {ckpt} at step {state.step} (epoch {state.epoch}, "
                              f"batch {state.batches_in_epoch})")

    out_dir.mkdir(parents=True, exist_ok=True)
    metrics_path = out_dir / "metrics.jsonl"

    def save_checkpoint():
        path = out_dir / "checkpoints" / f"step_{state.step}"
        accelerator.save_state(str(path))
        if accelerator.is_main_process:
            old = sorted((out_dir / "checkpoints").glob("step_*"), key=lambda p: int(p.name.split("_")[1]))
            for p in old[: -cfg.keep_checkpoints]:
                shutil.rmtree(p, ignore_errors=True)
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
        sampler.set_epoch(state.epoch)
        model.train()
        epoch_loader = accelerator.skip_first_batches(loader, state.batches_in_epoch) if state.batches_in_epoch else loader
        for batch in epoch_loader:
            with accelerator.accumulate(model):
                out = model(**{k: batch[k] for k in ("face_pixel_values", "body_pixel_values", "face_mask", "body_mask",
                                                     "age_low", "age_high", "gender", "sample_weight")},
                            branch_drop_prob=cfg.optim.branch_drop_prob)
                accelerator.backward(out.loss)
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
            progress.set_postfix(age=f"{out.age_loss.item():.3f}", gender=f"{out.gender_loss.item():.3f}",
                                 lr=f"{scheduler.get_last_lr()[0]:.2e}", epoch=state.epoch)
            if state.step % 50 == 0 and accelerator.is_main_process:
                with open(metrics_path, "a") as f:
                    f.write(json.dumps({"step": state.step, "epoch": state.epoch, "age_loss": out.age_loss.item(),
                                        "gender_loss": out.gender_loss.item(), "lr": scheduler.get_last_lr()[0],
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
            state.bad_images += len(train_ds.bad_indices)
            if val_loaders and (state.epoch % cfg.eval_every_epochs == 0 or state.epoch == cfg.optim.epochs):
                results = evaluate()
                accelerator.print(f"epoch {state.epoch}: " + json.dumps(results))
                if accelerator.is_main_process:
                    with open(metrics_path, "a") as f:
                        f.write(json.dumps({"step": state.step, "epoch": state.epoch, "val": results}) + "\n")
    progress.close()
    if stop_early:
        accelerator.print(f"stopped at step {state.step}; continue with --resume")
        accelerator.end_training()
        return None

    final_dir = out_dir / "final"
    if accelerator.is_main_process:
        ema.module.save_pretrained(final_dir)
        processor.save_pretrained(final_dir)
        with open(final_dir / "training_summary.json", "w") as f:
            json.dump({"steps": state.step, "epochs": state.epoch, "minutes": (time.monotonic() - started) / 60,
                       "processes": accelerator.num_processes, "device": str(accelerator.device),
                       "skipped_bad_images": state.bad_images}, f, indent=2)
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return final_dir
