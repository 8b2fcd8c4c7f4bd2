"""The export wrappers reuse the model's own code: the encoder graph's cross cache is the decoding step's."""

import torch

from src.components.attention import MultiHeadAttention
from src.experiment import load_config
from src.export.graphs import EncoderGraph, flat_kv
from src.models.builders import build


def test_memory_keys_values_is_the_w_k_w_v_projection_split_into_heads():
    torch.manual_seed(0)
    attention = MultiHeadAttention(d_model=16, n_heads=4, dropout=0.0).eval()
    memory = torch.randn(2, 5, 16)
    keys, values = attention.memory_keys_values(memory)
    w, b = attention.in_proj.weight, attention.in_proj.bias
    # (B, S, C) -> (B, H, S, C/H)
    expected_k = (memory @ w[16:32].T + b[16:32]).view(2, 5, 4, 4).transpose(1, 2)
    expected_v = (memory @ w[32:].T + b[32:]).view(2, 5, 4, 4).transpose(1, 2)
    torch.testing.assert_close(keys, expected_k)
    torch.testing.assert_close(values, expected_v)


def test_the_encoder_graph_cross_cache_equals_the_first_decoding_step_cache():
    cfg = load_config("config/tiny.yaml", ["model.dropout=0.0"])
    torch.manual_seed(0)
    model = build(cfg.model, src_vocab_size=40, tgt_vocab_size=40, pad_id=0).eval()
    src = torch.randint(4, 40, (3, 7))
    src[0, -2:] = 0  # padding
    with torch.no_grad():
        src_mask, *cross = EncoderGraph(model)(src)
        memory, mask = model.encode(src)
        cache = model.new_cache()
        model.step_logits(torch.full((3, 1), 1), memory, mask, cache)  # fills the cross cache from memory
    assert len(cross) == 2 * len(model.decoder.layers)  # one key and one value tensor per layer
    for actual, expected in zip(cross, flat_kv(cache.cross_attn), strict=True):
        torch.testing.assert_close(actual, expected, rtol=0, atol=0)
    assert torch.equal(src_mask, mask)
