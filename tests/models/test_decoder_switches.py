"""The decoder LM's switches (RoPE, ALiBi, RMSNorm, grouped-query attention, no biases) from the config: built
as asked, refused where they mean nothing, and not changed by a resume."""

import pytest
import torch

from src.config.model import ModelConfig
from src.experiment import load_config
from src.components.positional_encoding import PositionsInAttention
from src.models.decoder_lm import build_decoder_lm
from src.runs import ResumeError, check_resume

SMALL = {"family": "decoder_lm", "d_model": 32, "n_heads": 4, "d_ff": 48, "n_decoder_layers": 2,
         "dropout": 0.0,
         "max_positions": 32}


@pytest.mark.parametrize("switches", [{"positional_encoding": "rope"}, {"positional_encoding": "alibi"},
                                      {"norm": "rmsnorm"}, {"n_kv_heads": 1}, {"bias": False}])
def test_each_switch_changes_the_model_it_names_and_cached_decoding_still_equals_uncached(switches):
    torch.manual_seed(0)
    model = build_decoder_lm(ModelConfig(**SMALL, **switches), 40, 0).eval()
    attention = model.decoder.layers[0].self_attn
    if switches.get("positional_encoding") in ("rope", "alibi"):
        assert isinstance(model.positional, PositionsInAttention)  # nothing added to the embeddings
    if "norm" in switches:
        assert type(model.decoder.layers[0].norm1).__name__ == type(model.norm).__name__ == "RMSNorm"
    if "n_kv_heads" in switches:
        assert attention.n_kv_heads == 1
    if "bias" in switches:
        biases = [name for name, _ in model.decoder.named_parameters() if name.endswith("bias")]
        assert biases and all(".norm" in name for name in biases)  # LayerNorm keeps its own; no layer has one
    tokens = torch.randint(4, 40, (2, 9))
    full = model(tokens)
    cache = model.new_cache()
    steps = torch.cat([model(tokens[:, i:i + 1], cache=cache) for i in range(tokens.shape[1])], dim=1)
    torch.testing.assert_close(steps, full, atol=1e-5, rtol=1e-5)


def test_impossible_combinations_are_refused_naming_the_keys():
    with pytest.raises(ValueError, match="model.n_kv_heads=3 must divide n_heads=4"):
        ModelConfig(**SMALL, n_kv_heads=3)
    with pytest.raises(ValueError,
                       match="rotates pairs of a head's dimensions: d_model/n_heads=3 must be even"):
        ModelConfig(**{**SMALL, "d_model": 12}, positional_encoding="rope")
    with pytest.raises(ValueError, match="positional_encoding='alibi' biases full attention scores"):
        ModelConfig(**SMALL, positional_encoding="alibi", attention="sliding_window", window=4)


def test_a_resume_that_changes_a_switch_is_refused_naming_it():
    stored = load_config("config/lm_tiny.yaml")
    requested = load_config("config/lm_tiny.yaml", ["model.positional_encoding=rope"])
    with pytest.raises(ResumeError, match="positional_encoding"):
        check_resume(stored, requested, run="r")


def test_the_llama_config_matches_the_gpt_config_in_size():
    gpt, llama = (build_decoder_lm(load_config(f"config/{name}.yaml").model, 4096, 0).num_parameters()
                  for name in ("lm", "lm_llama"))
    assert abs(gpt - llama) / gpt < 0.001, (gpt, llama)


def test_export_refuses_a_decoder_with_positions_in_attention_or_shared_kv_heads_with_a_reason():
    from types import SimpleNamespace

    from src.export.exporter import ExportError, graph_specs

    for switch in ({"positional_encoding": "rope"}, {"positional_encoding": "alibi"}, {"n_kv_heads": 2}):
        cfg = ModelConfig(**SMALL, **switch)
        trained = SimpleNamespace(family="decoder_lm", model=build_decoder_lm(cfg, 40, 0),
                                  config=SimpleNamespace(model=cfg), special_ids={"pad": 0})
        key, value = next(iter(switch.items()))
        with pytest.raises(ExportError,
                           match=f"a decoder LM with {key}={value!r} is not exported to ONNX yet"):
            graph_specs(trained)
