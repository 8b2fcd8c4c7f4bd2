"""ONNX export of trained models (dynamo exporter), an ONNX Runtime backend and a Triton model repository."""
