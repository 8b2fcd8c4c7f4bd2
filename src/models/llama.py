"""A Llama-shaped decoder (Touvron et al. 2023, "LLaMA", Sec. 2.2): the GPT-2 decoder with today's blocks.

Reading order: token embedding (no position added) -> ``n_layers`` x ``LlamaBlock`` (pre-norm
grouped-query self-attention with rotary positions, then a SwiGLU feed-forward) -> final RMSNorm
-> ``lm_head``. The stack, cache and generation are those of ``DecoderLM``
(``src/models/decoder_lm.py``); what differs from GPT-2 is each block's parts:

- RMSNorm instead of LayerNorm (Zhang & Sennrich 2019; ``src/components/rms_norm.py``);
- rotary positions on queries and keys in every layer instead of a position table added once
  (Su et al. 2021; ``src/components/rotary_position_embedding.py``);
- SwiGLU feed-forward (Shazeer 2020; ``PositionwiseFeedForward(activation="swiglu")``);
- grouped-query attention, ``n_kv_heads`` key/value heads (Ainslie et al. 2023), as Llama 2 70B
  and Llama 3 use;
- no biases anywhere, and no dropout.

``llama_state_dict`` maps the weights of Hugging Face's ``LlamaForCausalLM`` onto this model, so
the two can be compared with the same weights (``tests/models/test_llama.py``).

Not yet reachable from the configuration (``model.family``): the config switches come with the
decoder LM's restructuring.
"""

import torch
from torch import Tensor, nn

from src.components.attention import AttentionBackend, MultiHeadAttention
from src.components.feed_forward import PositionwiseFeedForward
from src.components.kv_cache import KVCache
from src.components.rms_norm import RMSNorm
from src.components.rotary_position_embedding import RotaryPositionEmbedding
from src.models.decoder_lm import DecoderLM


class LlamaBlock(nn.Module):
    """x = x + Attention(RMSNorm(x)); x = x + SwiGLU(RMSNorm(x)), with RoPE, GQA and no biases.

    Args:
        d_model: model width C.
        n_heads: query heads H.
        n_kv_heads: key/value heads G, dividing H.
        d_ff: SwiGLU inner width.
        rotary: the rotary embedding, shared by all layers (it has no parameters).
        eps: RMSNorm epsilon.
        backend: attention backend, "sdpa" or "math".
    """

    def __init__(self, d_model: int, n_heads: int, n_kv_heads: int, d_ff: int,
                 rotary: RotaryPositionEmbedding, eps: float, backend: AttentionBackend) -> None:
        super().__init__()
        self.norm1 = RMSNorm(d_model, eps)
        self.self_attn = MultiHeadAttention(d_model, n_heads, 0.0, backend, n_kv_heads=n_kv_heads, bias=False,
                                            rotary=rotary)
        self.norm2 = RMSNorm(d_model, eps)
        self.feed_forward = PositionwiseFeedForward(d_model, d_ff, 0.0, "swiglu", bias=False)

    def forward(self, x: Tensor, cache: KVCache | None = None,
                need_weights: bool = False) -> tuple[Tensor, Tensor | None]:
        """Shape: x: (B, T, C) -> (B, T, C), weights (B, H, T, L) or None; L = cached + T positions."""
        attended, weights = self.self_attn(self.norm1(x), is_causal=True, cache=cache,
                                           need_weights=need_weights)
        x = x + attended
        return x + self.feed_forward(self.norm2(x)), weights


class PositionsInAttention(nn.Module):
    """The ``positional`` slot of ``DecoderLM`` when positions are rotated inside attention: adds nothing.

    Args:
        max_positions: longest sequence the rotary tables cover.
    """

    def __init__(self, max_positions: int) -> None:
        super().__init__()
        self.max_positions = max_positions

    def forward(self, x: Tensor, start: int = 0) -> Tensor:
        """Shape: x: (B, T, C) -> the same x."""
        return x


def build_llama(vocab_size: int, d_model: int, n_heads: int, n_kv_heads: int, d_ff: int, n_layers: int,
                max_positions: int, eps: float = 1e-6, rope_base: float = 10000.0,
                backend: AttentionBackend = "sdpa", tie_output: bool = False, pad_id: int = 0) -> DecoderLM:
    """A Llama-shaped ``DecoderLM``; init as GPT-2's (N(0, 0.02), ``init_gpt2_weights``), gains at 1."""
    rotary = RotaryPositionEmbedding(d_model // n_heads, max_positions, rope_base)
    blocks = [LlamaBlock(d_model, n_heads, n_kv_heads, d_ff, rotary, eps, backend) for _ in range(n_layers)]
    return DecoderLM(vocab_size, PositionsInAttention(max_positions), blocks, d_model, 0.0, eps, pad_id,
                     tie_output, final_norm=RMSNorm(d_model, eps))


def llama_state_dict(hf_state: dict[str, Tensor]) -> dict[str, Tensor]:
    """Hugging Face ``LlamaForCausalLM`` weights under this model's names.

    Q, K and V stack into ``in_proj`` (rows W^Q, W^K, W^V) and gate, up into ``linear1`` (rows W
    then V of Shazeer's Eq. 6); the rotary pairing (halves) is the same, so no row is permuted.
    """
    ours = {"token_embedding.weight": hf_state["model.embed_tokens.weight"],
            "norm.weight": hf_state["model.norm.weight"],
            "lm_head.weight": hf_state.get("lm_head.weight", hf_state["model.embed_tokens.weight"])}
    layers = sorted({int(name.split(".")[2]) for name in hf_state if name.startswith("model.layers.")})
    for i in layers:
        hf, mine = f"model.layers.{i}.", f"decoder.layers.{i}."
        attention, mlp = hf + "self_attn.", hf + "mlp."
        ours[mine + "norm1.weight"] = hf_state[hf + "input_layernorm.weight"]
        ours[mine + "norm2.weight"] = hf_state[hf + "post_attention_layernorm.weight"]
        ours[mine + "self_attn.in_proj.weight"] = torch.cat(
            [hf_state[attention + name + ".weight"] for name in ("q_proj", "k_proj", "v_proj")])
        ours[mine + "self_attn.out_proj.weight"] = hf_state[attention + "o_proj.weight"]
        ours[mine + "feed_forward.linear1.weight"] = torch.cat(
            [hf_state[mlp + name + ".weight"] for name in ("gate_proj", "up_proj")])
        ours[mine + "feed_forward.linear2.weight"] = hf_state[mlp + "down_proj.weight"]
    return ours
