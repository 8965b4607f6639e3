"""Losses for the age distribution head and the gender head.

Age labels are intervals ``[low, high]`` in years: an exact age is ``low == high``, an age group
such as PETA's 31-45 is a real interval, and ``NaN`` marks an unknown age. Gender labels are
1 (male), 0 (female) or -1 (unknown, masked out).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .age_distribution import distribution_median
from .configuration_mivolo_lite import AGE_ESTIMATES


def age_distribution_loss(
    logits: torch.Tensor,
    ages: torch.Tensor,
    low: torch.Tensor,
    high: torch.Tensor,
    weight: torch.Tensor | None = None,
    label_sigma: float = 2.0,
    mean_weight: float = 0.2,
    variance_weight: float = 0.05,
    teacher_probs: torch.Tensor | None = None,
    teacher_weight: float = 0.0,
    l1_point: str = "mean",
) -> torch.Tensor:
    """Loss over a softmax distribution ``logits`` (B, K) on the age grid ``ages`` (K,).

    - exact ages: label-distribution learning (cross-entropy to a Gaussian of ``label_sigma``
      years around the label) plus the mean-variance loss (L1 of the expected age, or with
      ``l1_point="median"`` of the median, which is what MAE measures, and the distribution's
      variance, which keeps it honest and unimodal);
    - intervals: negative log of the probability mass inside ``[low, high]`` (the model is free to
      place the mass anywhere inside, which is all an age group tells us) plus the same L1 term on
      the same point, measured to the nearest end of the interval (0 inside it);
    - unknown ages contribute nothing;
    - knowledge distillation: where ``teacher_probs`` (B, K) has a distribution (rows that sum to
      0 have none), an exact age's cross-entropy target is ``(1 - teacher_weight)`` times the
      Gaussian plus ``teacher_weight`` times the teacher's distribution. The L1 term stays on the
      true age: the teacher shapes the distribution, the label keeps its mean honest.
    Returns the weighted mean over labelled samples (0 when none are labelled).
    """
    known = ~(torch.isnan(low) | torch.isnan(high))
    if weight is None:
        weight = torch.ones_like(low)
    if not known.any():
        return logits.sum() * 0.0
    logits, low, high, weight = logits[known], low[known], high[known], weight[known]
    if teacher_probs is not None:
        teacher_probs = teacher_probs[known]
    log_p = F.log_softmax(logits.float(), dim=-1)
    p = log_p.exp()
    expected_age = (p * ages).sum(dim=1)
    # Both label kinds put an L1 term on one point of the distribution, pulled onto the label:
    # ``l1_point`` "mean" (the expected age) or "median" (the age reported by default,
    # config.age_estimate; differentiable through the interpolation inside its bin).
    if l1_point not in AGE_ESTIMATES:
        raise ValueError(f"l1_point must be one of {AGE_ESTIMATES}, got {l1_point!r}")
    point = expected_age if l1_point == "mean" else distribution_median(p, ages)
    exact = (high - low) < 0.5

    per_sample = torch.zeros_like(low)
    if exact.any():
        target_age = low[exact].unsqueeze(1)
        target = torch.exp(-0.5 * ((ages.unsqueeze(0) - target_age) / label_sigma) ** 2)
        target = target / target.sum(dim=1, keepdim=True)
        if teacher_probs is not None and teacher_weight > 0:
            t = teacher_probs[exact].float()
            has = t.sum(dim=1, keepdim=True) > 0
            mixed = (1 - teacher_weight) * target + teacher_weight * t / t.sum(dim=1, keepdim=True).clamp_min(1e-8)
            target = torch.where(has, mixed, target)
        ce = -(target * log_p[exact]).sum(dim=1)
        mean = expected_age[exact]
        var = (p[exact] * (ages.unsqueeze(0) - mean.unsqueeze(1)) ** 2).sum(dim=1)
        per_sample[exact] = ce + mean_weight * (point[exact] - target_age.squeeze(1)).abs() + variance_weight * var.sqrt()
    if (~exact).any():
        lo, hi = low[~exact] - 0.5, high[~exact] + 0.5
        inside = (ages.unsqueeze(0) >= lo.unsqueeze(1)) & (ages.unsqueeze(0) <= hi.unsqueeze(1))
        mass = (p[~exact] * inside).sum(dim=1).clamp_min(1e-6)
        # Most of the mass inside the group does not keep the centre of the distribution there
        # (a tail far outside drags it out): the L1 distance of the point from the
        # interval, the exact-age L1 term with the label widened to the group.
        outside_by = (lo - point[~exact]).clamp_min(0) + (point[~exact] - hi).clamp_min(0)
        per_sample[~exact] = -mass.log() + mean_weight * outside_by
    return (per_sample * weight).sum() / weight.sum().clamp_min(1e-6)


def gender_loss(logits: torch.Tensor, gender: torch.Tensor, weight: torch.Tensor | None = None,
                teacher_male: torch.Tensor | None = None, teacher_weight: float = 0.0) -> torch.Tensor:
    """Binary cross-entropy on samples whose gender is known (label 0 or 1; -1 is masked out).
    Knowledge distillation: where ``teacher_male`` (P(male) by a teacher) is not NaN, the target
    is ``(1 - teacher_weight) * label + teacher_weight * teacher_male``."""
    known = gender >= 0
    if not known.any():
        return logits.sum() * 0.0
    w = torch.ones_like(gender, dtype=torch.float32) if weight is None else weight.float()
    target = gender.float()
    if teacher_male is not None and teacher_weight > 0:
        teacher_male = teacher_male.float()
        target = torch.where(torch.isnan(teacher_male), target,
                             (1 - teacher_weight) * target + teacher_weight * teacher_male)
    per_sample = F.binary_cross_entropy_with_logits(logits[known].float(), target[known], reduction="none")
    return (per_sample * w[known]).sum() / w[known].sum().clamp_min(1e-6)


def embedding_loss(predicted: torch.Tensor, teacher: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
    """Feature distillation: ``1 - cosine`` between predicted and teacher descriptors (B, D), on
    the rows whose teacher descriptor is known (rows of NaN have none). Only the direction counts:
    face-recognition descriptors are compared by angle, and their length carries no label."""
    known = ~torch.isnan(teacher).any(-1)
    if not known.any():
        return predicted.sum() * 0.0
    w = torch.ones(known.shape, device=predicted.device) if weight is None else weight.float()
    per_sample = 1 - F.cosine_similarity(predicted[known].float(), teacher[known].float(), dim=-1)
    return (per_sample * w[known]).sum() / w[known].sum().clamp_min(1e-6)
