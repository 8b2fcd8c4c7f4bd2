"""``export --quantize int8``: the exported graphs with int8 linear layers, beside the float32 ones.

ONNX Runtime's dynamic quantization (``onnxruntime.quantization.quantize_dynamic``) rewrites every
MatMul and Gemm whose weight is a constant (the linear layers: attention projections, feed-forward,
classifier heads, the LM's output projection) as int8 weights, one symmetric scale per tensor
(``QInt8``), and an activation quantized to uint8 at run time (``DynamicQuantizeLinear``, a scale per
call). The products of activations with activations (attention scores) and everything else stay
float32. The quantized graph of ``<graph>.onnx`` is ``<graph>.int8.onnx`` in the same folder; the
manifest records it under ``quantized.int8`` and the loader picks it with ``backend="onnx-int8"``.

int8 cannot meet the float32 export's 1e-4 (``parity.check_export``): a weight is rounded to 1/254 of
its tensor's largest magnitude and an activation to 1/255 of its range. ``check_int8`` therefore runs
the same cases against PyTorch and measures what quantization costs instead: the largest |difference|
relative to the largest |logit| of the case, and how often the top logit is the same one. The export is
refused (the int8 graphs removed, the float32 export kept) when a case is not finite or its relative
difference exceeds ``INT8_MAX_RELATIVE_DIFF``; the figures go into ``export.json`` either way.
"""

import logging
import time
from pathlib import Path
from typing import Any

from loguru import logger

from src.export import ExportError

QUANTIZATIONS = ("int8",)
LINEAR_OPS = ("MatMul", "Gemm")
# Refuse int8 logits further than this from PyTorch's, relative to the case's largest |logit|. Per-tensor
# rounding errs by about 1/254 + 1/255 of a layer's ranges, and that compounds over the layers; the
# models here measured 0.2-4 % (the export section of the README); 15 % is a broken graph, not rounding.
INT8_MAX_RELATIVE_DIFF = 0.15


class QuantizationError(ExportError):
    """The int8 graphs give answers too far from PyTorch's; the message gives the figures."""


def quantize_export(trained: Any, out: Path, graphs: dict[str, Any]) -> dict[str, Any]:
    """Write ``<graph>.int8.onnx`` for every float32 graph in ``out``, check them against PyTorch; the
    manifest's ``quantized.int8`` record.

    Raises:
        QuantizationError: the int8 graphs differ beyond ``INT8_MAX_RELATIVE_DIFF`` (they are removed).
    """
    import onnxruntime
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.quantization.shape_inference import quant_pre_process

    started = time.perf_counter()
    quantized = {}
    for name, graph in graphs.items():
        target, folded = out / f"{name}.int8.onnx", out / f"{name}.folded.onnx"
        # ORT's basic optimisations first (constant folding): a tied output projection reaches its MatMul
        # through a Transpose of the embedding, a weight the quantizer sees only once folded into a constant.
        # The symbolic shape inference of the pre-processing is skipped: the axes are named already.
        # The quantizer logs advice on the root logger at every call; silenced.
        logging.disable(logging.WARNING)
        try:
            quant_pre_process(out / graph["file"], folded, skip_symbolic_shape=True)
            quantize_dynamic(folded, target, weight_type=QuantType.QInt8,
                             op_types_to_quantize=list(LINEAR_OPS))
        finally:
            logging.disable(logging.NOTSET)
            folded.unlink(missing_ok=True)
        quantized[name] = {**graph, "file": target.name,
                           "linear_weights": linear_weight_bytes(target)}
    logger.info("export: int8 graphs written in {:.1f} s", time.perf_counter() - started)
    checked = check_int8(trained, out, quantized)
    if not checked["ok"]:
        for graph in quantized.values():
            (out / graph["file"]).unlink(missing_ok=True)
        raise QuantizationError(f"the int8 graphs are refused: {checked['failure']}; the float32 export in "
                                f"{out} stands (use --backend onnx)")
    del checked["ok"], checked["failure"]
    return {"method": "onnxruntime.quantization.quantize_dynamic", "weight_type": "QInt8",
            "activations": "uint8, scale per call (DynamicQuantizeLinear)", "op_types": list(LINEAR_OPS),
            "onnxruntime": onnxruntime.__version__, "graphs": quantized, "checked": checked}


def linear_weight_bytes(int8_path: Path) -> dict[str, int]:
    """How many weights the int8 graph holds quantized, and their bytes as float32 and as int8 with their
    scales and zero points (the quantizer names them ``W_quantized``, ``W_scale``, ``W_zero_point``)."""
    import onnx
    from onnx import numpy_helper

    arrays = {t.name: numpy_helper.to_array(t) for t in onnx.load(str(int8_path)).graph.initializer}
    quantized = [name.removesuffix("_quantized") for name in arrays if name.endswith("_quantized")]
    return {"quantized": len(quantized),
            "fp32_bytes": sum(4 * arrays[f"{w}_quantized"].size for w in quantized),
            "int8_bytes": sum(arrays[f"{w}{part}"].nbytes for w in quantized
                              for part in ("_quantized", "_scale", "_zero_point"))}


def check_int8(trained: Any, out: Path, quantized: dict[str, Any]) -> dict[str, Any]:
    """The exporter's check cases (``parity.check_cases``) on the int8 graphs against PyTorch.

    Returns:
        ``{"cases", "max_abs_diff", "max_rel_diff", "allowed_rel_diff", "argmax_agreement", "ok",
        "failure"}``: the relative difference is |int8 - PyTorch| over the case's largest |PyTorch
        logit|; the agreement, the share of positions whose top logit is the same class or token.
    """
    import torch

    from src.export.parity import check_cases
    from src.inference.onnx_backend import load_onnx_model

    model = load_onnx_model(out, {"family": trained.family, "graphs": quantized},
                            trained.special_ids["pad"], trained.config.model.max_positions)
    names, worst, worst_rel, same, total = [], 0.0, 0.0, 0, 0
    with torch.no_grad():
        for name, run_torch, run_int8 in check_cases(trained, model):
            expected, actual = run_torch(), run_int8()
            names.append(name)
            if not torch.isfinite(actual).all():
                return {"cases": names, "ok": False,
                        "failure": f"{name}: ONNX Runtime gives non-finite int8 outputs"}
            diff = float((expected - actual).abs().max())
            rel = diff / max(float(expected.abs().max()), 1e-12)
            worst, worst_rel = max(worst, diff), max(worst_rel, rel)
            same += int((expected.argmax(-1) == actual.argmax(-1)).sum())
            total += expected.argmax(-1).numel()
    record = {"cases": names, "max_abs_diff": worst, "max_rel_diff": worst_rel,
              "allowed_rel_diff": INT8_MAX_RELATIVE_DIFF, "argmax_agreement": same / total, "ok": True,
              "failure": None}
    logger.info("export check (int8): {} case(s) against PyTorch, largest |difference| {:.3g} ({:.2%} of the "
                "largest |logit|), top-1 agreement {:.2%}", len(names), worst, worst_rel, same / total)
    if worst_rel > INT8_MAX_RELATIVE_DIFF:
        record |= {"ok": False, "failure": (f"largest |int8 - PyTorch| is {worst_rel:.1%} of the largest "
                                            f"|logit| (allowed {INT8_MAX_RELATIVE_DIFF:.0%})")}
    return record
