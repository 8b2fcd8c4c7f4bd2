"""Autoregressive decoding: greedy and beam search, both batched and using the key/value cache.

Both return the generated tokens after BOS as a (B, L) LongTensor, L the number of steps taken
(at most ``max_new_tokens``; fewer when every sentence has produced EOS). A sentence's EOS is
kept and everything after it is ``model.pad_id``. Neither switches the model's mode: call
``model.eval()`` first so dropout is off.

The model is driven through ``encode``, ``step_logits``, ``new_cache`` (whose cache has
``reorder_beams`` and ``keep_rows``), ``pad_id`` and ``max_positions`` only, so the ONNX Runtime backend
(``src/inference/onnx_backend.py``, where ``memory`` is a ``CrossMemory`` of per-layer cross-attention
caches with ``repeat_interleave`` and ``index_select``) runs the same code.
"""

import torch
from torch import Tensor

from src.components.kv_cache import DecoderCache
from src.models.inputs import check_token_ids
from src.models.transformer import EncoderDecoderTransformer


@torch.no_grad()
def greedy_decode(
    model: EncoderDecoderTransformer,
    src: Tensor,
    *,
    bos_id: int,
    eos_id: int,
    max_new_tokens: int,
    use_cache: bool = True,
) -> Tensor:
    """Pick the most probable token at each step.

    Args:
        model: the Transformer.
        src: source token ids, padded with ``model.pad_id``.
        bos_id, eos_id: begin- and end-of-sentence ids.
        max_new_tokens: most tokens generated per sentence.
        use_cache: decode one new token per step with the key/value cache; without it every
            step runs the decoder over the whole prefix (for comparison; same tokens, slower).

    Shape:
        src: (B, S) -> (B, L).
    """
    check_token_ids("src", src)
    _check_length(model, max_new_tokens)
    memory, src_mask = model.encode(src)
    out = torch.full((src.size(0), max_new_tokens), model.pad_id, dtype=torch.long, device=src.device)
    rows = torch.arange(src.size(0), device=src.device)  # the sentences still being decoded, rows of ``out``
    tokens = torch.full((src.size(0), 1), bos_id, dtype=torch.long, device=src.device)  # their prefixes
    cache = model.new_cache() if use_cache else None
    steps = 0
    for step in range(max_new_tokens):
        step_input = tokens[:, -1:] if use_cache else tokens
        logits = model.step_logits(step_input, memory, src_mask, cache)  # (A, V), last position
        next_token = logits.argmax(dim=-1)  # (A,)
        out[rows, step] = next_token
        tokens = torch.cat([tokens, next_token[:, None]], dim=1)
        steps = step + 1
        ended = next_token == eos_id
        if ended.all():
            break
        if ended.any():
            # A finished sentence leaves the batch: the later steps run on the live rows only, so a batch
            # costs the sum of its translations' lengths, not its size times the longest one. Rows do
            # not interact, so the tokens are those of decoding each sentence alone.
            live = (~ended).nonzero().squeeze(1)
            rows, tokens = rows[live], tokens[live]
            memory, src_mask = memory.index_select(0, live), src_mask.index_select(0, live)
            if cache is not None:
                cache.keep_rows(live)
    return out[:, :steps]


def gnmt_length_penalty(length: Tensor, alpha: float) -> Tensor:
    """lp(Y) = ((5 + |Y|) / 6)^alpha (Wu et al. 2016, GNMT, Eq. 14; the paper uses alpha = 0.6, Sec. 6.1)."""
    return ((5.0 + length) / 6.0) ** alpha


