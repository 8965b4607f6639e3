"""Metrics, batch inference over annotation records, reports and plots."""

from .metrics import age_metrics, gender_accuracy, summarize_predictions
from .inference import Predictions, predict_dataset

__all__ = ["age_metrics", "gender_accuracy", "summarize_predictions", "Predictions", "predict_dataset"]
