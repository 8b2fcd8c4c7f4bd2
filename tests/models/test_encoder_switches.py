"""The encoder classifier's modern blocks (RoPE, RMSNorm, grouped-query attention, no biases): built as asked,
rotary positions make the encoder see relative positions only, refused where they mean nothing, exported."""

import json

import pytest
import torch

from src.components.positional_encoding import PositionsInAttention
from src.config.model import ModelConfig
from src.models.encoder_classifier import build_encoder_classifier

SMALL = {
    "family": "encoder_classifier",
    "d_model": 32,
    "n_heads": 4,
    "d_ff": 48,
    "n_encoder_layers": 2,
    "dropout": 0.0,
    "max_positions": 48,
    "norm_first": True,
    "pooling": "mean",
}
PAD = 0


def classifier(seed: int = 0, **switches) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_encoder_classifier(ModelConfig(**SMALL, **switches), 40, 3, PAD, "mean").eval()


@pytest.mark.parametrize(
    "switches", [{"positional_encoding": "rope"}, {"norm": "rmsnorm"}, {"n_kv_heads": 1}, {"bias": False}]
)
def test_each_switch_changes_the_encoder_it_names(switches):
    model = classifier(**switches)
    layer = model.encoder.layers[0]
    if "positional_encoding" in switches:
        assert isinstance(model.embeddings.positional, PositionsInAttention)
        assert layer.self_attn.rotary is model.encoder.layers[1].self_attn.rotary is not None  # one, shared
    if "norm" in switches:
        assert type(layer.norm1).__name__ == type(model.encoder.norm).__name__ == "RMSNorm"
    if "n_kv_heads" in switches:
        plain = classifier()
        # keys and values: 1 head of 8 instead of 4 -> in_proj loses 2 x 3 x 8 rows of 32 (and their biases)
        assert layer.self_attn.in_proj.weight.shape == (32 + 2 * 8, 32)
        assert sum(p.numel() for p in plain.parameters()) - sum(p.numel() for p in model.parameters()) == (
            2 * (2 * 3 * 8 * 32 + 2 * 3 * 8)
        )
    if "bias" in switches:
        biases = [name for name, _ in model.encoder.named_parameters() if name.endswith("bias")]
        assert biases and all("norm" in name for name in biases)
    tokens = torch.randint(4, 40, (3, 11))
    tokens[1, 7:] = PAD
    assert torch.isfinite(model(tokens)).all()


def test_rotary_positions_make_the_encoder_see_relative_positions_only():
    """Shift a text right by k masked padding positions: with RoPE every real token's output is unchanged (the
    scores depend on m - n only); with a learned or sinusoidal table added to the embeddings it changes."""
    tokens = torch.randint(4, 40, (2, 12), generator=torch.Generator().manual_seed(1))
    shifted = torch.cat([torch.full((2, 5), PAD), tokens], dim=1)  # the same text at positions 5..16
    differences = {}
    for positions in ("rope", "learned", "sinusoidal"):
        model = classifier(positional_encoding=positions)
        outputs = []
        with torch.no_grad():
            for ids in (tokens, shifted):
                mask = (ids != PAD)[:, None, None, :]
                hidden, _ = model.encoder(model.embeddings.source(ids), mask)
                outputs.append(hidden[:, -12:])
        differences[positions] = float((outputs[0] - outputs[1]).abs().max())
    assert differences["rope"] < 1e-5, differences
    assert differences["learned"] > 1e-2 and differences["sinusoidal"] > 1e-2, differences


@pytest.mark.parametrize(
    "family, switch, message",
    [
        (
            "encoder_decoder",
            {"positional_encoding": "rope"},
            "model.positional_encoding='rope' is one of the modern blocks of family='decoder_lm' and "
            "'encoder_classifier'; family='encoder_decoder' takes none of them",
        ),
        ("vit", {"norm": "rmsnorm"}, "model.norm='rmsnorm' is one of the modern blocks"),
        ("lstm_classifier", {"n_kv_heads": 2}, "model.n_kv_heads=2 is one of the modern blocks"),
        ("encoder_decoder", {"bias": False}, "model.bias=False is one of the modern blocks"),
        (
            "encoder_classifier",
            {"positional_encoding": "alibi"},
            "positional_encoding='alibi' is a causal model's distance bias",
        ),
        (
            "encoder_classifier",
            {"positional_encoding": "rope", "attention": "longformer", "window": 4},
            "longformer's global projections carry no position",
        ),
    ],
)
def test_the_switches_are_refused_where_they_mean_nothing(family, switch, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        ModelConfig(family=family, **switch)


def test_a_resume_that_changes_an_encoder_switch_is_refused_naming_it():
    from src.experiment import load_config
    from src.runs import ResumeError, check_resume

    stored = load_config("config/imdb_tiny.yaml")
    requested = load_config("config/imdb_tiny.yaml", ["model.norm=rmsnorm"])
    with pytest.raises(ResumeError, match="norm"):
        check_resume(stored, requested, run="r")


def test_an_encoder_classifier_with_every_switch_exports_and_equals_pytorch(tmp_path):
    """The one-graph export takes the switches (rotations and shared key/value heads are plain tensor ops);
    the
    exporter's own check compares it with PyTorch on padded batches before it is kept."""
    from src.export.exporter import export_checkpoint
    from src.inference import load_for_inference
    from tests.export.conftest import make_checkpoint

    switches = {
        "positional_encoding": "rope",
        "norm": "rmsnorm",
        "n_kv_heads": 1,
        "bias": False,
        "activation": "swiglu",
        "d_model": 16,
        "n_encoder_layers": 1,
    }
    checkpoint = make_checkpoint(
        tmp_path, "config/imdb_tiny.yaml", ("text",), labels=["neg", "pos"], model=switches
    )
    folder = export_checkpoint(checkpoint, tmp_path / "out")
    assert json.loads((folder / "export.json").read_text())["checked"]["max_abs_diff"] < 1e-4
    onnx, reference = load_for_inference(folder, backend="onnx"), load_for_inference(checkpoint, "cpu")
    tokens = torch.randint(4, 300, (3, 20), generator=torch.Generator().manual_seed(2))
    tokens[1, 6:] = reference.special_ids["pad"]
    with torch.no_grad():
        expected = reference.model(tokens)
    torch.testing.assert_close(onnx.model(tokens), expected, atol=1e-4, rtol=0)
