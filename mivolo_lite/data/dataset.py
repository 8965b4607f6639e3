"""Training/evaluation dataset: annotation records -> model-ready face and body tensors.

Augmentation happens inside a single affine warp per crop (box scale/shift jitter, rotation,
flip) plus colour jitter, blur/downscale and random greyscale; see
:func:`mivolo_lite.models.image_processing_mivolo_lite.square_crop_matrix`.
"""

from __future__ import annotations

import logging
import math
import random
from collections import Counter
from dataclasses import dataclass

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from .._image_io import ImageLoadError, load_image
from ..models.image_processing_mivolo_lite import MiVOLOLiteImageProcessor
from .annotations import AnnotationRecord
from .teacher import TeacherLabel, teacher_key

log = logging.getLogger(__name__)


@dataclass
class AugmentConfig:
    face_scale: tuple[float, float] = (0.9, 1.2)
    body_scale: tuple[float, float] = (0.95, 1.1)
    shift: float = 0.06
    max_rotation: float = 10.0
    flip_prob: float = 0.5
    color_jitter: float = 0.3
    grayscale_prob: float = 0.05
    low_res_prob: float = 0.25  # simulate small, far-away faces: downscale then upscale
    # Degradations of old, scanned, compressed or night photos (off by default, so that recipes
    # written before them draw the same augmentations): film grain or sensor noise, blur, and JPEG
    # compression. Without them a model learns that a grainy skin is an old skin.
    noise_prob: float = 0.0  # Gaussian noise of noise_sigma grey levels
    noise_sigma: tuple[float, float] = (3.0, 14.0)
    blur_prob: float = 0.0  # Gaussian blur of 0.4-1.5 px
    jpeg_prob: float = 0.0  # re-encoded at a JPEG quality of 15-60


