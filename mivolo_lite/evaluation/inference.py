"""Run a model over an :class:`~mivolo_lite.data.dataset.AgeDataset`, collecting everything the
metrics, calibration and plots need."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from .metrics import exact_age_mask


@dataclass
class Predictions:
    index: np.ndarray
    age: np.ndarray
    age_std: np.ndarray
    age_probs: np.ndarray
    prob_male: np.ndarray
    age_low: np.ndarray
    age_high: np.ndarray
    gender: np.ndarray
    face_mask: np.ndarray
    body_mask: np.ndarray

    @property
    def exact_age(self) -> np.ndarray:
        """Which samples are labelled with an exact age (not an age group, not unknown)."""
        return exact_age_mask(self.age_low, self.age_high)

    def subset(self, keep: np.ndarray) -> "Predictions":
        return Predictions(**{k: v[keep] for k, v in self.__dict__.items()})


MODEL_KEYS = ("face_pixel_values", "body_pixel_values", "face_mask", "body_mask")


@torch.no_grad()
def predict_batches(model, batches, flip_tta: bool = True, gather=None, progress: bool = False) -> Predictions:
    """``batches`` yields dataset batches; ``gather`` (e.g. ``accelerator.gather_for_metrics``)
    collects across processes. ``model``: a model, or an estimator of
    :func:`~mivolo_lite.export.build_estimator` (anything with the model's ``predict``; an
    onnxruntime one takes CPU tensors)."""
    if isinstance(model, torch.nn.Module):
        model.eval()
        device = next(model.parameters()).device
    else:
        device = torch.device("cpu")
    parts: dict[str, list] = {k: [] for k in Predictions.__dataclass_fields__}
    for batch in tqdm(batches, desc="evaluating", disable=not progress, leave=False):
        inputs = {k: batch[k].to(device) for k in MODEL_KEYS}
        out = model.predict(**inputs, flip_tta=flip_tta)
        values = {"index": batch["index"], "age": out.age, "age_std": out.age_std, "age_probs": out.age_probs,
                  "prob_male": out.gender_prob, "age_low": batch["age_low"], "age_high": batch["age_high"],
                  "gender": batch["gender"], "face_mask": batch["face_mask"], "body_mask": batch["body_mask"]}
        if gather is not None:
            values = gather({k: v.to(device) for k, v in values.items()})
        for k, v in values.items():
            parts[k].append(v.float().cpu().numpy() if v.dtype.is_floating_point else v.cpu().numpy())
    return Predictions(**{k: np.concatenate(v) if v else np.zeros(0) for k, v in parts.items()})


def predict_dataset(model, dataset, batch_size: int = 64, flip_tta: bool = True, num_workers: int = 0,
                    progress: bool = True) -> Predictions:
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers)
    return predict_batches(model, loader, flip_tta=flip_tta, progress=progress)
