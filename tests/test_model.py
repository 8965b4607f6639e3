import pytest
import torch

from conftest import tiny_config
from mivolo_lite.models import PRESETS, MiVOLOLiteConfig, MiVOLOLiteModel
from mivolo_lite.models.losses import age_distribution_loss, gender_loss


def batch(n=4, size=32):
    torch.manual_seed(1)
    return torch.randn(n, 3, size, size), torch.randn(n, 3, size, size)


@pytest.mark.parametrize("mode", ["both", "face", "body", "mixed"])
def test_output_shapes_for_every_input_combination(tiny_model, mode):
    face, body = batch()
    masks = {"both": ([1, 1, 1, 1], [1, 1, 1, 1]), "face": ([1, 1, 1, 1], [0, 0, 0, 0]),
             "body": ([0, 0, 0, 0], [1, 1, 1, 1]), "mixed": ([1, 0, 1, 1], [1, 1, 0, 1])}[mode]
    fm, bm = (torch.tensor(m, dtype=torch.bool) for m in masks)
    out = tiny_model(face, body, fm, bm)
    bins = tiny_model.config.num_age_bins
    assert out.age_logits.shape == (4, bins) and out.age_probs.shape == (4, bins)
    assert out.age.shape == out.age_std.shape == out.gender_prob.shape == (4,)
    assert torch.isfinite(out.age).all() and (out.age_std > 0).all()
    assert ((out.gender_prob > 0) & (out.gender_prob < 1)).all()


def test_face_only_and_body_only_calls_without_the_other_tensor(tiny_model):
    face, body = batch()
    assert tiny_model(face_pixel_values=face).age.shape == (4,)
    assert tiny_model(body_pixel_values=body).age.shape == (4,)
    with pytest.raises(ValueError):
        tiny_model()


def test_absent_input_is_ignored_whatever_its_pixels(tiny_model):
    face, body = batch()
    fm = torch.ones(4, dtype=torch.bool)
    bm = torch.tensor([True, False, True, False])
    a = tiny_model(face, body, fm, bm).age
    b = tiny_model(face, body * 5 + 3, fm, bm).age
    assert torch.allclose(a[~bm], b[~bm], atol=1e-5)
    assert not torch.allclose(a[bm], b[bm], atol=1e-5)


def test_static_branch_path_for_export_matches_eager(tiny_model):
    face, body = batch()
    fm, bm = torch.tensor([1, 0, 1, 1], dtype=torch.bool), torch.tensor([1, 1, 0, 1], dtype=torch.bool)
    eager = tiny_model(face, body, fm, bm).age
    tiny_model.static_branches = True
    static = tiny_model(face, body, fm, bm).age
    assert torch.allclose(eager, static, atol=1e-4)


def test_any_input_size_works():
    model = MiVOLOLiteModel(tiny_config()).eval()
    for size in (32, 48, 64):
        face, body = batch(2, size)
        assert torch.isfinite(model(face, body).age).all()


def test_gradients_reach_both_branches_and_fusion():
    model = MiVOLOLiteModel(tiny_config()).train()
    face, body = batch()
    fm, bm = torch.tensor([1, 1, 0, 1], dtype=torch.bool), torch.tensor([1, 0, 1, 1], dtype=torch.bool)
    out = model(face, body, fm, bm, age_low=torch.tensor([20.0, 30, 16, float("nan")]),
                age_high=torch.tensor([20.0, 30, 30, float("nan")]), gender=torch.tensor([1, 0, -1, 1]))
    out.loss.backward()
    for name in ("face_encoder.stem.proj.weight", "body_encoder.stem.proj.weight",
                 "fusion.face_from_body.q.weight", "fusion.body_from_face.q.weight", "fusion.merge.1.weight",
                 "age_head.weight", "gender_head.weight", "missing_face", "missing_body"):
        grad = dict(model.named_parameters())[name].grad
        assert grad is not None and grad.abs().sum() > 0, name


