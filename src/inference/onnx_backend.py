"""The ONNX Runtime backend: an export folder's graphs behind the same methods the PyTorch models have.

``src/export`` writes the graphs (``python -m src.main export``); this module only runs them, so
serving needs onnxruntime and not the exporter. Each class mirrors the PyTorch model the decoding
code drives, and takes and returns torch tensors (on the CPU):

- ``OnnxEncoderDecoder``: ``encode`` (where ``memory`` is a ``CrossMemory``, the cross-attention
  keys and values of every decoder layer), ``step_logits``, ``new_cache``, ``pad_id``,
  ``max_positions``: ``greedy_decode`` and ``beam_search`` (``src/models/decoding.py``) run on it unchanged.
- ``OnnxDecoderLM``: ``forward(tokens, cache)``, ``new_cache``, for ``src/models/sampling.py``.
- ``OnnxClassifier``: ``forward(tokens or images)`` -> logits.

They are ``nn.Module`` subclasses without parameters, so ``.eval()`` and ``.parameters()`` work as
callers expect; ``InferenceModel.device`` is then the CPU.

Between decoding steps each step's ``present_*`` outputs are fed back as the next step's ``past_*``
inputs unchanged (numpy arrays, which ``InferenceSession.run`` takes without a copy). ``io_binding=True``
keeps them as ``OrtValue`` objects in ORT's own buffers instead (I/O binding), with only the logits copied
out: the same answers (the tests compare the two), but on the CPU it measured slower, so it is off by
default; it is the path that saves host-device copies on a GPU provider. With the fused graphs
(``src/export/fusion.py``), one decoder step of the default translation model (source 20, cache 30, one ORT
thread): 0.64 ms plain against 0.85 ms bound at batch 1, 2.7 against 3.5 ms at batch 32 (issue 30): ORT
allocates a new present cache for either, since MultiHeadAttention appends by copying, and the binding
costs Python calls per input at every step. A cache that stays in place needs an operator that appends
into a preallocated buffer (GroupQueryAttention's shared past/present buffer, about 3x faster than
MultiHeadAttention at batch 32 in isolation), not yet used.
"""

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

# the export folder's manifest, written by src/export/exporter.py (which imports this)
MANIFEST = "export.json"
# format 2: the graphs were checked against PyTorch at export (the manifest's "checked"); an export of
# format 1 was not, and may give other answers (NaN for padded rows of a sliding-window model).
# format 3: one key and one value tensor per decoder layer (past_key_i, ...) instead of one stacked
# (B, 2L, H, T, D/H) cache, whose Split and Concat dominated a batched decoding step
MANIFEST_FORMAT = 3

Value = Any  # an onnxruntime.OrtValue (I/O binding) or a numpy array (plain ``run``)


def _numpy(value: Value) -> np.ndarray:
    return value if isinstance(value, np.ndarray) else value.numpy()


class _Graph:
    """One ONNX Runtime session: named inputs in, outputs out, as torch tensors or as ORT's own values.

    Sessions run sequentially (one graph at a time: decoding has no parallel branches) with every graph
    optimisation ORT has (``ORT_ENABLE_ALL``: constant folding, LayerNorm/GELU/MatMul fusions).
    """

    def __init__(self, path: Path, threads: int | None, io_binding: bool = False) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        if threads:
            options.intra_op_num_threads = threads
        # ORT's threads spin for a while after each run by default; between two decoding steps PyTorch picks
        # the next tokens (argmax, beam bookkeeping) on the same cores, and its OpenMP threads then wait for
        # the spinning ones: a (32, 4000) argmax took 17 ms instead of well under 1 ms (issue 30)
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.output_names = [o.name for o in self.session.get_outputs()]
        self.io_binding = io_binding

    def __call__(self, **inputs: Tensor) -> list[Tensor]:
        """Torch tensors in and out (the classifiers, and tests)."""
        feed = {name: np.ascontiguousarray(inputs[name].detach().cpu().numpy()) for name in self.input_names}
        return [torch.from_numpy(out) for out in self.session.run(None, feed)]

    def run(self, inputs: dict[str, Value]) -> list[Value]:
        """Outputs for ``inputs`` (OrtValues or numpy arrays): OrtValues left in ORT's buffers with I/O
        binding, numpy arrays without."""
        if not self.io_binding:
            return self.session.run(None, {name: _numpy(inputs[name]) for name in self.input_names})
        binding = self.session.io_binding()
        for name in self.input_names:
            value = inputs[name]
            if isinstance(value, np.ndarray):
                binding.bind_cpu_input(name, value)
            else:
                binding.bind_ortvalue_input(name, value)
        for name in self.output_names:
            binding.bind_output(name, "cpu")  # ORT allocates it; the OrtValue below owns that buffer
        self.session.run_with_iobinding(binding)
        return binding.get_outputs()


