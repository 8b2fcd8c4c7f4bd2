"""The ONNX Runtime backend: an export folder's graphs behind the same methods the PyTorch models have.

``src/export`` writes the graphs (``python -m src.main export``); this module only runs them, so
serving needs onnxruntime and not the exporter. Each class mirrors the PyTorch model the decoding
code drives, and takes and returns torch tensors (on the CPU):

- ``OnnxEncoderDecoder``: ``encode`` (where ``memory`` is the stacked cross-attention cache
  ``cross_kv`` (B, 2L, H, S, D/H)), ``step_logits``, ``new_cache``, ``pad_id``, ``max_positions``:
  ``greedy_decode`` and ``beam_search`` (``src/models/decoding.py``) run on it unchanged.
- ``OnnxDecoderLM``: ``forward(tokens, cache)``, ``new_cache``, for ``src/models/sampling.py``.
- ``OnnxClassifier``: ``forward(tokens or images)`` -> logits.

They are ``nn.Module`` subclasses without parameters, so ``.eval()`` and ``.parameters()`` work as
callers expect; ``InferenceModel.device`` is then the CPU.
"""

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

MANIFEST = "export.json"  # the export folder's manifest, written by src/export/exporter.py (which imports this)
# format 2: the graphs were checked against PyTorch at export (the manifest's "checked"); an export of
# format 1 was not, and may give other answers (NaN for padded rows of a sliding-window model)
MANIFEST_FORMAT = 2


class StackedCache:
    """The self-attention key/value cache as one (B, 2L, H, T, D/H) tensor, empty until the first step.

    Beam search reorders its rows with ``reorder_beams``, as it does a ``DecoderCache``.
    """

    def __init__(self, n_rows: int, n_heads: int, head_dim: int) -> None:
        self.n_rows, self.n_heads, self.head_dim = n_rows, n_heads, head_dim
        self.kv: Tensor | None = None

    def __len__(self) -> int:
        return 0 if self.kv is None else self.kv.size(3)

    @property
    def length(self) -> int:
        return len(self)

    def past(self, batch: int) -> Tensor:
        """The cache to feed a graph; an empty (B, 2L, H, 0, D/H) tensor before the first step."""
        if self.kv is None:
            return torch.zeros(batch, self.n_rows, self.n_heads, 0, self.head_dim)
        return self.kv

    def reorder_beams(self, index: Tensor) -> None:
        """Keep rows ``index`` (beam search picking surviving beams)."""
        self.kv = self.kv.index_select(0, index)


class _Graph:
    """One ONNX Runtime session: named torch inputs in, torch outputs out."""

    def __init__(self, path: Path, threads: int | None) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.input_names = [i.name for i in self.session.get_inputs()]

    def __call__(self, **inputs: Tensor) -> list[Tensor]:
        feed = {name: np.ascontiguousarray(inputs[name].detach().cpu().numpy()) for name in self.input_names}
        return [torch.from_numpy(out) for out in self.session.run(None, feed)]


class OnnxEncoderDecoder(nn.Module):
    """Translation on ``encoder.onnx`` and ``decoder_step.onnx`` (see the module docstring)."""

    def __init__(self, encoder: _Graph, decoder_step: _Graph, pad_id: int, max_positions: int,
                 cache_shape: tuple[int, int, int]) -> None:
        super().__init__()
        self.encoder_graph, self.step_graph = encoder, decoder_step
        self.pad_id, self.max_positions, self.cache_shape = pad_id, max_positions, cache_shape
        self.eval()

    def encode(self, src: Tensor) -> tuple[Tensor, Tensor]:
        """Shape: src (B, S) -> cross_kv (B, 2L, H, S, D/H) (the "memory" of decoding), src_mask (B, 1, 1, S)."""
        from src.models.inputs import check_token_ids

        check_token_ids("src", src)
        cross_kv, src_mask = self.encoder_graph(src=src.long())
        return cross_kv, src_mask

    def step_logits(self, tgt: Tensor, memory: Tensor, src_mask: Tensor, cache: StackedCache | None) -> Tensor:
        """One decoding step on the new token; ``cache`` grows by one position.

        Shape:
            tgt: (B, 1); memory: cross_kv (B, 2L, H, S, D/H); src_mask: (B, 1, 1, S) -> logits (B, V).
        """
        if cache is None or tgt.size(1) != 1:
            raise ValueError(f"the ONNX decoder step takes one new token per row and a cache (use_cache=True), "
                             f"got tokens of shape {tuple(tgt.shape)} and cache={cache!r}")
        if len(cache) + 1 > self.max_positions:
            raise ValueError(f"decoding needs position {len(cache) + 1}, beyond the model's "
                             f"max_positions={self.max_positions} (expected max_new_tokens <= {self.max_positions})")
        logits, cache.kv = self.step_graph(tokens=tgt.long(), cross_kv=memory, src_mask=src_mask,
                                           past_kv=cache.past(tgt.size(0)))
        return logits

    def new_cache(self) -> StackedCache:
        return StackedCache(*self.cache_shape)


