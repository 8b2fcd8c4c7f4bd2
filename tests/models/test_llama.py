"""The Llama-shaped decoder equals Hugging Face's LlamaForCausalLM with the same weights."""

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from src.models.llama import build_llama, llama_state_dict
from src.models.sampling import generate

VOCAB, C, HEADS, KV_HEADS, FF, LAYERS, POSITIONS = 61, 32, 4, 2, 48, 2, 64


@pytest.fixture(scope="module")
def hugging_face() -> LlamaForCausalLM:
    config = LlamaConfig(vocab_size=VOCAB, hidden_size=C, intermediate_size=FF, num_hidden_layers=LAYERS,
                         num_attention_heads=HEADS, num_key_value_heads=KV_HEADS,
                         max_position_embeddings=POSITIONS,
                         rms_norm_eps=1e-6, tie_word_embeddings=False, attention_bias=False, mlp_bias=False)
    config._attn_implementation = "eager"
    torch.manual_seed(0)
    model = LlamaForCausalLM(config).eval()
    with torch.no_grad():  # the norms' gains start at 1: move them so that a swapped norm would show
        for name, parameter in model.named_parameters():
            if "norm" in name:
                parameter.add_(0.1 * torch.randn_like(parameter))
    return model


def _ours(hf: LlamaForCausalLM, backend: str):
    model = build_llama(VOCAB, C, HEADS, KV_HEADS, FF, LAYERS, POSITIONS, eps=1e-6, backend=backend).eval()
    missing, unexpected = model.load_state_dict(llama_state_dict(hf.state_dict()), strict=True)
    assert not missing and not unexpected
    return model


@pytest.mark.parametrize("backend", ["sdpa", "math"])
def test_same_parameters_and_logits_as_hugging_face(hugging_face, backend):
    torch.manual_seed(1)
    ours = _ours(hugging_face, backend)
    assert ours.num_parameters() == sum(p.numel() for p in hugging_face.parameters())
    tokens = torch.randint(0, VOCAB, (3, 23))  # an odd length
    with torch.no_grad():
        torch.testing.assert_close(ours(tokens), hugging_face(tokens).logits, atol=1e-5, rtol=0)


def test_gradients_match_hugging_face(hugging_face):
    torch.manual_seed(2)
    ours = _ours(hugging_face, "sdpa").train()
    tokens = torch.randint(0, VOCAB, (2, 9))
    ours(tokens).logsumexp(-1).sum().backward()
    hugging_face.zero_grad()
    hugging_face(tokens).logits.logsumexp(-1).sum().backward()
    mine = dict(ours.named_parameters())
    theirs = llama_state_dict({name: p.grad for name, p in hugging_face.named_parameters()})
    for name, grad in theirs.items():
        torch.testing.assert_close(mine[name].grad, grad, atol=1e-5, rtol=1e-4, msg=name)


@pytest.mark.parametrize("backend", ["sdpa", "math"])
def test_cached_generation_equals_hugging_face_and_uncached(hugging_face, backend):
    torch.manual_seed(3)
    ours = _ours(hugging_face, backend)
    prompt = torch.randint(0, VOCAB, (2, 7))
    with torch.no_grad():
        expected = hugging_face.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=12,
                                         do_sample=False, pad_token_id=0, eos_token_id=None)
        assert expected.shape == (2, 19)  # 12 new tokens: no end-of-sequence stops either side
        cached = generate(ours, prompt, 12, temperature=0.0)
        uncached = generate(ours, prompt, 12, temperature=0.0, use_cache=False)
        assert torch.equal(cached, expected) and torch.equal(uncached, expected)
        cache = ours.new_cache()
        steps = [ours(expected[:, :7], cache)] + [ours(expected[:, t : t + 1], cache) for t in range(7, 19)]
        full = hugging_face(expected[:, :19]).logits
        torch.testing.assert_close(torch.cat(steps, dim=1), full, atol=1e-5, rtol=0)
    assert cache[0].key.shape == (2, KV_HEADS, 19, C // HEADS)  # the cache keeps only the shared heads