def _rows(values: list[Value], index: np.ndarray, io_binding: bool) -> list[Value]:
    """Batch rows ``index`` of each value, as the same kind of value (a copy: beam search reorders rarely)."""
    import onnxruntime as ort

    taken = [np.ascontiguousarray(np.take(_numpy(v), index, axis=0)) for v in values]
    return [ort.OrtValue.ortvalue_from_numpy(t) for t in taken] if io_binding else taken


class LayerCache:
    """The self-attention keys and values of every decoder layer, (B, H, T, D/H) each, empty until the first
    step.

    The values are the graph's last ``present_*`` outputs (numpy arrays, or OrtValues with I/O binding),
    fed back as ``past_*``. Beam search
    reorders their rows with ``reorder_beams``, as it does a ``DecoderCache``'s.
    """

    def __init__(self, n_layers: int, n_heads: int, head_dim: int, io_binding: bool = False) -> None:
        self.n_layers, self.n_heads, self.head_dim, self.io_binding = n_layers, n_heads, head_dim, io_binding
        self.values: list[Value] | None = None

    def __len__(self) -> int:
        return 0 if self.values is None else int(self.values[0].shape()[2] if self.io_binding else
                                                 self.values[0].shape[2])

    @property
    def length(self) -> int:
        return len(self)

    def past(self, batch: int) -> list[Value]:
        """The 2L cache tensors to feed a graph; empty (B, H, 0, D/H) arrays before the first step."""
        if self.values is None:
            empty = np.zeros((batch, self.n_heads, 0, self.head_dim), dtype=np.float32)
            return [empty] * (2 * self.n_layers)
        return self.values

    def reorder_beams(self, index: Tensor) -> None:
        """Keep rows ``index`` (beam search picking surviving beams)."""
        self.values = _rows(self.values, index.cpu().numpy(), self.io_binding)

    def keep_rows(self, index: Tensor) -> None:
        """Keep rows ``index`` (greedy decoding dropping ended sentences; the cross-attention caches are the
        ``CrossMemory``)."""
        self.reorder_beams(index)


class CrossMemory:
    """The encoder's output as decoding uses it: every decoder layer's cross-attention keys and values,
    (B, H, S, D/H) each, kept as the encoder graph gave them (numpy arrays, or OrtValues with I/O binding)
    for all the steps of a batch.

    Beam search calls ``repeat_interleave(k, dim=0)`` on its memory and greedy decoding ``index_select(0,
    rows)``, as on a tensor.
    """

    def __init__(self, values: list[Value], io_binding: bool) -> None:
        self.values, self.io_binding = values, io_binding

    def repeat_interleave(self, repeats: int, dim: int = 0) -> "CrossMemory":
        first = _numpy(self.values[0])
        return self.index_select(dim, torch.from_numpy(np.repeat(np.arange(first.shape[0]), repeats)))

    def index_select(self, dim: int, index: Tensor) -> "CrossMemory":
        """Batch rows ``index`` (greedy decoding keeps the sentences that have not ended)."""
        if dim != 0:
            raise ValueError(f"the cross-attention memory is indexed along the batch axis (dim=0), "
                             f"got dim={dim}")
        return CrossMemory(_rows(self.values, index.cpu().numpy(), self.io_binding), self.io_binding)


def _torch(value: Value) -> Tensor:
    return torch.from_numpy(_numpy(value))


