"""Feature distillation: the training-only head that regresses a face-recognition descriptor from
the face encoder's tokens, its loss, and the descriptors the dataset hands out (the mirrored
face's descriptor for a mirrored crop)."""

import math

import numpy as np
import pytest
import torch

from conftest import tiny_config
from mivolo_lite.data.annotations import read_annotations
from mivolo_lite.data.dataset import AgeDataset, AugmentConfig
from mivolo_lite.data.teacher import centered_embeddings, read_teacher_embeddings, teacher_key
from mivolo_lite.models import MiVOLOLiteImageProcessor, MiVOLOLiteModel
from mivolo_lite.models.losses import embedding_loss
from mivolo_lite.training.loss import TrainingLoss


def batch(n=4, size=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return dict(face_pixel_values=torch.randn(n, 3, size, size, generator=g),
                body_pixel_values=torch.randn(n, 3, size, size, generator=g),
                face_mask=torch.tensor([True, True, False, True][:n]), body_mask=torch.ones(n, dtype=torch.bool),
                age_low=torch.full((n,), 30.0), age_high=torch.full((n,), 30.0), gender=torch.ones(n, dtype=torch.long))


def test_embedding_loss_is_one_minus_cosine_on_known_rows():
    predicted = torch.tensor([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]])
    teacher = torch.tensor([[3.0, 0.0], [1.0, 0.0], [math.nan, math.nan]])
    assert embedding_loss(predicted, teacher).item() == pytest.approx((0.0 + 1.0) / 2)
    assert embedding_loss(predicted, torch.full((3, 2), math.nan)).item() == 0.0


def distill(model, inputs, teacher, weight=0.5):
    """The trainer's objective with feature distillation only (gender weight 1, no teachers' labels)."""
    out = model(**{k: v for k, v in inputs.items() if "pixel" in k or "mask" in k})
    return TrainingLoss(embedding_weight=weight)(out, {**inputs, "teacher_face_embedding": teacher}, model.age_grid)


def test_head_learns_from_present_faces_only_and_reaches_the_face_encoder():
    torch.manual_seed(0)
    model = MiVOLOLiteModel(tiny_config(face_embedding_dim=8)).train()
    inputs = batch()
    teacher = torch.randn(4, 8)
    parts = distill(model, inputs, teacher)
    assert parts.embedding is not None and torch.isfinite(parts.embedding)
    assert parts.total.item() == pytest.approx((parts.age + parts.gender + 0.5 * parts.embedding).item(), rel=1e-5)
    parts.embedding.backward()
    assert model.face_encoder.stem.parameters().__next__().grad.abs().sum() > 0
    assert all(p.grad is None or p.grad.abs().sum() == 0 for p in model.body_encoder.parameters())

    # the third sample has no face: its descriptor does not count, whatever it is
    model.eval()
    changed = teacher.clone()
    changed[2] = torch.randn(8) * 100
    first = distill(model, inputs, teacher).embedding
    second = distill(model, inputs, changed).embedding
    assert first.item() == pytest.approx(second.item())


def test_no_head_no_loss_and_inference_unchanged():
    torch.manual_seed(0)
    plain = MiVOLOLiteModel(tiny_config()).eval()
    assert plain.face_embedding_head is None
    assert distill(plain, batch(), torch.randn(4, 8)).embedding is None
    # the head is training-only: the same trunk weights predict the same with or without it
    torch.manual_seed(0)
    with_head = MiVOLOLiteModel(tiny_config(face_embedding_dim=8)).eval()
    with_head.load_state_dict(plain.state_dict(), strict=False)
    inputs = {k: v for k, v in batch().items() if "pixel" in k or "mask" in k}
    assert torch.allclose(plain(**inputs).age, with_head(**inputs).age)


def write_descriptors(path, records, dim=6, seed=0):
    rng = np.random.default_rng(seed)
    desc = rng.normal(size=(len(records), 2, dim)).astype(np.float32)
    np.savez(path, image=np.array([r.image for r in records]), box=np.array([r.face_box for r in records], float),
             desc=desc)
    return desc


def test_dataset_hands_out_the_mirrored_descriptor_for_a_mirrored_crop(annotations, tmp_path):
    records = read_annotations(annotations / "utkface_train.csv")[:3]
    desc = write_descriptors(tmp_path / "desc.npz", records[:2])
    embeddings = read_teacher_embeddings(tmp_path / "desc.npz")
    assert set(embeddings) == {teacher_key(r.image, r.face_box) for r in records[:2]}
    processor = MiVOLOLiteImageProcessor(size=32)
    for flip_prob, view in ((0.0, 0), (1.0, 1)):
        ds = AgeDataset(records, processor, train=True, augment=AugmentConfig(flip_prob=flip_prob),
                        teacher_embeddings=embeddings)
        assert torch.equal(ds[(0, 0)]["teacher_face_embedding"], torch.from_numpy(desc[0, view]))
        assert torch.equal(ds[(1, 3)]["teacher_face_embedding"], torch.from_numpy(desc[1, view]))
        assert torch.isnan(ds[(2, 0)]["teacher_face_embedding"]).all()  # no descriptor for this face
    # evaluation never mirrors
    ds = AgeDataset(records, processor, train=False, teacher_embeddings=embeddings)
    assert torch.equal(ds[0]["teacher_face_embedding"], torch.from_numpy(desc[0, 0]))


def test_read_teacher_embeddings_rejects_other_files(tmp_path):
    np.savez(tmp_path / "bad.npz", image=np.array(["a"]), box=np.zeros((1, 4)), desc=np.zeros((1, 6)))
    with pytest.raises(ValueError, match="not a descriptor file"):
        read_teacher_embeddings(tmp_path / "bad.npz")


def test_centered_embeddings_subtract_the_mean_of_the_given_faces_only():
    shared = np.array([5.0, 5.0, 5.0])
    embeddings = {("a", (0,)): np.stack([shared + 1, shared - 1]), ("b", (0,)): np.stack([shared - 1, shared + 1]),
                  ("val", (0,)): np.stack([shared * 100, shared * 100])}
    centred = centered_embeddings(embeddings, [("a", (0,)), ("b", (0,)), ("b", (0,)), ("missing", (0,))])
    assert set(centred) == {("a", (0,)), ("b", (0,))}  # the held-out face neither kept nor averaged in
    assert np.allclose(centred[("a", (0,))], [[1, 1, 1], [-1, -1, -1]])
    assert np.allclose(np.mean(list(centred.values()), axis=(0, 1)), 0)
