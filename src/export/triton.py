"""A Triton Inference Server model repository beside the exported graphs, for users with a GPU server.

Layout (one Triton model per graph; Triton cannot run here, ``tests/export`` checks the files
against the graphs)::

    <export>/triton/
        encoder/                  (translation: encoder + decoder_step; else the family's one graph)
            config.pbtxt
            1/model.onnx          version 1: the graph (a hard link to <export>/encoder.onnx where possible)
        decoder_step/
            config.pbtxt
            1/model.onnx

Each ``config.pbtxt`` declares ``platform: "onnxruntime_onnx"``, ``max_batch_size`` and every
input and output with its data type and dims. With ``max_batch_size > 0`` Triton adds the batch
axis itself, so ``dims`` leave out the first (batch) axis of every tensor (all graphs here are
batch first) and give -1 for each other dynamic axis. Serve with::

    docker run --gpus all -p 8000:8000 -v $PWD/runs/<run>/export/triton:/models \\
        nvcr.io/nvidia/tritonserver:<yy.mm>-py3 tritonserver --model-repository=/models

Translation with Triton takes a client-side loop (call ``encoder`` once, then ``decoder_step``
per token, feeding each ``present_key_i`` / ``present_value_i`` back as ``past_key_i`` / ``past_value_i``),
which is what
``src/inference/onnx_backend.py`` does with ONNX Runtime.
"""

import os
import shutil
from pathlib import Path
from typing import Any

MAX_BATCH_SIZE = 64
TRITON_DTYPES = {"int64": "TYPE_INT64", "int32": "TYPE_INT32", "float32": "TYPE_FP32", "float16": "TYPE_FP16",
                 "bool": "TYPE_BOOL"}


def write_triton_repository(export_dir: Path, manifest: dict[str, Any],
                            max_batch_size: int = MAX_BATCH_SIZE) -> Path:
    """``<export_dir>/triton/<graph>/{config.pbtxt,1/model.onnx}`` for every graph of ``manifest``; return
    the root."""
    root = export_dir / "triton"
    for name, graph in manifest["graphs"].items():
        version = root / name / "1"
        version.mkdir(parents=True, exist_ok=True)
        target = version / "model.onnx"
        target.unlink(missing_ok=True)
        try:
            os.link(export_dir / graph["file"], target)
        except OSError:  # another file system, or links not allowed
            shutil.copyfile(export_dir / graph["file"], target)
        (root / name / "config.pbtxt").write_text(model_config(name, graph, max_batch_size), encoding="utf-8")
    return root


def model_config(name: str, graph: dict[str, Any], max_batch_size: int) -> str:
    """The ``config.pbtxt`` text of one graph (its inputs and outputs as ``describe_graph`` lists them)."""
    lines = [f'name: "{name}"', 'platform: "onnxruntime_onnx"', f"max_batch_size: {max_batch_size}"]
    for side in ("input", "output"):
        entries = [_tensor_entry(tensor, spec) for tensor, spec in graph[f"{side}s"].items()]
        lines.append(f"{side} [\n" + ",\n".join(entries) + "\n]")
    return "\n".join(lines) + "\n"


def _tensor_entry(name: str, spec: dict[str, Any]) -> str:
    if spec["dtype"] not in TRITON_DTYPES:
        raise ValueError(f"tensor {name}: dtype {spec['dtype']} has no Triton type here (expected one of "
                         f"{sorted(TRITON_DTYPES)})")
    dims = ", ".join(str(d) if isinstance(d, int) else "-1" for d in spec["shape"][1:])  # batch axis implicit
    return (f'  {{\n    name: "{name}"\n    data_type: {TRITON_DTYPES[spec["dtype"]]}\n'
            f"    dims: [ {dims} ]\n  }}")