class OnnxEncoderDecoder(nn.Module):
    """Translation on ``encoder.onnx`` and ``decoder_step.onnx`` (see the module docstring)."""

    def __init__(self, encoder: _Graph, decoder_step: _Graph, pad_id: int, max_positions: int,
                 cache_shape: tuple[int, int, int]) -> None:
        super().__init__()
        self.encoder_graph, self.step_graph = encoder, decoder_step
        self.pad_id, self.max_positions, self.cache_shape = pad_id, max_positions, cache_shape
        self.cross_names = [n for n in decoder_step.input_names if n.startswith("cross_")]
        self.past_names = [n for n in decoder_step.input_names if n.startswith("past_")]
        self.eval()

    def encode(self, src: Tensor) -> tuple[CrossMemory, Tensor]:
        """Shape: src (B, S) -> the cross caches (2L of (B, H, S, D/H), the "memory" of decoding), src_mask
        (B, 1, 1, S)."""
        from src.models.inputs import check_token_ids

        check_token_ids("src", src)
        src_mask, *cross = self.encoder_graph.run({"src": np.ascontiguousarray(src.long().cpu().numpy())})
        return CrossMemory(cross, self.encoder_graph.io_binding), _torch(src_mask)

    def step_logits(self, tgt: Tensor, memory: CrossMemory, src_mask: Tensor,
                    cache: LayerCache | None) -> Tensor:
        """One decoding step on the new token; ``cache`` grows by one position.

        Shape:
            tgt: (B, 1); memory: 2L cross caches (B, H, S, D/H); src_mask: (B, 1, 1, S) -> logits (B, V).
        """
        if cache is None or tgt.size(1) != 1:
            raise ValueError("the ONNX decoder step takes one new token per row and a cache "
                             f"(use_cache=True), got tokens of shape {tuple(tgt.shape)} and cache={cache!r}")
        if len(cache) + 1 > self.max_positions:
            raise ValueError(f"decoding needs position {len(cache) + 1}, beyond the model's "
                             f"max_positions={self.max_positions} (expected max_new_tokens <= "
                             f"{self.max_positions})")
        feed = {"tokens": np.ascontiguousarray(tgt.long().cpu().numpy()),
                "src_mask": np.ascontiguousarray(src_mask.cpu().numpy()),
                **dict(zip(self.cross_names, memory.values, strict=True)),
                **dict(zip(self.past_names, cache.past(tgt.size(0)), strict=True))}
        logits, *cache.values = self.step_graph.run(feed)
        return _torch(logits)

    def new_cache(self) -> LayerCache:
        return LayerCache(*self.cache_shape, io_binding=self.step_graph.io_binding)


class OnnxDecoderLM(nn.Module):
    """A language model on ``decoder_lm.onnx``: logits of every new position, cache extended.

    The graph takes one token per row, so a prompt of N tokens costs N calls (the same causal maths
    as one pass over it; the logits agree to float rounding).
    """

    def __init__(self, graph: _Graph, pad_id: int, max_positions: int, cache_shape: tuple[int, int,
                                                                                          int]) -> None:
        super().__init__()
        self.graph, self.pad_id, self.max_positions, self.cache_shape = (
            graph, pad_id, max_positions, cache_shape)
        self.past_names = [n for n in graph.input_names if n.startswith("past_")]
        self.eval()

    def forward(self, tokens: Tensor, cache: LayerCache | None = None,
                return_attention: bool = False) -> Tensor:
        """Shape: tokens (B, N), continuing ``cache`` (empty: a prompt) -> logits (B, N, V)."""
        from src.models.inputs import check_token_ids

        check_token_ids("tokens", tokens)
        if return_attention:
            raise ValueError("the ONNX backend returns no attention maps; use --backend torch for them")
        cache = cache if cache is not None else self.new_cache()
        if len(cache) + tokens.size(1) > self.max_positions:
            raise ValueError(f"sequence needs positions up to {len(cache) + tokens.size(1)}, longer than "
                             f"max_positions={self.max_positions}")
        ids = tokens.long().cpu().numpy()
        steps = []
        for t in range(tokens.size(1)):  # the graph takes one token per row (src/export/exporter.py says why)
            feed = {"tokens": np.ascontiguousarray(ids[:, t : t + 1]),
                    **dict(zip(self.past_names, cache.past(tokens.size(0)), strict=True))}
            logits, *cache.values = self.graph.run(feed)
            steps.append(_torch(logits))
        # N x (B, 1, V) -> (B, N, V); generation's one new token needs no copy (a tenth of a step's Python)
        return steps[0] if len(steps) == 1 else torch.cat(steps, dim=1)

    def new_cache(self) -> LayerCache:
        return LayerCache(*self.cache_shape, io_binding=self.graph.io_binding)


