"""Text generation from a decoder-only language model: greedy, temperature, top-k and top-p sampling.

``generate`` feeds the prompt once, then one new token per step through the key/value cache. When
the sequence outgrows the model's ``max_positions``, the context is cropped to the last
``max_positions`` tokens (as nanoGPT's ``generate``); positions then shift, so the cached keys
are stale and the cache is rebuilt from the cropped window at every later step. Cached and
uncached generation therefore give the same tokens at any length. Like ``decoding.py``, this does
not switch the model's mode: call ``model.eval()`` first so dropout is off.
"""

import torch
from torch import Tensor

from src.models.decoder_lm import DecoderLM


def check_sampling(temperature: float, top_k: int | None, top_p: float | None) -> None:
    """Raise ValueError, naming expected and actual values, for settings that define no distribution."""
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0 (0 = greedy), got {temperature}")
    if top_k is not None and top_k < 1:
        raise ValueError(f"top_k must be >= 1 (or None for no cut), got {top_k}")
    if top_p is not None and not 0.0 < top_p <= 1.0:
        raise ValueError(f"top_p must be in (0, 1] (or None for no cut), got {top_p}")


def filter_logits(logits: Tensor, top_k: int | None = None, top_p: float | None = None) -> Tensor:
    """Logits with everything outside the top-k and outside the nucleus set to -inf.

    Nucleus (top-p) sampling (Holtzman et al. 2019, "The Curious Case of Neural Text
    Degeneration", Sec. 3.1): keep the smallest set of most probable tokens whose probability
    mass reaches ``top_p``; the most probable token is always kept.

    Shape:
        logits: (B, V) -> (B, V).
    """
    if top_k is not None and top_k < logits.size(-1):
        kth = logits.topk(top_k, dim=-1).values[:, -1:]  # (B, 1), the k-th largest logit
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and top_p < 1.0:
        sorted_logits, order = logits.sort(dim=-1, descending=True)
        probs = sorted_logits.softmax(dim=-1)
        mass_before = probs.cumsum(dim=-1) - probs  # (B, V): mass of the tokens ranked above each
        drop_sorted = mass_before >= top_p  # the nucleus ends at the first token that reaches top_p
        drop = drop_sorted.scatter(-1, order, drop_sorted)  # back to vocabulary order
        logits = logits.masked_fill(drop, float("-inf"))
    return logits


def sample_next(logits: Tensor, temperature: float, top_k: int | None, top_p: float | None,
                generator: torch.Generator | None) -> Tensor:
    """One token per row: argmax at temperature 0, else a draw from softmax(filtered logits / T).

    Shape:
        logits: (B, V) -> (B,).
    """
    if temperature == 0:
        return logits.argmax(dim=-1)
    probs = filter_logits(logits.float() / temperature, top_k, top_p).softmax(dim=-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


@torch.no_grad()
def generate(model: DecoderLM, prompt_ids: Tensor | list[int], max_new_tokens: int, temperature: float = 1.0,
             top_k: int | None = None, top_p: float | None = None, generator: torch.Generator | None = None,
             use_cache: bool = True, eos_id: int | None = None) -> Tensor:
    """Continue ``prompt_ids`` by up to ``max_new_tokens`` tokens.

    Args:
        model: the language model (in eval mode), or its ONNX Runtime twin
        (``src/inference/onnx_backend.py``). prompt_ids: token ids of the prompt, one sequence (list or (T,))
        or a batch (B, T). max_new_tokens: most tokens added.
        temperature: softmax temperature; 0 is greedy (argmax), as is ``top_k=1``.
        top_k: sample among the k most probable tokens only.
        top_p: sample from the nucleus of probability mass ``top_p`` only (Holtzman et al. 2019).
        generator: random source for reproducible samples.
        use_cache: one new token per step with the key/value cache; without it every step runs
            the whole (cropped) context (for comparison: same tokens, slower).
        eos_id: a row stops after producing it (later positions hold ``model.pad_id``); generation
            ends when every row has.

    Shape:
        prompt_ids: (B, T) -> (B, T + N), N <= max_new_tokens; the prompt comes first.
    """
    check_sampling(temperature, top_k, top_p)
    first = next(model.parameters(), None)  # none in the ONNX Runtime backend, which runs on the CPU
    tokens = torch.as_tensor(prompt_ids, dtype=torch.long,
                             device=first.device if first is not None else "cpu")
    tokens = tokens[None] if tokens.dim() == 1 else tokens
    if tokens.dim() != 2 or tokens.size(1) == 0:
        raise ValueError(f"prompt_ids must hold at least one token, got shape {tuple(tokens.shape)}")
    if max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be >= 0, got {max_new_tokens}")
    finished = torch.zeros(tokens.size(0), dtype=torch.bool, device=tokens.device)
    cache, window = None, model.max_positions
    for _ in range(max_new_tokens):
        if not use_cache or cache is None or _cached(cache) >= window:  # (re)build from the cropped context
            cache = model.new_cache() if use_cache else None
            logits = model(tokens[:, -window:], cache)[:, -1]  # (B, T, V) -> (B, V)
        else:
            logits = model(tokens[:, -1:], cache)[:, -1]
        next_token = sample_next(logits, temperature, top_k, top_p, generator)
        if eos_id is not None:
            next_token = next_token.masked_fill(finished, model.pad_id)
            finished |= next_token == eos_id
        tokens = torch.cat([tokens, next_token[:, None]], dim=1)
        if finished.all():
            break
    return tokens


def _cached(cache) -> int:
    """Positions in a cache: a list of per-block ``KVCache`` (PyTorch) or one ``LayerCache`` (ONNX
    Runtime)."""
    return len(cache[0]) if isinstance(cache, list) else len(cache)
