"""LoRA (Hu et al. 2021): W x + (alpha/r) B A x on the attention projections. The adapted model starts as
the pretrained one, trains exactly the formula's number of parameters, and merges into plain weights that
compute the same function (1e-5) in every family with attention."""

import pytest
import torch
from torch import nn

from src.components.lora import LoRALinear, merge_lora_state, project_rows
from src.config.model import ModelConfig
from src.config.training import TrainingConfig
from src.models.builders import build
from src.training.finetune import prepare_model

SIZES = {"encoder_classifier": {"vocab_size": 40, "n_classes": 3, "pad_id": 0},
         "encoder_mlm": {"vocab_size": 40, "pad_id": 0},
         "decoder_lm": {"vocab_size": 40, "pad_id": 0},
         "vit": {"n_classes": 3},
         "encoder_decoder": {"src_vocab_size": 40, "tgt_vocab_size": 40, "pad_id": 0}}


def tiny_model(family: str, **keys) -> nn.Module:
    torch.manual_seed(0)
    vit = {"image_size": 8, "patch_size": 4, "in_channels": 1, "norm_first": True}
    extra = vit if family == "vit" else {}
    cfg = ModelConfig(family=family, d_model=16, n_heads=4, n_encoder_layers=2, n_decoder_layers=2, d_ff=32,
                      dropout=0.0, max_positions=16, **extra, **keys)
    model = build(cfg, **SIZES[family]).eval()
    if family == "vit":  # a zero head (the paper's fine-tuning start) would hide every difference
        nn.init.normal_(model.head.weight)
    return model


def inputs(family: str) -> tuple[torch.Tensor, ...]:
    torch.manual_seed(1)
    if family == "vit":
        return (torch.randn(2, 1, 8, 8),)
    tokens = torch.randint(4, 40, (2, 7))
    tokens[1, 5:] = 0  # padding in the second row
    return (tokens, torch.randint(4, 40, (2, 5))) if family == "encoder_decoder" else (tokens,)


def lora_training(**keys) -> TrainingConfig:
    return TrainingConfig(finetune="lora", **{"lora_rank": 2, "lora_alpha": 6.0, **keys})


def randomise_adapters(model: nn.Module) -> None:
    """B starts at zero (the adapted model is the pretrained one); trained adapters are not."""
    torch.manual_seed(2)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if ".lora_B." in name:
                parameter.normal_(std=0.5)


def test_a_fresh_adapter_leaves_the_pretrained_function_unchanged():
    model = tiny_model("encoder_classifier")
    before = model(*inputs("encoder_classifier"))
    prepare_model(model, lora_training(), "encoder_classifier")
    assert torch.equal(model(*inputs("encoder_classifier")), before)  # B = 0: (alpha/r) B A x = 0


def test_the_adapter_is_the_papers_equation():
    torch.manual_seed(3)
    base = nn.Linear(8, 8 + 2 * 4)  # a fused in_proj: C = 8, two key/value heads of width 2
    weight, bias = base.weight.detach().clone(), base.bias.detach().clone()
    layer = LoRALinear(base, ("q", "v"), rank=2, alpha=5.0)
    with torch.no_grad():
        layer.lora_B["q"].normal_()
        layer.lora_B["v"].normal_()
    x = torch.randn(3, 8)
    a_q, b_q, a_v, b_v = layer.lora_A["q"], layer.lora_B["q"], layer.lora_A["v"], layer.lora_B["v"]
    expected = x @ weight.T + bias
    expected[:, :8] += 5.0 / 2 * x @ a_q.T @ b_q.T  # W^Q's rows
    expected[:, 12:] += 5.0 / 2 * x @ a_v.T @ b_v.T  # W^V's rows; W^K's (8:12) unchanged
    torch.testing.assert_close(layer(x), expected, rtol=0, atol=1e-5)
    torch.testing.assert_close(project_rows(layer, x, 8), expected[:, 8:], rtol=0, atol=1e-5)


@pytest.mark.parametrize("family", list(SIZES))
@pytest.mark.parametrize("targets", [("q", "v"), ("q", "k", "v", "o")], ids=["qv", "qkvo"])
def test_merged_weights_compute_what_the_adapted_model_does(family, targets):
    """The path of evaluate, predict, export and serve: the checkpoint's adapters merged into the weights
    (``merge_lora_state``), loaded into the plain model."""
    adapted = tiny_model(family)
    prepare_model(adapted, lora_training(lora_targets=targets), family)
    randomise_adapters(adapted)
    plain = tiny_model(family)
    plain.load_state_dict(merge_lora_state(adapted.state_dict(), alpha=6.0, rank=2))
    with torch.no_grad():
        expected, merged = adapted(*inputs(family)), plain(*inputs(family))
        original = tiny_model(family)(*inputs(family))
    assert (expected - original).abs().max() > 1e-2  # the adapters do change the function
    torch.testing.assert_close(merged, expected, rtol=0, atol=1e-5)


def test_merged_weights_decode_with_the_cache_as_the_adapted_model():
    """Grouped-query attention's narrower key/value rows, and incremental decoding through the cache."""
    adapted = tiny_model("decoder_lm", n_kv_heads=2)
    prepare_model(adapted, lora_training(lora_targets=("q", "k", "v")), "decoder_lm")
    randomise_adapters(adapted)
    plain = tiny_model("decoder_lm", n_kv_heads=2)
    plain.load_state_dict(merge_lora_state(adapted.state_dict(), alpha=6.0, rank=2))
    tokens = inputs("decoder_lm")[0][:1]
    with torch.no_grad():
        cache = plain.new_cache()
        steps = [plain(tokens[:, i:i + 1], cache)[:, -1] for i in range(tokens.size(1))]
        torch.testing.assert_close(torch.stack(steps, 1), adapted(tokens), rtol=0, atol=1e-5)


@pytest.mark.parametrize("family, head", [("encoder_classifier", 16 * 16 + 16 + 3 * 16 + 3),
                                          ("vit", 3 * 16 + 3), ("decoder_lm", 0)])
def test_only_the_adapters_and_the_new_head_train_and_their_count_is_the_formula(family, head):
    """Per adapted projection r (d_in + d_out) for A (r, d_in) and B (d_out, r); q and v: C rows each."""
    r, c, layers = 4, 16, 2
    model = tiny_model(family)
    prepare_model(model, lora_training(lora_rank=r), family)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {n for n in trainable if ".lora_" in n or n.startswith("head.")}
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == layers * 2 * r * (c + c) + head


def test_the_count_follows_grouped_query_attention_and_the_output_projection():
    r, c, kv = 3, 16, 8  # 2 key/value heads of width 4
    model = tiny_model("decoder_lm", n_kv_heads=2)
    prepare_model(model, lora_training(lora_rank=r, lora_targets=("q", "k", "v", "o")), "decoder_lm")
    per_layer = r * (c + c) + 2 * r * (c + kv) + r * (c + c)  # q, k and v, o
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == 2 * per_layer
