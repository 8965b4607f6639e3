"""The face-pretrained token stem ("mobilenet_v1", preset "mobile"): the converted FaceRes trunk
sees exactly the pixels it was trained on, its weights load into both branches, the trainer
fine-tunes it at its own learning rate, and the whole model exports to ONNX like ``lite``."""

import pytest
import torch
from safetensors.torch import save_file

from mivolo_lite.models import MiVOLOLiteConfig, MiVOLOLiteModel
from mivolo_lite.models.backbones import MobileNetV1TokenStem, load_pretrained_backbone
from mivolo_lite.models.image_processing_mivolo_lite import IMAGENET_MEAN, IMAGENET_STD
from mivolo_lite.models.mobilenet_v1 import FaceResDeep, caffe_preprocess
from mivolo_lite.training.config import OptimSection
from mivolo_lite.training.trainer import parameter_groups


def mobile_config(**overrides):
    kw = dict(image_size=64, stage_dims=[32], stage_heads=[2], stage_depths=[1])
    kw.update(overrides)
    return MiVOLOLiteConfig.from_preset("mobile", **kw)


@pytest.fixture(scope="module")
def faceres_file(tmp_path_factory):
    """A FaceRes checkpoint as tools/convert_faceres.py writes it (random weights)."""
    torch.manual_seed(3)
    reference = FaceResDeep().eval()
    for p in reference.parameters():  # non-trivial biases: a skipped tensor would show
        torch.nn.init.normal_(p, std=0.05)
    path = tmp_path_factory.mktemp("faceres") / "faceres_deep.safetensors"
    save_file({k: v.contiguous() for k, v in reference.state_dict().items()}, str(path))
    return reference, path


def test_the_trunk_sees_caffe_pixels_from_the_processors_normalised_input(faceres_file):
    reference, path = faceres_file
    model = MiVOLOLiteModel(mobile_config()).eval()
    load_pretrained_backbone(model, path)
    x = torch.randint(0, 256, (2, 3, 64, 64)).float()
    # what the image processor hands the model: RGB scaled to 0..1, minus the ImageNet mean, over its std
    normalised = (x / 255 - torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)) / torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    caffe = MobileNetV1TokenStem.to_caffe_pixels(normalised)
    assert torch.allclose(caffe, caffe_preprocess(x), atol=1e-3)
    with torch.no_grad():
        stem = model.face_encoder.stem
        ours = stem.trunk.stem(caffe)
        for block in stem.trunk.blocks:
            ours = block(ours)
        assert torch.allclose(ours, reference.trunk(caffe_preprocess(x))["stride32"], atol=1e-4)


def test_pretrained_weights_go_into_both_branches_and_bad_files_are_refused(faceres_file, tmp_path):
    reference, path = faceres_file
    model = MiVOLOLiteModel(mobile_config())
    loaded = load_pretrained_backbone(model, path)
    assert "stem.conv.weight" in loaded and len(loaded) == len(reference.trunk.state_dict())
    assert torch.equal(model.face_encoder.stem.trunk.blocks[12].pw.conv.weight, reference.trunk.blocks[12].pw.conv.weight)
    for branch in (model.face_encoder, model.body_encoder):
        assert torch.equal(branch.stem.trunk.blocks[10].pw.conv.weight, reference.trunk.blocks[10].pw.conv.weight)
    # a stride-16 stem takes the blocks it has and skips the stride-32 ones
    short = MiVOLOLiteModel(mobile_config(backbone_stride=16, body_backbone_stride=None))
    load_pretrained_backbone(short, path)
    assert len(short.face_encoder.stem.trunk.blocks) == 11
    assert short.face_encoder.stem(torch.zeros(1, 3, 64, 64)).shape == (1, 4, 4, 32)
    # a file without the trunk, a truncated one, and a model without a trunk
    save_file({"age.weight": torch.zeros(2, 2)}, str(tmp_path / "heads.safetensors"))
    with pytest.raises(ValueError, match="trunk"):
        load_pretrained_backbone(model, tmp_path / "heads.safetensors")
    partial = {k: v for k, v in reference.state_dict().items() if "blocks.12" not in k}
    save_file(partial, str(tmp_path / "partial.safetensors"))
    with pytest.raises(ValueError, match="lacks"):
        load_pretrained_backbone(model, tmp_path / "partial.safetensors")
    with pytest.raises(ValueError, match="no MobileNet-v1 trunk"):
        load_pretrained_backbone(MiVOLOLiteModel(MiVOLOLiteConfig.from_preset("lite")), path)


def test_token_grid_follows_the_backbone_stride_and_unknown_backbones_are_refused():
    model = MiVOLOLiteModel(mobile_config()).eval()
    assert model.config.total_stride == 32
    out = model(torch.randn(3, 3, 64, 64), torch.randn(3, 3, 64, 64),
                torch.tensor([True, False, True]), torch.tensor([False, True, True]))
    assert out.age.shape == (3,) and torch.isfinite(out.age).all()
    with pytest.raises(ValueError, match="backbone"):
        MiVOLOLiteConfig.from_preset("mobile", backbone="resnet")


