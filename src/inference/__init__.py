"""Using a trained model: rebuild it from its checkpoint alone, translate text, score a split."""

__all__ = ["CHECKPOINT_FORMAT", "InferenceModel", "inference_fields", "load_for_inference"]
# owned by src/training/checkpoint_format.py; offered here too, for callers that write checkpoints to load
_FORMAT_NAMES = ("CHECKPOINT_FORMAT", "inference_fields")


def __getattr__(name: str):
    # The loader imports torch: it is imported on first use of one of its names, not with the package,
    # so that `translate --help` and `generate --help` (whose arguments live in this package) stay instant.
    if name in _FORMAT_NAMES:
        from src.training import checkpoint_format

        return getattr(checkpoint_format, name)
    if name in __all__:
        from src.inference import loader

        return getattr(loader, name)
    raise AttributeError(f"module 'src.inference' has no attribute {name!r}")
