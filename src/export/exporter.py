"""``export_checkpoint``: a checkpoint's model as ONNX graphs with dynamic axes, plus a manifest and a
Triton repository.

Uses the dynamo exporter (``torch.onnx.export(..., dynamo=True)``, via ``torch.export``): the legacy
TorchScript exporter bakes the example's shapes into the attention layers' reshapes. Each graph is
traced with example sizes of 2 or more on every dynamic axis, because ``torch.export`` specialises
an axis whose example size is 0 or 1; afterwards every axis declared dynamic is checked to have
stayed symbolic in the saved graph, so a model whose code fixes a length (a Python loop over time)
is refused instead of exported with a silent limit, and so is one whose axis range the trace
narrowed (``narrowed_axes``). Then the graphs run against the PyTorch model on inputs they were not
traced at, padded rows and mixed lengths included (``check_graphs``, ``parity.check_export``); a
graph that differs is deleted and the export refused with the failing case, before ``export.json``
(which the loader requires, with that check's record) is written.

The export folder is usable alone (``src/inference/onnx_backend.py`` runs it without the checkpoint;
``load_for_inference(folder, backend="onnx")``):

    export.json              family, graphs with input/output names, dtypes and symbolic shapes,
                             opset, the checkpoint's path, step and SHA-256, special ids, labels, image stats,
                             the check against PyTorch it passed ("checked": cases, largest difference)
    config.json              the experiment config the model was trained with
    tokenizer_<side>.json    the tokenizers (``tokenizers.Tokenizer`` files)
    <graph>.onnx             encoder.onnx + decoder_step.onnx (translation), decoder_lm.onnx,
    classifier.onnx, vit.onnx triton/                  a Triton model repository over the same graphs
    (``src/export/triton.py``)
    <graph>.int8.onnx        with ``--quantize int8``: int8 linear layers (``src/export/quantize.py``),
                             listed under "quantized" in export.json with their own check against PyTorch

Key/value caches, one (B, H, T, D/H) tensor per decoder layer and side: ``past_key_i``, ``past_value_i``
(``src/export/graphs.py``). The decoder-step graphs' attention is rewritten into ONNX Runtime's fused
``com.microsoft.MultiHeadAttention`` (``src/export/fusion.py``; the manifest counts the nodes under
``fused_attention``) before the check against PyTorch; ONNX Runtime's own graph optimisations run when a
session loads them (``src/inference/onnx_backend.py``).
"""

import json
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from loguru import logger
from torch import Tensor, nn

from src.export import ExportError
from src.export.fusion import fuse_attention
from src.export.graphs import DecoderLMGraph, DecoderStepGraph, EncoderGraph, LogitsGraph, kv_names
from src.inference.loader import InferenceModel, default_export_dir, file_sha256
from src.inference.onnx_backend import MANIFEST, MANIFEST_FORMAT
from src.storage import ensure_writable, raise_if_disk_full
# every dynamic axis traced at >= 2 (see module docstring)
EXAMPLE_BATCH, EXAMPLE_LENGTH, EXAMPLE_PAST = 3, 5, 2
# Opset 23 has the ONNX Attention operator: the exporter writes scaled_dot_product_attention as one node,
# which src/export/fusion.py rewrites into ORT's fused MultiHeadAttention, instead of MatMul/Softmax with a
# Reshape-Transpose-Reshape copy of every key tensor (past and cross) at every decoding step (issue 30).
# ORT (1.23 to 1.32 at least) runs an unfused opset-23 Attention only where the mask has one row per query:
# it refuses a padding mask (B, 1, 1, S) broadcast over several queries ("inconsistent q_sequence_length"),
# which every encoder and classifier passes. So a graph over whole sequences whose attention the rewrite
# does not take entirely (rotary positions between the projection and attention, a banded mask) is
# exported again at FALLBACK_OPSET, decomposed as before; a decoding step has one query, so its unfused
# Attention runs.
DEFAULT_OPSET, FALLBACK_OPSET = 23, 20


MLM_REFUSAL = ("an encoder_mlm is a pretrained encoder, not a model to deploy: it predicts masked tokens "
               "only; fine-tune a classifier from it (model.init_from=RUN) and export that")
