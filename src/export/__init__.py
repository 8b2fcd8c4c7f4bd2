"""ONNX export of trained models (dynamo exporter) and a Triton model repository.

- ``graphs.py``: exportable wrappers, the key/value caches as stacked batch-first tensors;
- ``exporter.py``: ``export_checkpoint`` (graphs, ``export.json`` manifest, config and tokenizers);
- ``triton.py``: ``triton/<graph>/{config.pbtxt,1/model.onnx}``;
- ``cli.py``: ``python -m src.main export RUN_OR_CHECKPOINT [--out DIR]``;
- ``bench.py``: ``python -m src.export.bench``, greedy decoding on ONNX Runtime against PyTorch eager.

The ONNX Runtime backend that runs the graphs is ``src/inference/onnx_backend.py``
(``load_for_inference(path, backend="onnx")``): serving needs onnxruntime, not the exporter.
"""
