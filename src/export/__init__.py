"""ONNX export of trained models (dynamo exporter) and a Triton model repository.

- ``graphs.py``: exportable wrappers, the key/value caches as one batch-first tensor per layer and side;
- ``exporter.py``: ``export_checkpoint`` (graphs, ``export.json`` manifest, config and tokenizers);
- ``fusion.py``: the exported attention rewritten into ONNX Runtime's fused ``MultiHeadAttention``;
- ``triton.py``: ``triton/<graph>/{config.pbtxt,1/model.onnx}``;
- ``quantize.py``: ``--quantize int8``, the graphs with int8 linear layers beside the float32 ones;
- ``cli.py``: ``python -m src.main export RUN_OR_CHECKPOINT [--out DIR] [--quantize int8]``;
- ``bench.py``: ``python -m src.export.bench``, greedy decoding (translation) or generation (language model)
  on ONNX Runtime against PyTorch eager;
- ``bench_int8.py``: ``python -m src.export.bench_int8``, int8 against float32 ONNX Runtime, speed, quality.

The ONNX Runtime backend that runs the graphs is ``src/inference/onnx_backend.py``
(``load_for_inference(path, backend="onnx")``): serving needs onnxruntime, not the exporter.
"""


class ExportError(ValueError):
    """The model cannot be exported as asked; the message names the reason. Here, below the modules that
    raise it (the exporter and the quantizer, which the exporter calls)."""
