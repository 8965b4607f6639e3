"""Averaging the weights of several trained models into one ("model soup", Wortsman et al. 2022,
arXiv 2203.05482).

Models fine-tuned from one parent stay in one basin of the loss, where the average of their
weights is usually at least as good as the best of them, and often better, at no cost at run
time (one model, not an ensemble). Models trained from different starting points are not in one
basin: their average is meaningless, and nothing here can tell; average siblings only.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch

from .modeling_mivolo_lite import MiVOLOLiteModel

# Config entries that do not change what the weights mean: they may differ between ingredients.
# The soup takes the first model's. A calibration table belongs to the model it was fitted on and
# is dropped instead (see average_models).
_NOT_ARCHITECTURE = {"age_calibration", "age_estimate", "face_embedding_dim", "drop_path_rate", "drop_rate",
                     "transformers_version", "_name_or_path", "dtype"}


def _architecture(model: MiVOLOLiteModel) -> dict:
    return {k: v for k, v in model.config.to_dict().items() if k not in _NOT_ARCHITECTURE}


def average_models(models: Sequence[MiVOLOLiteModel], weights: Sequence[float] | None = None,
                   names: Sequence[str] | None = None, only: Sequence[str] | None = None) -> MiVOLOLiteModel:
    """A new model whose floating-point weights and buffers (BatchNorm statistics too) are the
    weighted mean of ``models``' (uniform by default); integer buffers are the first model's.

    ``only``: names (prefixes of state-dict keys, e.g. ``"body_encoder.blocks"``) of the parts to
    average; every other tensor is the first model's. For siblings that retrained one part alone:
    averaging the others would mix in what they kept of an older parent.

    Training-only heads are left out (a soup is for inference) and so is any age calibration:
    fit a new one on the soup (``mivolo-lite calibrate``). Raises ``ValueError`` naming the model
    (``names``, else its position) that does not share the first one's architecture."""
    if len(models) < 2:
        raise ValueError(f"a soup needs at least two models, got {len(models)}")
    names = list(names) if names is not None else [f"model {i}" for i in range(len(models))]
    weights = [1.0] * len(models) if weights is None else [float(w) for w in weights]
    if len(weights) != len(models) or len(names) != len(models):
        raise ValueError(f"{len(models)} models but {len(weights)} weights and {len(names)} names")
    if min(weights) < 0 or sum(weights) <= 0:
        raise ValueError(f"weights must be >= 0 with a positive sum, got {weights}")

    ingredients = [copy.deepcopy(m).drop_training_heads() for m in models]
    states = [m.state_dict() for m in ingredients]
    reference, reference_state = _architecture(ingredients[0]), states[0]
    for name, model, state in zip(names[1:], ingredients[1:], states[1:]):
        architecture = _architecture(model)
        differs = sorted(k for k in reference.keys() | architecture.keys() if reference.get(k) != architecture.get(k))
        if not differs and state.keys() != reference_state.keys():
            differs = ["weights"]
        if not differs:
            differs = [k for k in state if state[k].shape != reference_state[k].shape]
        if differs:
            raise ValueError(f"{name} does not have {names[0]}'s architecture (differs in: {', '.join(differs[:5])})")

    if only is not None:
        unmatched = [prefix for prefix in only if not any(_under(key, prefix) for key in reference_state)]
        if unmatched or not only:
            raise ValueError(f"only: no weights named {', '.join(unmatched) or '(nothing given)'} in {names[0]}")
    total = sum(weights)
    averaged = {}
    for key, first in states[0].items():
        if first.is_floating_point() and (only is None or any(_under(key, prefix) for prefix in only)):
            averaged[key] = sum(w / total * s[key].double() for w, s in zip(weights, states)).to(first.dtype)
        else:
            averaged[key] = first
    soup = ingredients[0]
    soup.load_state_dict(averaged)
    soup.config.age_calibration = None
    return soup.eval()


def _under(key: str, prefix: str) -> bool:
    """``key`` is the tensor ``prefix`` or inside the module ``prefix`` (``blocks.1`` is not under ``blocks.10``)."""
    return key == prefix or key.startswith(prefix + ".")
