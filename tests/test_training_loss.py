"""The training objective moved out of the model's forward into TrainingLoss: the same numbers as
before on a fixed batch that exercises every part (exact ages, age groups, unknown labels, sample
weights, teachers' age distributions and P(male), face descriptors, branch dropout)."""

import json
import math
from pathlib import Path

import pytest
import torch

from conftest import tiny_config
from mivolo_lite.models import MiVOLOLiteModel
from mivolo_lite.training.loss import TrainingLoss

REFERENCE = json.loads((Path(__file__).parent / "data" / "training_loss_reference.json").read_text())


def fixed_batch():
    g = torch.Generator().manual_seed(7)
    n = 6
    batch = dict(face_pixel_values=torch.randn(n, 3, 32, 32, generator=g),
                 body_pixel_values=torch.randn(n, 3, 32, 32, generator=g),
                 face_mask=torch.tensor([1, 1, 1, 0, 1, 1], dtype=torch.bool),
                 body_mask=torch.tensor([1, 0, 1, 1, 1, 1], dtype=torch.bool),
                 age_low=torch.tensor([20., 35., 31., 16., math.nan, 61.]),
                 age_high=torch.tensor([20., 35., 45., 30., math.nan, 100.]),
                 gender=torch.tensor([1, 0, -1, 1, 0, 1]), sample_weight=torch.tensor([1., 0.5, 2., 1., 1., 0.7]))
    probs = torch.rand(n, 101, generator=g)
    probs[2] = 0  # no teacher for this one
    batch["teacher_age_probs"] = probs / probs.sum(-1, keepdim=True).clamp_min(1e-8)
    batch["teacher_male"] = torch.tensor([0.9, math.nan, 0.2, 0.5, 0.1, math.nan])
    emb = torch.randn(n, 8, generator=g)
    emb[3] = math.nan
    batch["teacher_face_embedding"] = emb
    return batch


def test_loss_of_a_fixed_batch_is_unchanged_by_the_refactor():
    torch.manual_seed(0)
    model = MiVOLOLiteModel(tiny_config(face_embedding_dim=8, drop_path_rate=0.0, branch_drop_prob=0.3)).train()
    objective = TrainingLoss(gender_weight=3.0, distill_age_weight=0.4, distill_gender_weight=0.3,
                             age_l1_point="median", embedding_weight=0.5)
    batch = fixed_batch()
    torch.manual_seed(123)  # the branch-dropout draw, as in the reference run
    out = model(**{k: batch[k] for k in ("face_pixel_values", "body_pixel_values", "face_mask", "body_mask")})
    parts = objective(out, batch, model.age_grid)
    assert parts.age.item() == pytest.approx(REFERENCE["age_loss"], rel=1e-5)
    assert parts.gender.item() == pytest.approx(REFERENCE["gender_loss"], rel=1e-5)
    assert parts.embedding.item() == pytest.approx(REFERENCE["embedding_loss"], rel=1e-5)
    assert parts.total.item() == pytest.approx(REFERENCE["total_with_gender_weight_3"], rel=1e-5)
    parts.total.backward()  # and it trains
    assert model.age_head.weight.grad.abs().sum() > 0


def test_forward_takes_inputs_and_labels_only():
    """Like a transformers model: inputs and labels. A caller of the old signature (teacher targets,
    loss weights) is told where they went instead of having them silently ignored."""
    import inspect

    params = set(inspect.signature(MiVOLOLiteModel.forward).parameters) - {"self", "kwargs"}
    assert params == {"face_pixel_values", "body_pixel_values", "face_mask", "body_mask", "age_low", "age_high", "gender"}
    model = MiVOLOLiteModel(tiny_config())
    batch = fixed_batch()
    with pytest.raises(TypeError, match="TrainingLoss"):
        model(batch["face_pixel_values"], teacher_male=batch["teacher_male"], distill_gender_weight=0.5)


def test_branch_dropout_is_a_training_mode_setting_of_the_config():
    torch.manual_seed(0)
    model = MiVOLOLiteModel(tiny_config(branch_drop_prob=0.5))
    batch = fixed_batch()
    inputs = {k: batch[k] for k in ("face_pixel_values", "body_pixel_values", "face_mask", "body_mask")}
    model.eval()
    assert torch.equal(model(**inputs).face_present, batch["face_mask"])  # eval: nothing hidden
    model.train()
    torch.manual_seed(0)
    hidden = [(~model(**inputs).face_present & batch["face_mask"]).sum() + (~model(**inputs).body_present & batch["body_mask"]).sum()
              for _ in range(5)]
    assert sum(hidden) > 0
