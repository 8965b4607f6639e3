"""The configs in configs/ are the presets and the recipe that reproduces the shipped model's last
step; each must load (unknown keys are refused) and say in its header how to run it."""

import pytest

from conftest import REPO
from mivolo_lite.models import PRESETS
from mivolo_lite.training import load_config

CONFIGS = sorted((REPO / "configs").glob("*.yaml"))


def test_superseded_stages_live_in_git_history_not_in_configs():
    names = [path.name for path in CONFIGS]
    assert {"lite.yaml", "d1.yaml", "lite_finetune_body.yaml"} <= set(names)
    assert not [name for name in names if "stage" in name], "stage configs belong in docs/training.md's lineage"


@pytest.mark.parametrize("path", CONFIGS, ids=lambda path: path.name)
def test_config_loads_and_shows_its_command(path):
    cfg = load_config(path)
    assert cfg.model.preset in PRESETS or cfg.model.init_from
    assert f"tools/train.py --config configs/{path.name}" in path.read_text()


def test_body_refit_recipe_trains_the_body_branch_alone():
    cfg = load_config(REPO / "configs" / "lite_finetune_body.yaml")
    assert cfg.optim.train_only == ["body_encoder", "missing_face"]
    assert cfg.data.sets == ["aaf", "peta"] and cfg.model.init_from == "runs/soup34_37"
