"""A FastAPI inference server over trained models: a clearml-serving-shaped predictor, micro-batching,
limits."""