def test_trunks_train_at_their_own_learning_rate_and_every_group_keeps_the_floor():
    model = MiVOLOLiteModel(mobile_config())
    optim = OptimSection(lr=1e-3, backbone_lr_scale=0.25)
    groups = parameter_groups(model, optim)
    trunk_ids = {id(p) for n, p in model.named_parameters() if ".stem.trunk." in n}
    for group in groups:
        in_trunk = {id(p) in trunk_ids for p in group["params"]}
        assert len(in_trunk) == 1  # a group is all trunk or all new layers
        assert group["lr"] == pytest.approx(2.5e-4 if in_trunk.pop() else 1e-3)
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))


def test_mobile_model_exports_to_onnx_and_matches_torch(tmp_path, faceres_file):
    ort = pytest.importorskip("onnxruntime")
    from mivolo_lite.export import export_onnx

    torch.manual_seed(0)
    model = MiVOLOLiteModel(mobile_config()).eval()
    load_pretrained_backbone(model, faceres_file[1])
    path = export_onnx(model, tmp_path / "mobile.onnx")
    face, body = torch.randn(3, 3, 64, 64), torch.randn(3, 3, 64, 64)
    fm, bm = torch.tensor([True, True, False]), torch.tensor([False, True, True])
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    probs, _ = session.run(None, {"face_pixel_values": face.numpy(), "face_mask": fm.numpy(),
                                  "body_pixel_values": body.numpy(), "body_mask": bm.numpy()})
    with torch.no_grad():
        expected = model(face, body, fm, bm).age_probs
    assert torch.allclose(torch.from_numpy(probs), expected, atol=1e-4)


def test_same_padding_matches_tensorflow_for_odd_and_even_sizes():
    from mivolo_lite.models.mobilenet_v1 import SamePadConv

    torch.manual_seed(1)
    for kernel, stride, size in [(3, 1, 9), (3, 1, 10), (3, 2, 10), (3, 2, 11), (1, 1, 7), (3, 2, 160)]:
        conv = SamePadConv(4, 4, kernel, stride=stride).eval()
        x = torch.randn(2, 4, size, size)
        # TensorFlow's SAME: output ceil(size / stride), the odd pixel of padding at the bottom/right
        out = -(-size // stride)
        pad = max((out - 1) * stride + kernel - size, 0)
        want = torch.nn.functional.conv2d(torch.nn.functional.pad(x, (pad // 2, pad - pad // 2) * 2), conv.weight,
                                          conv.bias, stride)
        with torch.no_grad():
            assert torch.allclose(conv(x), want, atol=1e-6), (kernel, stride, size)


def test_the_exported_trunk_pads_inside_its_convolutions(tmp_path, faceres_file):
    """Padding computed at run time (traced sizes), or a Pad onnxruntime cannot fold into the next
    Conv, cost the shipped model a third of its CPU time: none may survive onnxruntime's basic
    optimisation."""
    ort = pytest.importorskip("onnxruntime")
    onnx = pytest.importorskip("onnx")
    from mivolo_lite.export import export_onnx

    model = MiVOLOLiteModel(mobile_config()).eval()
    path = export_onnx(model, tmp_path / "mobile.onnx")
    assert any(node.op_type == "Pad" for node in onnx.load(str(path)).graph.node)  # the stride-2 convs' odd pixel
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    options.optimized_model_filepath = str(tmp_path / "optimised.onnx")
    ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])
    optimised = [node.op_type for node in onnx.load(options.optimized_model_filepath).graph.node]
    assert "Conv" in optimised and "Pad" not in optimised


def test_the_body_branch_can_read_the_stride16_map_pooled_to_the_same_grid(faceres_file):
    """The face trunk's last block is nearly silent on bodies; preset mobile's body branch reads
    block 11's stride-16 map, average-pooled to the face branch's grid."""
    reference, path = faceres_file
    model = MiVOLOLiteModel(mobile_config()).eval()
    assert model.config.body_backbone_stride == 16
    load_pretrained_backbone(model, path)
    body = model.body_encoder.stem
    assert len(body.trunk.blocks) == 11 and len(model.face_encoder.stem.trunk.blocks) == 13
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert body(x).shape == model.face_encoder.stem(x).shape == (2, 2, 2, 32)
        caffe = MobileNetV1TokenStem.to_caffe_pixels(x)
        expected = torch.nn.functional.avg_pool2d(reference.trunk(caffe)["stride16"], 2)
        assert torch.allclose(body(x), body.norm(body.proj(expected).permute(0, 2, 3, 1)), atol=1e-4)
