"""Tuning: the hyperparameter search (``python -m src.main sweep``) and the tracking-overhead tool
(``python -m src.tuning.overhead``)."""
