"""The training objective: what the trainer minimises, kept out of the model's ``forward``.

The model turns crops into outputs (and, given labels, a plain age + gender loss, as transformers
models do); everything that only training knows lives here: per-sample weights, the gender loss's
weight, the point of the distribution the L1 terms pull, and distillation from teachers (soft age
distributions and P(male) mixed into the targets, a face-recognition descriptor for the training-only
descriptor head).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..models.losses import age_distribution_loss, embedding_loss, gender_loss


@dataclass
class LossParts:
    total: torch.Tensor
    age: torch.Tensor
    gender: torch.Tensor
    embedding: torch.Tensor | None = None  # feature distillation, when the batch has descriptors

    def logged(self) -> dict[str, float]:
        parts = {"age_loss": self.age.item(), "gender_loss": self.gender.item()}
        if self.embedding is not None:
            parts["embedding_loss"] = self.embedding.item()
        return parts


@dataclass
class TrainingLoss:
    """``age + gender_weight * gender + embedding_weight * embedding`` over a batch of the training
    dataset (:class:`mivolo_lite.data.dataset.AgeDataset` items: ``age_low``, ``age_high``, ``gender``,
    ``sample_weight`` and, when the run has teachers, ``teacher_age_probs``, ``teacher_male``,
    ``teacher_face_embedding``). Defaults mean no distillation. Built from the config's ``optim``
    section by :meth:`from_optim`."""

    gender_weight: float = 1.0
    distill_age_weight: float = 0.0
    distill_gender_weight: float = 0.0
    age_l1_point: str = "mean"
    embedding_weight: float = 0.0

    @classmethod
    def from_optim(cls, optim) -> "TrainingLoss":
        return cls(gender_weight=optim.gender_loss_weight, distill_age_weight=optim.distill_age_weight,
                   distill_gender_weight=optim.distill_gender_weight, age_l1_point=optim.age_l1_point,
                   embedding_weight=optim.embedding_distill_weight)

    def __call__(self, outputs, batch: dict, age_grid: torch.Tensor) -> LossParts:
        weight = batch.get("sample_weight")
        age = age_distribution_loss(outputs.age_logits, age_grid, batch["age_low"], batch["age_high"], weight,
                                    teacher_probs=batch.get("teacher_age_probs"),
                                    teacher_weight=self.distill_age_weight, l1_point=self.age_l1_point)
        gender = gender_loss(outputs.gender_logits, batch["gender"], weight, teacher_male=batch.get("teacher_male"),
                             teacher_weight=self.distill_gender_weight)
        total = age + self.gender_weight * gender
        embedding = None
        teacher = batch.get("teacher_face_embedding")
        if teacher is not None and self.embedding_weight > 0 and outputs.face_embedding is not None:
            # faces present after branch dropout only: a stand-in token grid has no descriptor
            teacher = torch.where(outputs.face_present[:, None], teacher.float(), torch.nan)
            embedding = embedding_loss(outputs.face_embedding, teacher, weight)
            total = total + self.embedding_weight * embedding
        return LossParts(total, age, gender, embedding)