class OnnxDecoderLM(nn.Module):
    """A language model on ``decoder_lm.onnx``: logits of every new position, cache extended.

    The graph takes one token per row, so a prompt of N tokens costs N calls (the same causal maths
    as one pass over it; the logits agree to float rounding).
    """

    def __init__(self, graph: _Graph, pad_id: int, max_positions: int, cache_shape: tuple[int, int, int]) -> None:
        super().__init__()
        self.graph, self.pad_id, self.max_positions, self.cache_shape = graph, pad_id, max_positions, cache_shape
        self.eval()

    def forward(self, tokens: Tensor, cache: StackedCache | None = None, return_attention: bool = False) -> Tensor:
        """Shape: tokens (B, N), continuing ``cache`` (empty: a prompt) -> logits (B, N, V)."""
        from src.models.inputs import check_token_ids

        check_token_ids("tokens", tokens)
        if return_attention:
            raise ValueError("the ONNX backend returns no attention maps; use --backend torch for them")
        cache = cache if cache is not None else self.new_cache()
        if len(cache) + tokens.size(1) > self.max_positions:
            raise ValueError(f"sequence needs positions up to {len(cache) + tokens.size(1)}, longer than "
                             f"max_positions={self.max_positions}")
        steps = []
        for t in range(tokens.size(1)):  # the graph takes one token per row (src/export/exporter.py says why)
            logits, cache.kv = self.graph(tokens=tokens[:, t : t + 1].long(), past_kv=cache.past(tokens.size(0)))
            steps.append(logits)
        return torch.cat(steps, dim=1)  # N x (B, 1, V) -> (B, N, V)

    def new_cache(self) -> StackedCache:
        return StackedCache(*self.cache_shape)


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
        raise ValueError(f"{path} is an export of format {manifest.get('format')!r}, made before exports were checked "
                         f"against PyTorch (expected format {MANIFEST_FORMAT} with a 'checked' record); export again: "
                         "python -m src.main export RUN_OR_CHECKPOINT")
    return manifest


def is_checked(manifest: dict[str, Any]) -> bool:
    """Whether the export of ``manifest`` passed the exporter's check against PyTorch (format 2 and on)."""
    return isinstance(manifest, dict) and manifest.get("format") == MANIFEST_FORMAT and "checked" in manifest


def load_onnx_model(folder: Path, manifest: dict[str, Any], pad_id: int, max_positions: int,
                    threads: int | None = None) -> nn.Module:
    """The ONNX Runtime model of the export ``folder`` for ``manifest["family"]``."""
    graphs = {name: _Graph(folder / spec["file"], threads) for name, spec in manifest["graphs"].items()}
    family = manifest["family"]
    if family == "encoder_decoder":
        return OnnxEncoderDecoder(graphs["encoder"], graphs["decoder_step"], pad_id, max_positions,
                                  _cache_shape(manifest["graphs"]["decoder_step"]))
    if family == "decoder_lm":
        return OnnxDecoderLM(graphs["decoder_lm"], pad_id, max_positions, _cache_shape(manifest["graphs"]["decoder_lm"]))
    name = "vit" if family == "vit" else "classifier"
    return OnnxClassifier(graphs[name], next(iter(manifest["graphs"][name]["inputs"])))


def _cache_shape(graph: dict[str, Any]) -> tuple[int, int, int]:
    """(2L, H, D/H) of a graph's ``past_kv`` input, shape (B, 2L, H, T, D/H)."""
    _, rows, heads, _, head_dim = graph["inputs"]["past_kv"]["shape"]
    return rows, heads, head_dim