def test_branch_dropout_only_hides_one_of_two_present_inputs():
    model = MiVOLOLiteModel(tiny_config())
    fm = torch.tensor([True] * 1000)
    bm = torch.tensor([True] * 500 + [False] * 500)
    f2, b2 = model._drop_branches(fm, bm, 0.3)
    assert (f2 | b2).all()  # never both dropped
    assert f2[500:].all()  # face-only samples keep their face
    assert 0.2 < (~f2[:500]).float().mean() < 0.4 and 0.2 < (~b2[:500]).float().mean() < 0.4


def test_age_loss_exact_interval_and_missing_labels():
    ages = torch.arange(0, 101, dtype=torch.float32)
    logits = torch.zeros(3, 101)
    logits[:, 30:40] = 5.0  # mass on 30-39
    low = torch.tensor([35.0, 31.0, float("nan")])
    high = torch.tensor([35.0, 45.0, float("nan")])
    loss = age_distribution_loss(logits, ages, low, high)
    assert torch.isfinite(loss)
    # interval: mass inside [31, 45] beats mass outside it
    inside = age_distribution_loss(logits[1:2], ages, low[1:2], high[1:2])
    outside = age_distribution_loss(logits[1:2], ages, torch.tensor([60.0]), torch.tensor([75.0]))
    assert inside < outside
    # interval, same mass inside: a mean dragged out of the group by a far tail costs more
    def from_probs(weights: dict) -> torch.Tensor:
        probs = torch.full((1, 101), 1e-9)
        for age, w in weights.items():
            probs[0, age] = w
        return probs.log()
    group = (torch.tensor([31.0]), torch.tensor([45.0]))
    mean_inside = age_distribution_loss(from_probs({40: 0.6, 20: 0.4}), ages, *group)  # mean 32
    mean_outside = age_distribution_loss(from_probs({40: 0.6, 0: 0.4}), ages, *group)  # mean 24
    assert mean_outside > mean_inside + 0.2 * 6.5 - 1e-4
    # exact: a distribution centred on the label beats one 20 years off
    near = age_distribution_loss(logits[:1], ages, torch.tensor([34.0]), torch.tensor([34.0]))
    far = age_distribution_loss(logits[:1], ages, torch.tensor([54.0]), torch.tensor([54.0]))
    assert near < far
    # all labels missing: zero loss, still differentiable
    lg = logits.clone().requires_grad_()
    zero = age_distribution_loss(lg, ages, torch.full((3,), float("nan")), torch.full((3,), float("nan")))
    zero.backward()
    assert zero.item() == 0 and lg.grad.abs().sum() == 0


def test_gender_loss_masks_unknown():
    logits = torch.tensor([3.0, -3.0, 10.0], requires_grad=True)
    loss = gender_loss(logits, torch.tensor([1, 0, -1]))
    loss.backward()
    assert logits.grad[2] == 0 and loss < 0.1
    assert gender_loss(logits, torch.tensor([-1, -1, -1])).item() == 0


def test_presets_and_config_validation():
    assert {"lite", "d1"} <= set(PRESETS)
    cfg = MiVOLOLiteConfig.from_preset("d1")
    assert cfg.image_size == 224 and cfg.total_stride == 8 and "outlooker" in cfg.stage_types
    with pytest.raises(ValueError, match="unknown preset"):
        MiVOLOLiteConfig.from_preset("nope")
    with pytest.raises(ValueError):
        MiVOLOLiteConfig(stage_dims=[64, 128], stage_depths=[1])


def test_d1_preset_runs_with_outlookers():
    torch.manual_seed(0)
    model = MiVOLOLiteModel(MiVOLOLiteConfig.from_preset("d1", stage_depths=[1, 1], image_size=64)).eval()
    face, body = batch(2, 64)
    out = model(face, body, torch.tensor([True, False]), torch.tensor([True, True]))
    assert out.age.shape == (2,) and torch.isfinite(out.age).all()


