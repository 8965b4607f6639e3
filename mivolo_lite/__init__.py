"""mivolo_lite: age and gender of every person in a photo (MiVOLO-style face + body transformer).

Heavy parts (ultralytics, gradio) load lazily: ``import mivolo_lite`` stays light.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_LAZY = {
    "MiVOLOLiteConfig": "mivolo_lite.models",
    "MiVOLOLiteModel": "mivolo_lite.models",
    "MiVOLOLiteImageProcessor": "mivolo_lite.models",
    "AgePredictor": "mivolo_lite.predictor",
    "ImageResult": "mivolo_lite.results",
    "PersonResult": "mivolo_lite.results",
    "ImageLoadError": "mivolo_lite._image_io",
    "InvalidBoxesError": "mivolo_lite.detection.boxes",
    "load_image": "mivolo_lite._image_io",
}

__all__ = sorted(_LAZY) + ["__version__"]


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'mivolo_lite' has no attribute {name!r}")


def __dir__():
    return __all__
