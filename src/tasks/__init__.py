"""One small module per task: what the shared training loop needs to know about it.

Each task gives the loop its batches (``lengths``, ``batch``), its loss (``targets``, ``tokens``,
``loss``), its validation metrics (``validate``, whose ``loss`` picks the best checkpoint), the
attention ``probe`` drawn during training, the ``model_sizes`` the model builder needs, and the
``gate_metric`` the register step promotes on. Translation: ``translation.py``.
"""
