"""DecoderLM: parity with Hugging Face's GPT-2, the causal property, cache equivalence, the builder."""

import pytest
import torch

from src.config import ModelConfig
from src.models.builders import build
from src.models.decoder_lm import DecoderLM, build_decoder_lm
from src.models.hf_weights import gpt2_state_dict

C, LAYERS, HEADS, POSITIONS, VOCAB = 32, 2, 4, 64, 100


def lm_config(**overrides) -> ModelConfig:
    """The settings under which DecoderLM computes exactly what GPT-2 computes: pre-norm blocks with a final
    LayerNorm (always, in DecoderLM), exact erf GELU ("gelu", not GPT-2's default "gelu_new"), learned
    positions, no sqrt(d_model) embedding scale (always), a tied head, LayerNorm eps 1e-5, no dropout."""
    settings = dict(family="decoder_lm", d_model=C, n_heads=HEADS, n_decoder_layers=LAYERS, d_ff=4 * C,
                    dropout=0.0, activation="gelu", positional_encoding="learned", max_positions=POSITIONS,
                    tie_output=True, layer_norm_eps=1e-5)
    return ModelConfig(**(settings | overrides))


def copy_gpt2_weights(hf, ours: DecoderLM) -> None:
    """GPT-2's weights onto ours through the mapping ``model.init_from`` uses (Conv1D matrices transposed)."""
    state, _ = gpt2_state_dict(hf.state_dict())
    ours.load_state_dict(state, strict=True)


@pytest.mark.parametrize("backend", ["sdpa", "math"])
def test_logits_match_hugging_face_gpt2(backend):
    import transformers  # pinned in requirements.txt: a missing install is a failure, not a skip
    torch.manual_seed(0)
    config = transformers.GPT2Config(n_embd=C, n_layer=LAYERS, n_head=HEADS, n_positions=POSITIONS,
                                     vocab_size=VOCAB,
                                     activation_function="gelu", resid_pdrop=0.0, embd_pdrop=0.0,
                                     attn_pdrop=0.0,
                                     layer_norm_epsilon=1e-5)
    hf = transformers.GPT2LMHeadModel(config).eval()
    ours = build_decoder_lm(lm_config(attention_backend=backend), VOCAB, pad_id=0).eval()
    copy_gpt2_weights(hf, ours)
    tokens = torch.randint(0, VOCAB, (3, 20))
    with torch.no_grad():
        expected = hf(tokens).logits
        assert torch.allclose(ours(tokens), expected, atol=1e-5, rtol=0)
        assert ours.lm_head.weight is ours.token_embedding.weight


@pytest.fixture
def model() -> DecoderLM:
    torch.manual_seed(0)
    return build_decoder_lm(lm_config(positional_encoding="sinusoidal"), VOCAB, pad_id=0).eval()


def test_future_tokens_do_not_change_past_logits(model):
    tokens = torch.randint(0, VOCAB, (2, 16))
    changed = tokens.clone()
    changed[:, 10:] = torch.randint(0, VOCAB, (2, 6))
    with torch.no_grad():
        assert torch.allclose(model(tokens)[:, :10], model(changed)[:, :10], atol=1e-6)
        assert not torch.allclose(model(tokens)[:, 10:], model(changed)[:, 10:], atol=1e-3)


def test_cached_steps_equal_one_full_pass(model):
    tokens = torch.randint(0, VOCAB, (2, 12))
    cache = model.new_cache()
    with torch.no_grad():
        full = model(tokens)
        pieces = [model(tokens[:, :5], cache)] + [model(tokens[:, t : t + 1], cache) for t in range(5, 12)]
    assert len(cache[0]) == 12
    assert torch.allclose(torch.cat(pieces, dim=1), full, atol=1e-5)


def test_attention_weights_are_causal_rows_per_layer(model):
    with torch.no_grad():
        logits, weights = model(torch.randint(0, VOCAB, (1, 7)), return_attention=True)
    assert logits.shape == (1, 7, VOCAB) and len(weights) == LAYERS
    assert weights[0].shape == (1, HEADS, 7, 7)
    assert torch.allclose(weights[0].sum(-1), torch.ones(1, HEADS, 7))
    assert torch.all(weights[0].triu(diagonal=1) == 0)


def test_builder_gives_the_family_gpt2_init_and_no_embedding_scale():
    cfg = lm_config(n_decoder_layers=8, d_model=64, d_ff=256)
    torch.manual_seed(0)
    model = build(cfg, vocab_size=5000, pad_id=0)
    assert isinstance(model, DecoderLM)
    assert model.token_embedding.weight.std().item() == pytest.approx(0.02, rel=0.05)
    residual = model.decoder.layers[0].self_attn.out_proj.weight.std().item()
    assert residual == pytest.approx(0.02 / (2 * 8) ** 0.5, rel=0.1)
    tokens = torch.tensor([[7]])
    with torch.no_grad():  # the input of block 0 is embedding + position, unscaled
        x = model.positional(model.token_embedding(tokens), 0)
        assert torch.allclose(x[0, 0], model.token_embedding.weight[7] + model.positional.table.weight[0])
    with pytest.raises(ValueError, match="needs sizes"):
        build(cfg, vocab_size=5000)


def test_untied_head_has_its_own_weight():
    model = build_decoder_lm(lm_config(tie_output=False), VOCAB, pad_id=0)
    assert model.lm_head.weight is not model.token_embedding.weight
    assert model.num_parameters() > build_decoder_lm(lm_config(), VOCAB, pad_id=0).num_parameters()
