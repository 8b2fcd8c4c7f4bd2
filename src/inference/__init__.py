"""Using a trained model: rebuild it from its checkpoint alone, translate text, score a split."""

from src.inference.loader import CHECKPOINT_FORMAT, InferenceModel, inference_fields, load_for_inference

__all__ = ["CHECKPOINT_FORMAT", "InferenceModel", "inference_fields", "load_for_inference"]