def age_balance_weights(records: list[AnnotationRecord], bin_years: int = 5, power: float = 0.5) -> list[float]:
    """Per-sample loss weights that flatten each set's skewed age histogram: ``count(bin)^-power``,
    normalised to mean 1 within each source."""
    keys = []
    for r in records:
        low, high = r.age_interval
        keys.append((r.source, None if math.isnan(low) else int((low + high) / 2 // bin_years)))
    counts = Counter(keys)
    return _mean_one_per_source(keys, [1.0 if k[1] is None else counts[k] ** -power for k in keys])


def _mean_one_per_source(keys: list[tuple], raw: list[float]) -> list[float]:
    """Scale weights keyed ``(source, ...)`` to mean 1 within each source, so that re-weighting
    inside a set never changes that set's share of the loss."""
    per_source: dict[str, list[float]] = {}
    for k, w in zip(keys, raw):
        per_source.setdefault(k[0], []).append(w)
    means = {s: float(np.mean(v)) for s, v in per_source.items()}
    return [w / means[k[0]] for k, w in zip(keys, raw)]


def person_balance_weights(records: list[AnnotationRecord], power: float) -> list[float]:
    """``images of that person ^ -power``, normalised to mean 1 within each source: sets cut from
    video (PETA: up to 66 frames of one pedestrian) otherwise reward learning the people, whose
    ages then do not carry over to new ones."""
    keys = [(r.source, r.person) for r in records]
    counts = Counter(keys)
    return _mean_one_per_source(keys, [counts[k] ** -power for k in keys])


class AgeDataset(Dataset):
    """Yields dicts with ``face_pixel_values``, ``body_pixel_values`` (3, S, S), ``face_mask``,
    ``body_mask``, ``age_low``, ``age_high``, ``gender``, ``sample_weight``, ``index`` and
    ``image_ok``; with ``teacher`` labels (knowledge distillation, see :mod:`.teacher`) also
    ``teacher_age_probs`` (probabilities on the model's whole-year grid ``age_range``; all zero
    where the teacher has no label for the sample) and ``teacher_male`` (NaN where it has none).

    ``cache=True`` keeps decoded images in memory (the sets here fit easily), which matters on a
    2-core machine. An unreadable image is not fatal: the sample comes back with both masks off,
    no labels and zero weight (the loss ignores it) and ``image_ok`` False, which the trainer
    counts (it travels with the batch, so the count is right with DataLoader workers too, whose
    ``bad_indices`` stay in the worker processes); a warning names the file once.
    """

    def __init__(self, records: list[AnnotationRecord], processor: MiVOLOLiteImageProcessor, train: bool = False,
                 augment: AugmentConfig | None = None, cache: bool = False, balance_ages: bool = True,
                 seed: int = 0, teacher: dict[tuple, TeacherLabel] | None = None,
                 age_range: tuple[int, int] = (0, 100), source_weights: dict[str, float] | None = None,
                 person_balance_power: float = 0.0, teacher_embeddings: dict[tuple, np.ndarray] | None = None):
        self.records = records
        self.processor = processor
        self.train = train
        self.augment = augment or AugmentConfig()
        self.cache = {} if cache else None
        self.weights = age_balance_weights(records) if (train and balance_ages) else [1.0] * len(records)
        if train and person_balance_power:
            self.weights = [w * p for w, p in zip(self.weights, person_balance_weights(records, person_balance_power))]
        if source_weights:  # a set's share of the loss, e.g. {"peta": 2.0} for the bodies
            self.weights = [w * source_weights.get(r.source, 1.0) for w, r in zip(self.weights, records)]
        self.bad_indices: set[int] = set()
        self.seed = seed
        # Teacher targets are matched to records once here (resolving paths is a system call per
        # record), not in __getitem__, which runs every epoch.
        self.teacher_targets = None if teacher is None else [self._teacher_target(r, teacher, age_range)
                                                             for r in records]
        self.age_bins = age_range[1] - age_range[0] + 1
        # face-recognition descriptors (face, mirrored face) for feature distillation, matched once
        self.teacher_embeddings = None if teacher_embeddings is None else [
            teacher_embeddings.get(teacher_key(r.image, r.face_box)) if r.face_box is not None else None
            for r in records]
        self.embedding_dim = next((e.shape[-1] for e in self.teacher_embeddings or [] if e is not None), 0)

    @staticmethod
    def _teacher_target(record: AnnotationRecord, teacher: dict, age_range: tuple[int, int]):
        """(probabilities on the grid, P(male)) for a record the teacher labelled, else None."""
        label = teacher.get(teacher_key(record.image, record.face_box)) if record.face_box is not None else None
        if label is None:
            return None
        lo, hi = age_range
        # the teacher's ages 0, 1, ... onto the grid lo..hi; ages outside it go to its end bins
        years = np.clip(np.arange(label.age_probs.size), lo, hi) - lo
        np.add.at(grid := np.zeros(hi - lo + 1, dtype=np.float32), years, label.age_probs)
        return torch.from_numpy(grid), label.male_prob

    @property
    def teacher_labelled(self) -> int:
        """How many samples have teacher targets."""
        return sum(t is not None for t in self.teacher_targets or [])

    def _teacher_fields(self, index: int) -> dict:
        target = self.teacher_targets[index]
        probs, male = target if target is not None else (torch.zeros(self.age_bins), math.nan)
        return {"teacher_age_probs": probs, "teacher_male": torch.tensor(male, dtype=torch.float32)}

    def __len__(self) -> int:
        return len(self.records)

    def _image(self, index: int) -> np.ndarray:
        if self.cache is not None and index in self.cache:
            return self.cache[index]
        image = load_image(self.records[index].image)
        if self.cache is not None:
            self.cache[index] = image
        return image

    def _jitter(self, rng: random.Random, scale_range: tuple[float, float], flip: bool) -> dict:
        a = self.augment
        return dict(scale=rng.uniform(*scale_range), shift=(rng.uniform(-a.shift, a.shift), rng.uniform(-a.shift, a.shift)),
                    angle_deg=rng.uniform(-a.max_rotation, a.max_rotation), flip=flip)

    def _photometric(self, crop: np.ndarray, rng: random.Random) -> np.ndarray:
        a = self.augment
        out = crop.astype(np.float32)
        if a.color_jitter > 0:
            brightness = 1 + rng.uniform(-a.color_jitter, a.color_jitter)
            contrast = 1 + rng.uniform(-a.color_jitter, a.color_jitter)
            saturation = 1 + rng.uniform(-a.color_jitter, a.color_jitter)
            gray = out.mean(axis=2, keepdims=True)
            out = gray + (out - gray) * saturation
            out = (out - out.mean()) * contrast + out.mean()
            out = out * brightness
        if rng.random() < a.grayscale_prob:
            out = np.repeat(out.mean(axis=2, keepdims=True), 3, axis=2)
        out = np.clip(out, 0, 255).astype(np.uint8)
        if rng.random() < a.low_res_prob:
            s = crop.shape[0]
            small = max(12, int(s * rng.uniform(0.25, 0.7)))
            out = cv2.resize(cv2.resize(out, (small, small), interpolation=cv2.INTER_AREA), (s, s),
                             interpolation=cv2.INTER_LINEAR)
        return self._degrade(out, rng)

    def _degrade(self, crop: np.ndarray, rng: random.Random) -> np.ndarray:
        """Noise, blur, JPEG (each with its probability). A probability of 0 draws nothing, so the
        other augmentations stay exactly what they were without these."""
        a = self.augment
        if a.blur_prob > 0 and rng.random() < a.blur_prob:
            crop = cv2.GaussianBlur(crop, (0, 0), rng.uniform(0.4, 1.5))
        if a.noise_prob > 0 and rng.random() < a.noise_prob:
            sigma, draws = rng.uniform(*a.noise_sigma), np.random.default_rng(rng.getrandbits(32))
            # film grain (the same in every channel) or a sensor's colour noise
            noise = draws.normal(0, sigma, crop.shape[:2])[:, :, None] if rng.random() < 0.5 else \
                draws.normal(0, sigma, crop.shape)
            crop = np.clip(crop.astype(np.float32) + noise, 0, 255).astype(np.uint8)
        if a.jpeg_prob > 0 and rng.random() < a.jpeg_prob:
            ok, buf = cv2.imencode(".jpg", crop, [cv2.IMWRITE_JPEG_QUALITY, rng.randint(15, 60)])
            crop = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED) if ok else crop
        return crop

    def __getitem__(self, key: int | tuple[int, int]) -> dict:
        """``key``: a sample index, or ``(index, epoch)`` from :class:`EpochShuffleSampler` with
        ``with_epoch=True``, which makes the training augmentation a function of (seed, epoch,
        index) alone: the same whichever worker or process draws it, whenever it is prefetched,
        and after a resume."""
        index, epoch = key if isinstance(key, tuple) else (key, None)
        record = self.records[index]
        size = self.processor.size
        low, high = record.age_interval
        item = {"index": index, "age_low": torch.tensor(low, dtype=torch.float32),
                "age_high": torch.tensor(high, dtype=torch.float32),
                "gender": torch.tensor(record.gender_label, dtype=torch.long),
                "sample_weight": torch.tensor(self.weights[index], dtype=torch.float32),
                "image_ok": torch.tensor(True)}
        if self.teacher_targets is not None:
            item.update(self._teacher_fields(index))
        if self.teacher_embeddings is not None:  # NaN: no descriptor (no face, unlabelled, unreadable)
            item["teacher_face_embedding"] = torch.full((self.embedding_dim,), math.nan)
        try:
            image = self._image(index)
        except ImageLoadError as e:
            if index not in self.bad_indices:
                log.warning("skipping training sample %d: %s", index, e)
            self.bad_indices.add(index)
            blank = torch.zeros(3, size, size)
            item.update(face_pixel_values=blank, body_pixel_values=blank.clone(), face_mask=torch.tensor(False),
                        body_mask=torch.tensor(False), age_low=torch.tensor(math.nan), age_high=torch.tensor(math.nan),
                        gender=torch.tensor(-1), sample_weight=torch.tensor(0.0), image_ok=torch.tensor(False))
            return item
        rng = random.Random()
        flip = False
        if self.train:
            rng.seed(hash((self.seed, epoch, index)) if epoch is not None else hash((self.seed, index, random.random())))
            flip = rng.random() < self.augment.flip_prob
        if self.teacher_embeddings is not None and self.teacher_embeddings[index] is not None:
            item["teacher_face_embedding"] = torch.from_numpy(self.teacher_embeddings[index][int(flip)])
        crops = {}
        for name, box, scale_range in (("face", record.face_box, self.augment.face_scale),
                                        ("body", record.body_box, self.augment.body_scale)):
            if box is None:
                crops[name] = None
                continue
            jitter = self._jitter(rng, scale_range, flip) if self.train else {}
            crop = self.processor.crop(image, box, **jitter)
            crops[name] = self._photometric(crop, rng) if self.train else crop
        for name in ("face", "body"):
            crop = crops[name]
            item[f"{name}_mask"] = torch.tensor(crop is not None)
            item[f"{name}_pixel_values"] = (self.processor.normalize_batch(crop[None])[0] if crop is not None
                                            else torch.zeros(3, size, size))
        if crops["face"] is None and crops["body"] is None:
            item.update(age_low=torch.tensor(math.nan), age_high=torch.tensor(math.nan), gender=torch.tensor(-1),
                        sample_weight=torch.tensor(0.0))
        return item


class EpochShuffleSampler(Sampler[int]):
    """Shuffles with a generator seeded by ``seed + epoch``: the order of any epoch can be
    recomputed, which lets a resumed run skip exactly the batches it had already consumed.
    ``with_epoch``: yield ``(index, epoch)`` pairs (see :meth:`AgeDataset.__getitem__`)."""

    def __init__(self, length: int, seed: int = 0, shuffle: bool = True, with_epoch: bool = False):
        self.length, self.seed, self.shuffle, self.epoch = length, seed, shuffle, 0
        self.with_epoch = with_epoch

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        if not self.shuffle:
            order = list(range(self.length))
        else:
            order = torch.randperm(self.length, generator=torch.Generator().manual_seed(self.seed + self.epoch)).tolist()
        return iter([(i, self.epoch) for i in order] if self.with_epoch else order)

    def __len__(self) -> int:
        return self.length