@torch.no_grad()
def beam_search(
    model: EncoderDecoderTransformer,
    src: Tensor,
    *,
    bos_id: int,
    eos_id: int,
    beam_size: int,
    length_penalty: float,
    max_new_tokens: int,
) -> Tensor:
    """Keep the ``beam_size`` best hypotheses per sentence, ranked by log P(Y | X) / lp(Y).

    A hypothesis that has produced EOS stays in its beam with a frozen score (its only
    continuation is pad, at log-probability 0) and competes with the live ones on the normalised
    score, so a short finished translation is dropped only when longer ones overtake it. The
    search stops when every hypothesis of every sentence has finished, or after
    ``max_new_tokens`` steps; the best hypothesis is returned. With ``beam_size=1`` this is
    ``greedy_decode``.

    Args:
        model: the Transformer.
        src: source token ids, padded with ``model.pad_id``.
        bos_id, eos_id: begin- and end-of-sentence ids.
        beam_size: hypotheses kept per sentence (K).
        length_penalty: alpha of ``gnmt_length_penalty``; 0 ranks by raw log-probability.
        max_new_tokens: most tokens generated per sentence.

    Shape:
        src: (B, S) -> (B, L).
    """
    check_token_ids("src", src)
    _check_length(model, max_new_tokens)
    if beam_size < 1:
        raise ValueError(f"beam_size must be >= 1, got {beam_size}")
    batch, k, device = src.size(0), beam_size, src.device
    memory, src_mask = model.encode(src)  # once per source, then shared by its K beams
    memory = memory.repeat_interleave(k, dim=0)  # (B, S, C) -> (B*K, S, C)
    src_mask = src_mask.repeat_interleave(k, dim=0)  # (B, 1, 1, S) -> (B*K, 1, 1, S)
    cache = model.new_cache()
    tokens = torch.full((batch * k, 1), bos_id, dtype=torch.long, device=device)
    scores = torch.full((batch, k), float("-inf"), device=device)
    scores[:, 0] = 0.0  # the K beams start identical: expand only the first
    lengths = torch.zeros(batch, k, dtype=torch.long, device=device)
    finished = torch.zeros(batch, k, dtype=torch.bool, device=device)
    first_beam_row = torch.arange(batch, device=device)[:, None] * k  # (B, 1)
    for _ in range(max_new_tokens):
        log_probs = _next_log_probs(model, tokens[:, -1:], memory, src_mask, cache)  # (B*K, V)
        log_probs = log_probs.view(batch, k, -1)  # (B*K, V) -> (B, K, V)
        log_probs = torch.where(finished[..., None], _pad_only(log_probs, model.pad_id), log_probs)
        candidate_lengths = lengths + (~finished).long()  # (B, K)
        candidate_scores = scores[..., None] + log_probs  # (B, K, 1) + (B, K, V) -> (B, K, V)
        ranked = candidate_scores / gnmt_length_penalty(candidate_lengths, length_penalty)[..., None]
        _, flat = ranked.view(batch, -1).topk(k, dim=-1)  # (B, K*V) -> (B, K), best first
        beam, token = flat // log_probs.size(-1), flat % log_probs.size(-1)
        scores = candidate_scores.view(batch, -1).gather(1, flat)
        lengths = candidate_lengths.gather(1, beam)
        finished = finished.gather(1, beam) | (token == eos_id)
        survivors = (first_beam_row + beam).view(-1)  # (B, K) -> (B*K,) rows of the surviving beams
        cache.reorder_beams(survivors)
        tokens = torch.cat([tokens[survivors], token.view(-1, 1)], dim=1)
        if finished.all():
            break
    return tokens.view(batch, k, -1)[:, 0, 1:]  # (B*K, 1+L) -> (B, L) of the best-ranked beam


def _next_log_probs(
    model: EncoderDecoderTransformer, last: Tensor, memory: Tensor, src_mask: Tensor, cache: DecoderCache
) -> Tensor:
    return model.step_logits(last, memory, src_mask, cache).log_softmax(dim=-1)  # (B*K, V)


def _pad_only(log_probs: Tensor, pad_id: int) -> Tensor:
    """Log-probabilities that allow only ``pad_id``, at no cost: a finished hypothesis' continuation."""
    row = torch.full_like(log_probs[0, 0], float("-inf"))
    row[pad_id] = 0.0
    return row


def _check_length(model: EncoderDecoderTransformer, max_new_tokens: int) -> None:
    max_positions = model.max_positions
    if max_new_tokens > max_positions:
        raise ValueError(
            f"max_new_tokens={max_new_tokens} exceeds the model's max_positions={max_positions} "
            f"(expected max_new_tokens <= {max_positions})"
        )