RECURRENT_REFUSAL = (
    "{family} does not export to ONNX with a dynamic length: src/components/recurrent.py runs the "
    "recurrence as a Python loop over the time steps (torch.export unrolls it to the example's length) and "
    "checks the padding mask with torch.equal, a data-dependent branch torch.export cannot trace "
    "(DataDependentOutputException on aten.equal, tried with torch 2.13); serve this model with "
    "--backend torch"
)


@dataclass(frozen=True)
class GraphSpec:
    """One graph to export: the wrapper, example inputs, names and the dynamic axes of each input."""

    name: str
    module: nn.Module
    inputs: tuple[Tensor, ...]
    input_names: tuple[str, ...]
    output_names: tuple[str, ...]
    dynamic: dict[str, dict[int, Any]]  # input name -> {axis: torch.export.Dim}
    opset: int = DEFAULT_OPSET
    # exported again at this opset if attention is left unfused (see FALLBACK_OPSET); None: never
    fallback_opset: int | None = FALLBACK_OPSET


def export_checkpoint(checkpoint: str | Path, out_dir: str | Path | None = None,
                      quantize: str | None = None) -> Path:
    """Export ``checkpoint`` to ``out_dir``; return the folder.

    Args:
        checkpoint: a self-contained training checkpoint (``best.pt`` or a numbered one).
        out_dir: the export folder; default ``<run>/export``, or ``<checkpoint>.export`` beside a loose file.
        quantize: "int8": also ``<graph>.int8.onnx`` beside each float32 graph (``src/export/quantize.py``),
            recorded in the manifest's ``quantized``; the float32 export is written and checked first.

    Raises:
        ExportError: the family or its attention pattern does not export with dynamic axes, or (a
            ``QuantizationError``) its int8 graphs are too far from PyTorch; the float32 export then stands.
        CheckpointError: ``checkpoint`` is not a self-contained training checkpoint.
    """
    from src.export.quantize import QUANTIZATIONS
    from src.export.triton import write_triton_repository
    from src.inference.loader import load_for_inference

    if quantize not in (None, *QUANTIZATIONS):
        raise ExportError(f"quantize must be one of {QUANTIZATIONS} or None, got {quantize!r}")
    checkpoint = Path(checkpoint)
    out = Path(out_dir) if out_dir is not None else default_export_dir(checkpoint)
    trained = load_for_inference(checkpoint, "cpu")
    specs = graph_specs(trained)
    ensure_writable(out, "export folder")  # read-only or full: say so before tracing anything
    # until every graph is written, the folder is no export of anything
    (out / MANIFEST).unlink(missing_ok=True)
    graphs = {}
    for spec in specs:
        started = time.perf_counter()
        logger.info("export: {} graph {}.onnx ...", trained.family, spec.name)
        graphs[spec.name] = export_graph(spec, out / f"{spec.name}.onnx", trained.config.model.attention)
        logger.info("export: {}.onnx written in {:.1f} s", spec.name, time.perf_counter() - started)
    checked = check_graphs(trained, graphs, out)
    manifest = write_manifest(trained, graphs, out, file_sha256(checkpoint), checked)
    write_triton_repository(out, manifest)  # the float32 graphs: the export Triton serves
    if quantize is not None:
        from src.export.quantize import quantize_export

        manifest["quantized"] = {quantize: quantize_export(trained, out, graphs)}
        (out / MANIFEST).write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    logger.info("export: {} graph(s), manifest and Triton repository in {}", len(graphs), out)
    return out