class OnnxClassifier(nn.Module):
    """A text classifier or a ViT on its one graph: the forward pass, logits only."""

    def __init__(self, graph: _Graph, input_name: str) -> None:
        super().__init__()
        self.graph, self.input_name = graph, input_name
        self.eval()

    def forward(self, inputs: Tensor, return_attention: bool = False) -> Tensor:
        """Shape: tokens (B, T) or images (B, C, H, W) -> logits (B, K)."""
        if return_attention:
            raise ValueError("the ONNX backend returns no attention maps; use --backend torch for them")
        inputs = inputs.long() if self.input_name == "tokens" else inputs.float()
        (logits,) = self.graph(**{self.input_name: inputs})
        return logits


def read_manifest(folder: Path) -> dict[str, Any]:
    """The export folder's ``export.json``; FileNotFoundError naming what was expected."""
    path = Path(folder) / MANIFEST
    if not path.is_file():
        raise FileNotFoundError(f"{folder} is not an export folder: {MANIFEST} is missing "
                                "(write one with: python -m src.main export RUN_OR_CHECKPOINT)")
    manifest = json.loads(path.read_text(encoding="utf-8"))
    if not is_checked(manifest):
        raise ValueError(f"{path} is an export of format {manifest.get('format')!r}, written by an older "
                         f"version (expected format {MANIFEST_FORMAT}: graphs with one cache tensor per "
                         "layer, checked against PyTorch, with a 'checked' record); export again: python -m "
                         "src.main export RUN_OR_CHECKPOINT")
    return manifest


def quantized_manifest(manifest: dict[str, Any], quantization: str, folder: Path) -> dict[str, Any]:
    """``manifest`` with the graphs of ``quantization`` ("int8", ``export --quantize int8``) in place of the
    float32 ones; ValueError saying how to write them when the export has none."""
    quantized = manifest.get("quantized", {})
    if quantization not in quantized:
        raise ValueError(f"the export in {folder} has no {quantization} graphs (it has "
                         f"{sorted(quantized) or 'float32 only'}); write them with: "
                         "python -m src.main export "
                         f"RUN_OR_CHECKPOINT --quantize {quantization}")
    return {**manifest, "graphs": quantized[quantization]["graphs"]}


def is_checked(manifest: dict[str, Any]) -> bool:
    """Whether ``manifest`` is of this format (per-layer caches) and passed the exporter's check against
    PyTorch."""
    return isinstance(manifest, dict) and manifest.get("format") == MANIFEST_FORMAT and "checked" in manifest


def load_onnx_model(folder: Path, manifest: dict[str, Any], pad_id: int, max_positions: int,
                    threads: int | None = None, io_binding: bool = False) -> nn.Module:
    """The ONNX Runtime model of the export ``folder`` for ``manifest["family"]``.

    ``io_binding``: keep the decoders' caches in ORT's buffers between steps as OrtValues (I/O binding);
    the default feeds numpy arrays through ``InferenceSession.run``, the same answers and faster on the
    CPU (see the module docstring).
    """
    graphs = {
        name: _Graph(folder / spec["file"], threads, io_binding) for name, spec in manifest["graphs"].items()}
    family = manifest["family"]
    if family == "encoder_decoder":
        return OnnxEncoderDecoder(graphs["encoder"], graphs["decoder_step"], pad_id, max_positions,
                                  _cache_shape(manifest["graphs"]["decoder_step"]))
    if family == "decoder_lm":
        return OnnxDecoderLM(graphs["decoder_lm"], pad_id, max_positions,
                             _cache_shape(manifest["graphs"]["decoder_lm"]))
    name = "vit" if family == "vit" else "classifier"
    return OnnxClassifier(graphs[name], next(iter(manifest["graphs"][name]["inputs"])))


def _cache_shape(graph: dict[str, Any]) -> tuple[int, int, int]:
    """(L, H, D/H) of a graph's ``past_key_i`` / ``past_value_i`` inputs, each of shape (B, H, T, D/H)."""
    past = [spec["shape"] for name, spec in graph["inputs"].items() if name.startswith("past_")]
    _, heads, _, head_dim = past[0]
    return len(past) // 2, heads, head_dim
