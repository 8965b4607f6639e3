import os
from pathlib import Path

import numpy as np
import pytest
import torch

os.environ.setdefault("YOLO_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
torch.set_num_threads(2)

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("MIVOLO_DATA", REPO.parent / "shared" / "data"))


def tiny_config(**overrides):
    from mivolo_lite.models import MiVOLOLiteConfig

    kw = dict(image_size=32, stem_channels=[8, 16], stem_strides=[2, 2], patch_size=2, stage_dims=[32],
              stage_heads=[2], stage_depths=[1], branch_depth=1, max_age=100)
    kw.update(overrides)
    return MiVOLOLiteConfig.from_preset("lite", **kw)


@pytest.fixture
def tiny_model():
    from mivolo_lite.models import MiVOLOLiteModel

    torch.manual_seed(0)
    return MiVOLOLiteModel(tiny_config()).eval()


@pytest.fixture(scope="session")
def assets():
    from ultralytics.utils import ASSETS

    return Path(ASSETS)


@pytest.fixture(scope="session")
def data_root():
    if not (DATA / "utkface" / "labels.csv").exists():
        pytest.skip(f"research data not found at {DATA}")
    return DATA


@pytest.fixture(scope="session")
def annotations(data_root, tmp_path_factory):
    """Annotation CSVs of the three sets with the fixed split (paths + labels, no images copied)."""
    from mivolo_lite.data.converters import convert_all

    out = tmp_path_factory.mktemp("annotations")
    convert_all(data_root, out)
    return out


@pytest.fixture(scope="session")
def predictor():
    from mivolo_lite import AgePredictor

    return AgePredictor.from_pretrained()


def write_clip(path, frames: int, size=(640, 360), shift: int = 3, fourcc: str = "mp4v") -> Path:
    """A short video made from ultralytics' zidane.jpg, shifted ``shift`` pixels right per frame
    (people moving a little), at 10 fps."""
    import cv2
    from ultralytics.utils import ASSETS

    image = cv2.resize(cv2.imread(str(Path(ASSETS) / "zidane.jpg")), size)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), 10, size)
    for i in range(frames):
        writer.write(np.roll(image, shift * i, axis=1))
    writer.release()
    return Path(path)


def random_image(h=120, w=90, seed=0):
    return np.random.default_rng(seed).integers(0, 255, (h, w, 3), dtype=np.uint8)
