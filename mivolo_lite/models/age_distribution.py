"""Reading one age off a predicted distribution over integer ages."""

from __future__ import annotations

import torch


def distribution_median(probs: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """Median of distributions ``probs`` (..., K) over the integer ages ``grid`` (K,), each age
    read as a bin one year wide centred on it, interpolated inside the bin where the cumulative
    mass crosses 1/2: continuous in the probabilities (a rounded median would jump by whole years)
    and built from ops that export to ONNX (cumsum, comparison, gather)."""
    cum = probs.cumsum(-1)
    last = probs.shape[-1] - 1
    index = (cum < 0.5).sum(-1, keepdim=True).clamp(max=last)  # first bin whose cumulative mass reaches 1/2
    mass = probs.gather(-1, index)
    below = cum.gather(-1, index) - mass
    inside = ((0.5 - below) / mass.clamp_min(1e-12)).clamp(0.0, 1.0)
    return (grid[index.squeeze(-1)] - 0.5 + inside.squeeze(-1)).clamp(grid[0], grid[-1])
