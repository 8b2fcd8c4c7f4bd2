"""``model.init_from`` resolved at ``train``'s start: a Hugging Face folder's sizes win; a missing folder,
a wrong family's weights, a vocabulary mismatch, a checkpoint of other sizes and a registry name without a
server each fail in one line, before any step runs."""

import json

import pytest
import torch
import transformers

from src.experiment import load_config
from src.models.hf_config import InitSourceError
from src.orchestration.init_source import resolve_init_from
from src.training.checkpoint import save_checkpoint
from tests.models.bert_folder import save_bert_folder


@pytest.fixture(scope="module")
def bert(tmp_path_factory):
    return save_bert_folder(tmp_path_factory.mktemp("bert"), layers=2, width=48, positions=128)


def imdb_tiny(*overrides):
    return load_config("config/imdb_tiny.yaml", list(overrides))


def test_the_folders_sizes_win(bert):
    cfg = imdb_tiny(f"model.init_from={bert}", "model.d_model=64", "model.n_encoder_layers=1")
    resolved = resolve_init_from(cfg).model
    assert (resolved.d_model, resolved.n_encoder_layers, resolved.d_ff, resolved.max_positions) == (
        48,
        2,
        96,
        128,
    )
    assert resolved.embedding_norm and resolved.type_vocab_size == 2 and resolved.layer_norm_eps == 1e-12
    assert (resolved.norm_first, resolved.positional_encoding, resolved.activation) == (
        False,
        "learned",
        "gelu",
    )
    assert resolved.init_from == str(bert) and resolved.dropout == cfg.model.dropout  # training keys stay


def one_line_error(cfg) -> str:
    with pytest.raises(InitSourceError) as info:
        resolve_init_from(cfg)
    message = str(info.value)
    assert "\n" not in message, message
    return message


def test_a_missing_folder(tmp_path):
    message = one_line_error(imdb_tiny(f"model.init_from={tmp_path / 'minilm'}"))
    assert message == (
        f"model.init_from={tmp_path / 'minilm'}: no such file or folder (expected a Hugging Face folder "
        "with config.json, a checkpoint .pt, a run, or a registry NAME:TAG)"
    )


def test_a_wrong_familys_weights(tmp_path):
    config = transformers.GPT2Config(
        n_embd=16, n_layer=1, n_head=2, vocab_size=50, activation_function="gelu"
    )
    transformers.GPT2LMHeadModel(config).save_pretrained(tmp_path)
    message = one_line_error(imdb_tiny(f"model.init_from={tmp_path}"))
    assert message == (
        f"model.init_from={tmp_path} holds a gpt2 model (for family='decoder_lm'); "
        "model.family='encoder_classifier' starts from bert weights"
    )


def test_a_vocabulary_mismatch(bert, tmp_path):
    """A folder without its tokenizer: the run would train one of tokenizer.vocab_size (500) tokens at most,
    for a table of the folder's 120 rows."""
    for name in ("config.json", "model.safetensors"):
        (tmp_path / name).write_bytes((bert / name).read_bytes())
    message = one_line_error(imdb_tiny(f"model.init_from={tmp_path}"))
    assert "vocabulary mismatch: config.json's vocab_size is 120, tokenizer.vocab_size=500" in message


def test_a_tokenizer_without_our_padding_id(bert, tmp_path):
    for name in ("config.json", "model.safetensors"):
        (tmp_path / name).write_bytes((bert / name).read_bytes())
    tokenizer = json.loads((bert / "tokenizer.json").read_text())
    vocab = tokenizer["model"]["vocab"]
    vocab["[PAD]"], vocab["[UNK]"] = vocab["[UNK]"], vocab["[PAD]"]
    for token in tokenizer["added_tokens"]:
        token["id"] = vocab[token["content"]]
    (tmp_path / "tokenizer.json").write_text(json.dumps(tokenizer))
    message = one_line_error(imdb_tiny(f"model.init_from={tmp_path}"))
    assert "tokenizer.json's pad token is {'[PAD]': 1}; this task needs it at id 0" in message


def checkpoint(path, family="encoder_classifier", **model):
    cfg = imdb_tiny()
    stored = json.loads(cfg.model_dump_json()) | {"model": cfg.model.model_dump(mode="json") | model}
    save_checkpoint(
        {"step": 0, "model": {"w": torch.zeros(1)}, "config": json.dumps(stored), "family": family}, path
    )
    return path


def test_a_checkpoints_sizes_win_and_a_bad_checkpoint_fails_in_one_line(tmp_path):
    path = checkpoint(tmp_path / "best.pt", d_model=64, n_heads=4, n_decoder_layers=7)
    resolved = resolve_init_from(imdb_tiny(f"model.init_from={path}")).model
    assert (resolved.d_model, resolved.n_heads, resolved.init_from) == (64, 4, str(path))
    assert resolved.n_decoder_layers == 1  # a stack the classifier does not build stays the config's
    wrong = checkpoint(tmp_path / "lm.pt", family="decoder_lm")
    assert "holds a 'decoder_lm' model; model.family='encoder_classifier'" in one_line_error(
        imdb_tiny(f"model.init_from={wrong}")
    )
    (tmp_path / "notes.pt").write_text("not a checkpoint")
    assert "notes.pt" in one_line_error(imdb_tiny(f"model.init_from={tmp_path / 'notes.pt'}"))


def test_a_registry_name_needs_a_server(tmp_path, monkeypatch):
    for key in ("CLEARML_API_HOST", "TRAINS_API_HOST", "CLEARML_CONFIG_FILE", "CLEARML_TASK_ID"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    message = one_line_error(imdb_tiny("model.init_from=imdb-mlm:production"))
    assert message.startswith(
        "model.init_from=imdb-mlm:production: a registered model needs a ClearML server"
    )


def test_an_unknown_run(tmp_path):
    message = one_line_error(imdb_tiny("model.init_from=imdb-mlm", f"output_dir={tmp_path}"))
    assert message.startswith("model.init_from=imdb-mlm is no folder, file or registry NAME:TAG, and no run")


def test_a_vit_for_other_images(tmp_path):
    config = transformers.ViTConfig(
        image_size=32,
        patch_size=4,
        num_channels=3,
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        hidden_act="gelu",
    )
    transformers.ViTForImageClassification(config).save_pretrained(tmp_path)
    cfg = load_config("config/vit_tiny.yaml", [f"model.init_from={tmp_path}"])
    assert (
        one_line_error(cfg) == f"model.init_from={tmp_path} is a ViT for model.image_size=32, the data have "
        "model.image_size=28"
    )
