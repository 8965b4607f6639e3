"""Training with accelerate: one script for CPU, one GPU, many GPUs or machines."""

from .config import TrainConfig, load_config

__all__ = ["TrainConfig", "load_config"]
