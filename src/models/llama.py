"""A Llama-shaped decoder (Touvron et al. 2023, "LLaMA", Sec. 2.2): the GPT-2 decoder with today's blocks.

It is ``DecoderLM`` (``src/models/decoder_lm.py``) configured with the decoder LM's switches:

- ``model.norm: rmsnorm``: RMSNorm instead of LayerNorm (Zhang & Sennrich 2019;
  ``src/components/rms_norm.py``);
- ``model.positional_encoding: rope``: rotary positions on queries and keys in every layer instead of a
  position table added once (Su et al. 2021; ``src/components/rotary_position_embedding.py``);
- ``model.activation: swiglu``: SwiGLU feed-forward (Shazeer 2020);
- ``model.n_kv_heads``: grouped-query attention (Ainslie et al. 2023), as Llama 2 70B and Llama 3 use;
- ``model.bias: false`` and ``dropout: 0``: no biases anywhere, and no dropout.

``llama_config`` is that config; ``llama_state_dict`` maps the weights of Hugging Face's
``LlamaForCausalLM`` onto the model, so the two can be compared with the same weights
(``tests/models/test_llama.py``). ``config/lm_llama.yaml`` trains it.
"""

import torch
from torch import Tensor

from src.components.attention import AttentionBackend
from src.config.model import ModelConfig
from src.models.decoder_lm import DecoderLM, build_decoder_lm


def llama_config(d_model: int, n_heads: int, n_kv_heads: int, d_ff: int, n_layers: int, max_positions: int,
                 eps: float = 1e-6, rope_base: float = 10000.0, backend: AttentionBackend = "sdpa",
                 tie_output: bool = False) -> ModelConfig:
    """The decoder LM's config with Llama's blocks: RoPE, RMSNorm, SwiGLU, GQA, no biases, no dropout."""
    return ModelConfig(family="decoder_lm", positional_encoding="rope", norm="rmsnorm", activation="swiglu",
                       n_kv_heads=n_kv_heads, bias=False, dropout=0.0, attention_dropout=0.0, d_model=d_model,
                       n_heads=n_heads, d_ff=d_ff, n_decoder_layers=n_layers, max_positions=max_positions,
                       layer_norm_eps=eps, rope_base=rope_base, attention_backend=backend,
                       tie_output=tie_output)


def build_llama(vocab_size: int, d_model: int, n_heads: int, n_kv_heads: int, d_ff: int, n_layers: int,
                max_positions: int, eps: float = 1e-6, rope_base: float = 10000.0,
                backend: AttentionBackend = "sdpa", tie_output: bool = False, pad_id: int = 0) -> DecoderLM:
    """A Llama-shaped ``DecoderLM``, built from ``llama_config`` as the pipeline builds it; init as
    GPT-2's."""
    cfg = llama_config(d_model, n_heads, n_kv_heads, d_ff, n_layers, max_positions, eps, rope_base, backend,
                       tie_output)
    return build_decoder_lm(cfg, vocab_size, pad_id)


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