def test_fused_model_gives_the_same_outputs():
    model = MiVOLOLiteModel(tiny_config())
    model.train()
    face, body = batch()
    model(face, body)  # move BatchNorm running statistics away from their defaults
    model.eval()
    before = model(face, body).age_logits
    model.fuse_for_inference()
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    assert torch.allclose(before, model(face, body).age_logits, atol=1e-4)


def test_distillation_targets_pull_towards_the_teacher():
    ages = torch.arange(0, 101, dtype=torch.float32)
    logits = torch.zeros(2, 101)
    logits[:, 40:45] = 5.0  # mass on 40-44
    label = torch.tensor([30.0, 30.0])
    teacher = torch.zeros(2, 101)
    teacher[0, 42] = 1.0  # the teacher agrees with the model, not with the label
    plain = age_distribution_loss(logits, ages, label, label)
    distilled = age_distribution_loss(logits, ages, label, label, teacher_probs=teacher, teacher_weight=0.5)
    assert distilled < plain  # sample 0's target moved towards where the model already is
    # a row without a teacher distribution (all zero) keeps the plain target exactly
    assert torch.allclose(age_distribution_loss(logits[1:], ages, label[1:], label[1:], teacher_probs=teacher[1:],
                                                teacher_weight=0.5),
                          age_distribution_loss(logits[1:], ages, label[1:], label[1:]))

    g_logits = torch.tensor([-2.0, -2.0])  # the model says female
    male = torch.tensor([1, 1])
    unsure_teacher = torch.tensor([0.1, float("nan")])
    assert gender_loss(g_logits[:1], male[:1], teacher_male=unsure_teacher[:1], teacher_weight=0.5) \
        < gender_loss(g_logits[:1], male[:1])
    assert gender_loss(g_logits[1:], male[1:], teacher_male=unsure_teacher[1:], teacher_weight=0.5) \
        == gender_loss(g_logits[1:], male[1:])


@pytest.mark.parametrize("inputs", ["face+body", "face only", "body only", "mixed masks"])
def test_flip_tta_averages_the_input_and_its_mirror(tiny_model, inputs):
    """predict(flip_tta=True) runs both in one batch; it must equal two separate passes averaged."""
    g = torch.Generator().manual_seed(3)
    face, body = torch.randn(3, 3, 32, 32, generator=g), torch.randn(3, 3, 32, 32, generator=g)
    face_mask, body_mask = torch.ones(3, dtype=torch.bool), torch.ones(3, dtype=torch.bool)
    if inputs == "face only":
        body, body_mask = None, torch.zeros(3, dtype=torch.bool)
    elif inputs == "body only":
        face, face_mask = None, torch.zeros(3, dtype=torch.bool)
    elif inputs == "mixed masks":
        face_mask, body_mask = torch.tensor([True, False, True]), torch.tensor([True, True, False])
    flip = lambda t: None if t is None else t.flip(-1)  # noqa: E731
    plain = tiny_model.predict(face, body, face_mask, body_mask, flip_tta=False)
    mirrored = tiny_model.predict(flip(face), flip(body), face_mask, body_mask, flip_tta=False)
    both = tiny_model.predict(face, body, face_mask, body_mask, flip_tta=True)
    assert both.age_probs.shape == plain.age_probs.shape
    assert torch.allclose(both.age_probs, (plain.age_probs + mirrored.age_probs) / 2, atol=1e-5)
    assert torch.allclose(both.gender_prob, (plain.gender_prob + mirrored.gender_prob) / 2, atol=1e-5)
    assert not torch.allclose(plain.age_probs, mirrored.age_probs)  # the mirror is a different input