def check_graphs(trained: InferenceModel, graphs: dict[str, Any], out: Path) -> dict[str, Any]:
    """Run the written graphs against PyTorch (``parity.check_export``); refuse them, removed, if they differ.

    Raises:
        ExportError: naming the failing case and the difference.
    """
    from src.export.parity import check_export
    from src.inference.onnx_backend import load_onnx_model

    started = time.perf_counter()
    onnx_model = load_onnx_model(out, {"family": trained.family, "graphs": graphs},
                                 trained.special_ids["pad"],
                                 trained.config.model.max_positions)
    result = check_export(trained, onnx_model)
    if not result["ok"]:
        for graph in graphs.values():
            (out / graph["file"]).unlink(missing_ok=True)  # a graph that gives other answers is no export
        attention = trained.config.model.attention
        hint = f" (model.attention={attention!r})" if attention != "full" else ""
        raise ExportError(f"the exported graphs do not match PyTorch{hint}, so the export is refused: "
                          f"{result['failure']}; serve this model with --backend torch")
    logger.info("export: checked against PyTorch in {:.1f} s", time.perf_counter() - started)
    return {"cases": result["cases"], "max_abs_diff": result["max_abs_diff"]}


def graph_specs(trained: InferenceModel) -> list[GraphSpec]:
    """The graphs of ``trained.family``, with example inputs and dynamic axes."""
    family, model, cfg = trained.family, trained.model, trained.config.model
    if family == "encoder_mlm":
        raise ExportError(MLM_REFUSAL)
    if family in ("lstm_classifier", "gru_classifier", "rnn_classifier"):
        raise ExportError(RECURRENT_REFUSAL.format(family=family))
    modern = [f"{key}={value!r}" for key, value in (("positional_encoding", cfg.positional_encoding),
                                                     ("n_kv_heads", cfg.n_kv_heads))
              if value not in (None, "sinusoidal", "learned")]
    if modern and family == "decoder_lm":
        raise ExportError(f"a decoder LM with {', '.join(modern)} is not exported to ONNX yet: its step "
                          "graph carries one full-width key/value head per query head and positions added to "
                          "the embeddings; use it with PyTorch (serve --backend torch, generate)")
    Dim = torch.export.Dim
    batch, length = Dim("batch"), Dim("length", max=cfg.max_positions)
    past_length = Dim("past_length", max=cfg.max_positions - 1)
    example = _example_tokens(trained)
    if family == "encoder_decoder":
        with torch.no_grad():
            src_mask, *cross = EncoderGraph(model)(example)
        n_layers = len(model.decoder.layers)
        # (B, H, T, D/H) per layer
        past = [torch.zeros(*t.shape[:2], EXAMPLE_PAST, t.shape[3]) for t in cross]
        step = torch.full((EXAMPLE_BATCH, 1), trained.special_ids["bos"], dtype=torch.long)
        source = Dim("src_length", max=cfg.max_positions)
        cross_names, past_names = kv_names("cross", n_layers), kv_names("past", n_layers)
        return [
            GraphSpec("encoder", EncoderGraph(model), (example,), ("src",), ("src_mask", *cross_names),
                      {"src": {0: batch, 1: source}}),
            GraphSpec("decoder_step", DecoderStepGraph(model), (step, src_mask, *cross, *past),
                      ("tokens", "src_mask", *cross_names, *past_names),
                      ("logits", *kv_names("present", n_layers)),
                      {"tokens": {0: batch}, "src_mask": {0: batch, 3: source},
                       **{name: {0: batch, 2: source} for name in cross_names},
                       **{name: {0: batch, 2: past_length} for name in past_names}}, fallback_opset=None),
        ]
    if family == "decoder_lm":
        blocks = model.decoder.layers
        heads = blocks[0].self_attn.n_heads
        past = [torch.zeros(EXAMPLE_BATCH, heads, EXAMPLE_PAST,
                            cfg.d_model // heads) for _ in range(2 * len(blocks))]
        past_names = kv_names("past", len(blocks))
        # one new token per call: with several, attention's fused-causal switch (query length == key
        # length) is a symbolic bool that SDPA refuses; a prompt is fed one token at a time instead
        return [GraphSpec("decoder_lm", DecoderLMGraph(model), (example[:, :1], *past),
                          ("tokens", *past_names),
                          ("logits", *kv_names("present", len(blocks))),
                          {"tokens": {0: batch}, **{name: {0: batch, 2: past_length} for name in past_names}},
                          fallback_opset=None)]
    if family == "vit":
        images = torch.randn(EXAMPLE_BATCH, model.in_channels, model.image_size, model.image_size)
        return [GraphSpec("vit", LogitsGraph(model), (images,), ("images",), ("logits",),
                          {"images": {0: batch}})]
    return [GraphSpec("classifier", LogitsGraph(model), (example,), ("tokens",), ("logits",),
                      {"tokens": {0: batch, 1: length}})]


def _example_tokens(trained: InferenceModel) -> Tensor:
    """(EXAMPLE_BATCH, EXAMPLE_LENGTH) ids above the special ones, the first row padded at its end."""
    tokens = torch.arange(EXAMPLE_BATCH * EXAMPLE_LENGTH).view(EXAMPLE_BATCH, EXAMPLE_LENGTH) % 7 + 4
    if trained.family != "decoder_lm":  # a language model's windows hold no padding
        tokens[0, -1] = trained.special_ids["pad"]
    return tokens


def export_graph(spec: GraphSpec, path: Path, attention: str) -> dict[str, Any]:
    """Write one graph; return its inputs and outputs as the manifest lists them. Refuse fixed dynamic
    axes."""
    import onnx

    spec.module.eval()
    hint = f" (model.attention={attention!r})" if attention != "full" else ""
    try:
        with torch.no_grad():
            program = torch.onnx.export(spec.module, spec.inputs, str(path), dynamo=True,
                                        opset_version=spec.opset,
                                        input_names=list(spec.input_names),
                                        output_names=list(spec.output_names),
                                        verbose=False, external_data=False,
                                        dynamic_shapes=_dynamic_shapes(spec))
    except Exception as err:  # the exporter raises many types; name the cause and stop
        raise_if_disk_full(err, path, "ONNX graph")  # a full disk is no fault of the model's axes
        raise ExportError(f"graph {spec.name} does not export with dynamic axes{hint}: "
                          f"{_cause(err)}") from err
    narrowed = narrowed_axes(program.exported_program, spec)
    if narrowed:
        path.unlink(missing_ok=True)
        raise ExportError(f"graph {spec.name}: the exporter narrowed axes declared dynamic to the example's "
                          f"side of a branch in the model's code: {', '.join(narrowed)}{hint}; the graph "
                          "would give wrong answers outside that range; serve this model with "
                          "--backend torch")
    graph = onnx.load(str(path), load_external_data=False)
    fused = fuse_attention(graph)  # ORT's fused attention (src/export/fusion.py)
    if fused.left and spec.fallback_opset is not None:
        logger.info("export: {} attention node(s) of graph {} not fused; exported again at opset {}",
                    fused.left, spec.name, spec.fallback_opset)
        return export_graph(replace(spec, opset=spec.fallback_opset, fallback_opset=None), path, attention)
    if fused.fused:
        onnx.save(graph, str(path))
    described = describe_graph(graph)
    fixed = [f"{name} axis {axis} (fixed at {described['inputs'][name]['shape'][axis]})"
             for name, axes in spec.dynamic.items() for axis in axes
             if not isinstance(described["inputs"][name]["shape"][axis], str)]
    if fixed:
        path.unlink()
        raise ExportError(f"graph {spec.name}: the exporter fixed axes declared dynamic: "
                          f"{', '.join(fixed)}{hint}; the model's code branches or loops on these lengths in "
                          "Python, so the graph would accept only the example's shape")
    return {"file": path.name, "opset": _opset(graph), **described,
            **({"fused_attention": fused.fused} if fused.fused else {})}


def _dynamic_shapes(spec: GraphSpec) -> tuple:
    """``spec.dynamic`` shaped as ``torch.export`` matches it to ``forward``'s arguments: the inputs that a
    ``*caches`` parameter takes (one per cache tensor, ``graphs.py``) go in one nested tuple."""
    import inspect

    shapes = tuple(spec.dynamic.get(name) for name in spec.input_names)
    parameters = inspect.signature(spec.module.forward).parameters.values()
    if not any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in parameters):
        return shapes
    named = sum(p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD for p in parameters)
    return (*shapes[:named], shapes[named:])


def narrowed_axes(program: Any, spec: GraphSpec) -> list[str]:
    """The dynamic axes of ``spec`` whose range the trace narrowed, as "input axis i (lo..hi, declared
    ..max)".

    ``torch.onnx.export`` retries a trace that fails on a guard (a Python branch on a length) with the
    range torch.export suggests, e.g. ``length <= 9``; the ONNX graph keeps a symbolic axis but is only
    valid inside that range, and nothing in ONNX Runtime enforces it. The exported program's range
    constraints say which range the graph was traced for.
    """
    import sympy
    from torch.utils._sympy.numbers import int_oo

    placeholders = {node.name: node for node in program.graph.nodes if node.op == "placeholder"}
    narrowed = []
    for name, user_input in zip(spec.input_names, program.graph_signature.user_inputs, strict=True):
        shape = placeholders[user_input].meta["val"].shape
        for axis, dim in spec.dynamic.get(name, {}).items():
            size = shape[axis]
            if isinstance(size, int):
                narrowed.append(f"{name} axis {axis} (fixed at {size})")
                continue
            bounds = program.range_constraints.get(size.node.expr)
            declared_max = dim.max if isinstance(dim.max, int) and dim.max < 2**62 else None
            if bounds is None:
                continue
            # int_oo.is_finite is True
            upper = None if bounds.upper in (int_oo, sympy.oo) else int(bounds.upper)
            lower = int(bounds.lower)
            if lower > 1 or (declared_max is not None and (upper is None or upper < declared_max)) or (
                    declared_max is None and upper is not None):
                narrowed.append(f"{name} axis {axis} ({lower}..{upper if upper is not None else 'any'}, "
                                f"declared 1..{declared_max if declared_max is not None else 'any'})")
    return narrowed


def _cause(err: Exception) -> str:
    """The one line of an exporter error that names the cause (its "Exception summary"), else its first
    line."""
    text = str(err.__cause__ or err)
    summary = [line for line in text.splitlines() if line.startswith("<class ")]
    lines = [line for line in text.splitlines() if line.strip()]
    return (summary[0] if summary else lines[0] if lines else type(err).__name__)[:500]


def describe_graph(graph: Any) -> dict[str, Any]:
    """Inputs and outputs of an ``onnx.ModelProto``: name -> dtype and shape (ints, or names of symbolic
    axes)."""
    import onnx

    def side(values) -> dict[str, Any]:
        out = {}
        for value in values:
            tensor = value.type.tensor_type
            shape = [d.dim_param if d.HasField("dim_param") else (
                d.dim_value if d.HasField("dim_value") else "?")
                     for d in tensor.shape.dim]
            out[value.name] = {"dtype": onnx.helper.tensor_dtype_to_np_dtype(tensor.elem_type).name,
                               "shape": shape}
        return out

    return {"inputs": side(graph.graph.input), "outputs": side(graph.graph.output)}


def _opset(graph: Any) -> int:
    return next(op.version for op in graph.opset_import if op.domain in ("", "ai.onnx"))


def write_manifest(trained: InferenceModel, graphs: dict[str, Any], out: Path, digest: str,
                   checked: dict[str, Any]) -> dict[str, Any]:
    """``export.json``, ``config.json`` and the tokenizer files: everything needed to use the graphs alone.

    ``checked``: the cases the graphs passed against PyTorch (``check_graphs``); the loader takes no
    export without it.
    """
    from src.config import config_to_dict

    (out / "config.json").write_text(json.dumps(config_to_dict(trained.config), indent=2), encoding="utf-8")
    tokenizer_files = {}
    for side, tokenizer in trained.tokenizers.items():
        tokenizer_files[side] = f"tokenizer_{side}.json"
        tokenizer.save(str(out / tokenizer_files[side]))
    manifest = {
        "format": MANIFEST_FORMAT,
        "family": trained.family,
        "graphs": graphs,
        "checked": checked,
        "opset": next(iter(graphs.values()))["opset"],
        "checkpoint": {"path": str(Path(trained.path).resolve()), "step": trained.step, "sha256": digest},
        "config": "config.json",
        "tokenizers": tokenizer_files,
        "special_ids": trained.special_ids,
        "labels": trained.labels,
        "image_stats": trained.image_stats,
        "torch": torch.__version__,
    }
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    return manifest
