"""Weight averaging ("model soups"): mivolo_lite.models.soup and tools/research/average_models.py."""

import json

import pytest
import torch
from conftest import tiny_config
from test_export import load_tool
from test_model import batch

from mivolo_lite.hub import load_model_and_processor, save_model
from mivolo_lite.models import MiVOLOLiteImageProcessor, MiVOLOLiteModel
from mivolo_lite.models.soup import average_models


def sibling(seed: int, **overrides) -> MiVOLOLiteModel:
    torch.manual_seed(seed)
    model = MiVOLOLiteModel(tiny_config(**overrides)).eval()
    with torch.no_grad():  # BatchNorm statistics that differ between siblings, as after training
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.normal_()
                module.running_var.uniform_(0.5, 2.0)
                module.num_batches_tracked.fill_(seed)
    return model


def test_soup_is_the_weighted_mean_of_weights_and_batchnorm_statistics():
    a, b = sibling(0), sibling(1)
    soup = average_models([a, b], weights=[3, 1])
    state, sa, sb = soup.state_dict(), a.state_dict(), b.state_dict()
    for key, value in state.items():
        if value.is_floating_point():
            assert torch.allclose(value, 0.75 * sa[key] + 0.25 * sb[key], atol=1e-6), key
        else:
            assert torch.equal(value, sa[key]), key  # integer buffers: the first model's
    assert any(k.endswith("running_mean") for k in state)
    # the ingredients are untouched, and the soup is a model of its own that predicts
    assert not torch.equal(sa["age_head.weight"], state["age_head.weight"])
    face, body = batch()
    assert torch.isfinite(soup.predict(face, body).age).all()


def test_soup_of_copies_predicts_as_the_copy():
    a = sibling(0)
    soup = average_models([a, sibling(0)])
    face, body = batch()
    assert torch.allclose(a(face, body).age_logits, soup(face, body).age_logits, atol=1e-5)


def test_soup_drops_training_heads_and_calibration():
    a, b = sibling(0, face_embedding_dim=16), sibling(1)  # one ingredient still has its training head
    a.config.age_calibration = {"levels": [0.1]}
    soup = average_models([a, b])
    assert soup.face_embedding_head is None and soup.config.face_embedding_dim == 0
    assert soup.config.age_calibration is None
    assert a.face_embedding_head is not None and a.config.age_calibration  # ingredients unchanged


@pytest.mark.parametrize("overrides, named", [({"stage_depths": [2]}, "stage_depths"),
                                               ({"stage_heads": [4]}, "stage_heads"),  # same shapes, other model
                                               ({"image_size": 64}, "image_size")])
def test_soup_refuses_models_of_another_architecture_by_name(overrides, named):
    with pytest.raises(ValueError, match=rf"runs/b does not have runs/a's architecture.*{named}"):
        average_models([sibling(0), sibling(1, **overrides)], names=["runs/a", "runs/b"])


def test_soup_of_some_parts_keeps_the_rest_of_the_first_model():
    a, b = sibling(0), sibling(1)
    soup = average_models([a, b], only=["body_encoder", "missing_face"])
    state, sa, sb = soup.state_dict(), a.state_dict(), b.state_dict()
    averaged = [k for k in state if k.startswith("body_encoder.") or k == "missing_face"]
    assert averaged and any(k.startswith("face_encoder.") for k in state)
    for key, value in state.items():
        want = (sa[key] + sb[key]) / 2 if key in averaged and value.is_floating_point() else sa[key]
        assert torch.allclose(value, want, atol=1e-6), key
    with pytest.raises(ValueError, match="no weights named body_encoder.nothing"):
        average_models([a, b], only=["body_encoder.nothing"])
    with pytest.raises(ValueError, match="no weights named face_encoder.block "):  # a prefix is a whole name
        average_models([a, b], only=["face_encoder.block", "missing_face"])


def test_soup_refuses_one_model_and_bad_weights():
    with pytest.raises(ValueError, match="at least two"):
        average_models([sibling(0)])
    with pytest.raises(ValueError, match="weights"):
        average_models([sibling(0), sibling(1)], weights=[1, -1])
    with pytest.raises(ValueError, match="3 weights"):
        average_models([sibling(0), sibling(1)], weights=[1, 1, 1])


def test_average_models_tool_writes_a_loadable_soup_and_its_recipe(tmp_path, capsys):
    processor = MiVOLOLiteImageProcessor(size=32)
    folders = []
    for seed in (0, 1):
        folders.append(tmp_path / f"m{seed}")
        save_model(sibling(seed), processor, folders[-1])
    out = tmp_path / "soup"
    load_tool("research/average_models").main([*map(str, folders), "--weights", "1", "3", "-o", str(out)])
    assert "no age calibration yet" in capsys.readouterr().out
    soup, soup_processor = load_model_and_processor(out)
    expected = average_models([load_model_and_processor(f)[0] for f in folders], weights=[1, 3])
    face, body = batch()
    assert torch.allclose(soup(face, body).age_logits, expected(face, body).age_logits, atol=1e-5)
    assert soup_processor.size == processor.size
    recipe = json.loads((out / "soup.json").read_text())
    assert recipe == {"ingredients": [str(f) for f in folders], "weights": [0.25, 0.75]}
    # another architecture: a usage error naming the model, nothing written
    save_model(sibling(2, stage_depths=[2]), processor, tmp_path / "deeper")
    with pytest.raises(SystemExit):
        load_tool("research/average_models").main([str(folders[0]), str(tmp_path / "deeper"), "-o", str(tmp_path / "bad")])
    assert "does not have" in capsys.readouterr().err and not (tmp_path / "bad").exists()