def test_deepened_trunk_predicts_exactly_as_before_and_its_new_blocks_learn():
    from mivolo_lite.models.growth import deepen_trunk

    torch.manual_seed(0)
    model = MiVOLOLiteModel(tiny_config(stage_depths=[2])).eval()
    grown = deepen_trunk(model, 3).eval()
    assert grown.config.stage_depths == [5] and len(grown.stages) == 5
    face, body = batch()
    mask = torch.tensor([True, True, False, True]), torch.tensor([True, False, True, True])
    before, after = model(face, body, *mask), grown(face, body, *mask)
    assert torch.allclose(before.age_logits, after.age_logits, atol=1e-5)
    assert torch.allclose(before.gender_logits, after.gender_logits, atol=1e-5)
    # the old blocks are kept in order, the new ones are zero-residual identities in between
    old_blocks = [b for b in grown.stages if b.mlp.fc2.weight.abs().sum() > 0]
    assert len(old_blocks) == 2
    for old, new in zip(model.stages, old_blocks):
        assert torch.equal(old.attn.qkv.weight, new.attn.qkv.weight)
    # the zeroed layers receive gradients, so training can use the added blocks
    grown.train()
    out = grown(face, body, age_low=torch.full((4,), 30.0), age_high=torch.full((4,), 30.0),
                gender=torch.tensor([1, 0, 1, 0]))
    out.loss.backward()
    new_blocks = [b for b in grown.stages if b.mlp.fc2.weight.abs().sum() == 0]
    assert len(new_blocks) == 3
    assert all(b.mlp.fc2.weight.grad.abs().sum() > 0 and b.attn.proj.weight.grad.abs().sum() > 0 for b in new_blocks)


def test_deepening_d1_keeps_its_outlookers_and_refuses_an_outlooker_last_stage():
    from mivolo_lite.models.growth import deepen_trunk

    torch.manual_seed(0)
    d1 = MiVOLOLiteModel(MiVOLOLiteConfig.from_preset("d1", stage_depths=[1, 1], image_size=64)).eval()
    grown = deepen_trunk(d1, 1).eval()  # d1: outlookers, a downsample, then transformers
    assert grown.config.stage_depths == [1, 2]
    face, body = batch(2, 64)
    assert torch.allclose(d1(face, body).age_logits, grown(face, body).age_logits, atol=1e-5)
    d1.config.stage_types = ["outlooker", "outlooker"]
    with pytest.raises(ValueError, match="outlooker"):
        deepen_trunk(d1, 1)
    with pytest.raises(ValueError, match="extra_blocks"):
        deepen_trunk(MiVOLOLiteModel(tiny_config()), 0)


def test_resized_input_model_predicts_as_the_original_on_the_larger_crops(tmp_path):
    """resize_input stores the resampled position embeddings the forward pass would otherwise
    compute on the fly, so at the new size it predicts exactly what the original model does on
    those crops; tools/research/grow_model.py saves it with a processor that makes crops of that size."""
    from mivolo_lite.hub import save_model
    from mivolo_lite.models import MiVOLOLiteImageProcessor
    from mivolo_lite.models.growth import resize_input
    from test_export import load_tool

    torch.manual_seed(0)
    model = MiVOLOLiteModel(tiny_config()).eval()  # 32 px, stride 8: a 4x4 grid
    with torch.no_grad():
        model.face_encoder.pos_embed.normal_()  # a grid that resampling visibly changes
    model.config.age_calibration = {"fitted_on": "the old predictions"}
    resized = resize_input(model, 48).eval()
    assert resized.config.age_calibration is None  # it described the old predictions
    model.config.age_calibration = None
    assert resized.config.image_size == 48 and resized.face_encoder.pos_embed.shape == (1, 6, 6, 32)
    old, new = model.state_dict(), resized.state_dict()
    assert all(torch.equal(old[k], new[k]) for k in old if not k.endswith("pos_embed"))
    face, body = batch(size=48)
    assert torch.allclose(model(face, body).age_logits, resized(face, body).age_logits, atol=1e-5)
    small_face, small_body = batch(size=32)
    assert not torch.allclose(model(small_face, small_body).age_logits, resized(small_face, small_body).age_logits)
    with pytest.raises(ValueError, match="multiple"):
        resize_input(model, 50)

    save_model(model, MiVOLOLiteImageProcessor(size=32, image_mean=[0.5] * 3), tmp_path / "small")
    load_tool("research/grow_model").main([str(tmp_path / "small"), "--image-size", "48", "-o", str(tmp_path / "big")])
    processor = MiVOLOLiteImageProcessor.from_pretrained(tmp_path / "big")
    assert processor.size == 48 and processor.image_mean == [0.5] * 3
    reloaded = MiVOLOLiteModel.from_pretrained(tmp_path / "big", use_safetensors=True).eval()
    assert torch.allclose(reloaded(face, body).age_logits, resized(face, body).age_logits, atol=1e-5)
    with pytest.raises(SystemExit):
        load_tool("research/grow_model").main([str(tmp_path / "small"), "-o", str(tmp_path / "none")])


