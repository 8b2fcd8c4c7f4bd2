import pytest
import torch

from src.config.model import ModelConfig
from src.models.transformer import build_model

PAD, VOCAB = 0, 23


def _model(cfg: ModelConfig, seed: int = 0):
    torch.manual_seed(seed)
    return build_model(cfg, VOCAB, VOCAB, pad_id=PAD).eval()


def _batch(seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    src = torch.randint(3, VOCAB, (3, 9), generator=g)
    tgt = torch.randint(3, VOCAB, (3, 7), generator=g)
    src[1, 6:], tgt[2, 5:] = PAD, PAD  # right padding, as the batcher produces
    return src, tgt


def test_logits_and_attention_shapes(tiny_config):
    model = _model(tiny_config)
    src, tgt = _batch()
    logits, attn = model(src, tgt, return_attention=True)
    assert logits.shape == (3, 7, VOCAB)
    shapes = {kind: [tuple(w.shape) for w in layers] for kind, layers in attn.items()}
    assert shapes == {
        "encoder_self": [(3, 4, 9, 9)] * 2,
        "decoder_self": [(3, 4, 7, 7)] * 2,
        "cross": [(3, 4, 7, 9)] * 2,
    }
    torch.testing.assert_close(logits, model(src, tgt))  # the weights path computes the same outputs
    torch.testing.assert_close(attn["cross"][0].sum(-1), torch.ones(3, 4, 7))
    assert (attn["cross"][0][1, :, :, 6:] == 0).all()  # padded source tokens receive no attention


def test_future_target_tokens_do_not_change_earlier_outputs(tiny_config, norm_first):
    model = _model(tiny_config.model_copy(update={"norm_first": norm_first}))
    src, tgt = _batch()
    changed = tgt.clone()
    changed[:, 4:] = torch.randint(3, VOCAB, (3, 3))
    torch.testing.assert_close(model(src, tgt)[:, :4], model(src, changed)[:, :4], atol=1e-6, rtol=0)
    assert not torch.allclose(model(src, tgt)[:, 4:], model(src, changed)[:, 4:])


def test_appended_padding_does_not_change_real_positions(tiny_config, norm_first):
    model = _model(tiny_config.model_copy(update={"norm_first": norm_first}))
    src, tgt = _batch()
    padded_src = torch.cat([src, torch.full((3, 5), PAD)], dim=1)
    padded_tgt = torch.cat([tgt, torch.full((3, 4), PAD)], dim=1)
    expected = model(src, tgt)
    torch.testing.assert_close(model(padded_src, tgt), expected, atol=1e-5, rtol=0)
    real = tgt != PAD
    torch.testing.assert_close(model(src, padded_tgt)[:, :7][real], expected[real], atol=1e-5, rtol=0)


def test_attention_backends_give_the_same_model_outputs(tiny_config):
    sdpa = _model(tiny_config)
    math_ = _model(tiny_config.model_copy(update={"attention_backend": "math"}))
    math_.load_state_dict(sdpa.state_dict())
    src, tgt = _batch()
    torch.testing.assert_close(sdpa(src, tgt), math_(src, tgt), atol=1e-5, rtol=0)


@pytest.mark.parametrize(
    "update",
    [
        {},
        {
            "norm_first": True,
            "positional_encoding": "learned",
            "share_embeddings": False,
            "tie_output": False,
            "activation": "swiglu",
            "attention_backend": "math",
        },
        {"final_norm": True, "activation": "gelu", "dropout": 0.1, "attention_dropout": 0.1},
    ],
    ids=["paper", "pre-norm-learned-untied-swiglu", "final-norm-gelu-dropout"],
)
def test_every_parameter_receives_a_gradient(tiny_config, update):
    model = _model(tiny_config.model_copy(update=update)).train()
    src, tgt = _batch()
    model(src, tgt).logsumexp(-1).sum().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_parameter_names_group_by_layer(tiny_config):
    model = _model(tiny_config.model_copy(update={"norm_first": True}))
    groups = {
        name.split(".")[0] if ".layers." not in name else ".".join(name.split(".")[:3])
        for name, _ in model.named_parameters()
    }
    assert groups == {
        "embeddings",
        "generator",
        "encoder",
        "decoder",
        "encoder.layers.0",
        "encoder.layers.1",
        "decoder.layers.0",
        "decoder.layers.1",
    }  # encoder/decoder: the final norms of pre-norm
    assert "decoder.layers.1.cross_attn.in_proj.weight" in dict(model.named_parameters())


def test_tied_output_shares_the_target_table_and_counts_once(tiny_config):
    tied = _model(tiny_config)
    untied = _model(tiny_config.model_copy(update={"tie_output": False}))
    assert tied.generator.weight is tied.embeddings.tgt.weight is tied.embeddings.src.weight
    assert untied.num_parameters() - tied.num_parameters() == VOCAB * tiny_config.d_model


def test_initialisation_keeps_scaled_embeddings_and_attention_scores_near_unit_scale():
    cfg = ModelConfig(dropout=0.0)  # the default width, 256, where N(0, 1) embeddings would give std 16
    torch.manual_seed(0)
    model = build_model(cfg, 1000, 1000, pad_id=PAD)
    src = torch.randint(3, 1000, (8, 32))
    x = model.embeddings.src(src) * cfg.d_model**0.5
    assert 0.9 < x.std().item() < 1.1
    attention = model.encoder.layers[0].self_attn
    q, k, _ = attention._split_heads(attention.in_proj(model.embeddings.source(src)),
                                     *[attention.n_heads] * 3)
    scores = q @ k.transpose(-2, -1) / attention.head_dim**0.5
    assert scores.std().item() < 3.0


def test_shared_embeddings_need_equal_vocabularies(tiny_config):
    with pytest.raises(ValueError, match=r"src_vocab_size=23 and tgt_vocab_size=24"):
        build_model(tiny_config, VOCAB, VOCAB + 1, pad_id=PAD)
    separate = build_model(
        tiny_config.model_copy(update={"share_embeddings": False}), VOCAB, VOCAB + 1, pad_id=PAD
    )
    assert separate(*_batch()).shape[-1] == VOCAB + 1


def test_bad_inputs_name_expected_and_actual(tiny_config):
    model = _model(tiny_config)
    src, tgt = _batch()
    with pytest.raises(ValueError, match=r"src must be .*token ids.*got shape \(3, 9\) dtype torch\.float32"):
        model(src.float(), tgt)
    with pytest.raises(ValueError, match=r"max_positions=64.*length=65"):
        model(torch.ones(1, 65, dtype=torch.long), tgt[:1])
    with pytest.raises(ValueError, match=r"d_model=30 is not divisible by n_heads=4"):
        ModelConfig(d_model=30, n_heads=4)


# Malformed token ids of a (3, L) batch, and the end of the message each must produce.
MALFORMED = {
    "1-D": (lambda t: t[0], r"got shape \({L},\) dtype torch\.int64$"),
    "float": (lambda t: t.float(), r"got shape \(3, {L}\) dtype torch\.float32$"),
    "bool": (lambda t: t > 5, r"got shape \(3, {L}\) dtype torch\.bool$"),
    "empty": (lambda t: t[:, :0], r"got shape \(3, 0\) dtype torch\.int64$"),
    "list": (lambda t: t.tolist(), r"got list$"),
}


def _malformed(kind: str, name: str, tokens: torch.Tensor):
    """The malformed argument and the regex of its message."""
    corrupt, ending = MALFORMED[kind]
    prefix = rf"^{name} must be a 2-D \(batch, length\) tensor of integer token ids"
    return corrupt(tokens), rf"{prefix}.*{ending.format(L=tokens.size(1))}"


@pytest.mark.parametrize("kind", MALFORMED)
@pytest.mark.parametrize("name", ["src", "tgt"])
def test_forward_names_the_malformed_argument(tiny_config, name, kind):
    model = _model(tiny_config)
    inputs = dict(zip(["src", "tgt"], _batch()))
    inputs[name], pattern = _malformed(kind, name, inputs[name])
    with pytest.raises(ValueError, match=pattern):
        model(**inputs)


@pytest.mark.parametrize("kind", MALFORMED)
def test_encode_and_decode_name_the_malformed_argument(tiny_config, kind):
    model = _model(tiny_config)
    src, tgt = _batch()
    bad_src, pattern = _malformed(kind, "src", src)
    with pytest.raises(ValueError, match=pattern):
        model.encode(bad_src)
    memory, src_mask = model.encode(src)
    bad_tgt, pattern = _malformed(kind, "tgt", tgt)
    with pytest.raises(ValueError, match=pattern):
        model.decode(bad_tgt, memory, src_mask)
    with pytest.raises(ValueError, match=pattern):
        model.decode(bad_tgt, memory, src_mask, cache=model.new_cache())


def test_forward_rejects_different_batch_sizes(tiny_config):
    model = _model(tiny_config)
    src, tgt = _batch()
    pattern = r"same batch size, got src shape \(3, 9\) and tgt shape \(2, 7\)"
    with pytest.raises(ValueError, match=pattern):
        model(src, tgt[:2])