def test_reported_age_is_the_distributions_median_unless_the_config_asks_for_the_mean(tiny_model):
    from mivolo_lite.models.age_distribution import distribution_median

    grid = torch.arange(0, 101, dtype=torch.float32)
    probs = torch.zeros(3, 101)
    probs[0, 30] = 1.0                       # all mass on one age: that age
    probs[1, 10], probs[1, 90] = 0.6, 0.4    # skewed: the median stays with the majority, the mean does not
    probs[2, 20:23] = torch.tensor([0.25, 0.5, 0.25])
    median = distribution_median(probs, grid)
    assert torch.allclose(median, torch.tensor([30.0, 10 - 0.5 + 0.5 / 0.6, 21.0]), atol=1e-4)
    assert (probs[1] * grid).sum() == pytest.approx(42.0)
    # continuous: moving a little mass moves the median a little, not by whole years
    nudged = probs[2].clone()
    nudged[20], nudged[22] = 0.24, 0.26
    assert 21.0 < distribution_median(nudged[None], grid).item() < 21.05

    face, body = batch()
    out = tiny_model.predict(face, body, flip_tta=False)
    assert tiny_model.config.age_estimate == "median"
    assert torch.allclose(out.age, distribution_median(out.age_probs, grid), atol=1e-5)
    tiny_model.config.age_estimate = "mean"
    mean = tiny_model.predict(face, body, flip_tta=False)
    assert torch.allclose(mean.age, (mean.age_probs * grid).sum(-1), atol=1e-4)
    assert torch.equal(mean.age_std, out.age_std)  # the spread is the distribution's, either way
    with pytest.raises(ValueError, match="age_estimate"):
        tiny_config(age_estimate="mode")


def test_the_loss_can_pull_the_median_instead_of_the_mean_onto_the_label():
    """optim.age_l1_point: the L1 terms of both label kinds measure the chosen point of the
    distribution, and the median's gradient reaches the logits through its interpolation."""
    grid = torch.arange(0, 101, dtype=torch.float32)
    probs = torch.full((2, 101), 1e-6)
    probs[:, 10], probs[:, 90] = 0.6, 0.4  # median about 10.3, mean about 42
    logits = probs.log().requires_grad_()
    low, high = torch.tensor([10.33, 5.0]), torch.tensor([10.33, 15.0])  # an exact age, an age group
    kw = dict(mean_weight=1.0, variance_weight=0.0)
    per_point = {point: age_distribution_loss(logits, grid, low, high, l1_point=point, **kw) for point in ("mean", "median")}
    # both samples sit at the median: its L1 terms vanish; the mean is 31.7 years from the age and
    # 26.5 from the group (15 + 0.5: whole years count up to the end of the last one)
    assert per_point["mean"].item() - per_point["median"].item() == pytest.approx((31.67 + 26.5) / 2, abs=0.05)
    exact_only = age_distribution_loss(logits[:1], grid, low[:1] + 20, high[:1] + 20, l1_point="median", **kw)
    exact_only.backward()
    assert torch.isfinite(logits.grad).all() and logits.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="l1_point"):
        age_distribution_loss(logits, grid, low, high, l1_point="mode")
