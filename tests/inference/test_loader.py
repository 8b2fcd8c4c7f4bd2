"""A checkpoint alone rebuilds its model and tokenizers; it still loads with weights_only=True."""

import json
import shutil

import pytest
import torch
from datasets import Dataset

from src.config import config_to_dict
from src.data.special_tokens import BOS_ID, EOS_ID, PAD_ID
from src.data.tokenizer import TokenizerConfig, load_tokenizer, train_one
from src.experiment import load_config
from src.inference import CHECKPOINT_FORMAT, inference_fields, load_for_inference
from src.inference.translate import encode_sources, translate_texts
from src.models.decoding import greedy_decode
from src.models.transformer import build_model
from src.training.checkpoint import CheckpointError, atomic_torch_save

SENTENCES = ["Ich habe keine Zeit.", "Das ist gut.", "Wir gehen nach Hause.", "Er liest ein Buch.",
             "I have no time.", "That is good.", "We go home.", "He reads a book."] * 4


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A checkpoint as the trainer writes it: weights, config, tokenizer text, special ids, family."""
    root = tmp_path_factory.mktemp("ckpt")
    path = train_one(Dataset.from_dict({"text": SENTENCES}), ["text"],
                     TokenizerConfig(vocab_size=300, min_frequency=1), root / "tokenizer.json")
    tokenizer = load_tokenizer(path)
    cfg = load_config("config/tiny.yaml")
    torch.manual_seed(0)
    model = build_model(cfg.model, tokenizer.get_vocab_size(), tokenizer.get_vocab_size(), PAD_ID).eval()
    state = {"step": 7, "model": model.state_dict(), "config": json.dumps(config_to_dict(cfg)),
             **inference_fields({"src": tokenizer, "tgt": tokenizer})}
    atomic_torch_save(state, root / "run" / "best.pt")
    return root / "run" / "best.pt", model, tokenizer


def test_the_file_loads_with_weights_only_and_describes_itself(checkpoint):
    path, _, tokenizer = checkpoint
    state = torch.load(path, weights_only=True)
    assert state["format"] == CHECKPOINT_FORMAT and state["family"] == "encoder_decoder"
    assert state["special_ids"] == {"pad": PAD_ID, "bos": BOS_ID, "eos": EOS_ID, "unk": 3}
    assert json.loads(state["tokenizers"]["src"]) == json.loads(tokenizer.to_str())


def test_a_checkpoint_copied_alone_rebuilds_the_same_model(checkpoint, tmp_path):
    path, model, tokenizer = checkpoint
    alone = tmp_path / "only.pt"
    shutil.copy(path, alone)  # no tokenizer.json, no run folder beside it
    trained = load_for_inference(alone, "cpu")
    assert not trained.model.training and trained.step == 7 and trained.device.type == "cpu"
    src = torch.tensor(encode_sources(trained, ["Ich habe keine Zeit.", "Das ist gut."])[:1])
    tgt = torch.tensor([[BOS_ID, 5, 6, 7]])
    with torch.no_grad():
        assert torch.equal(trained.model(src, tgt), model(src, tgt))
    assert trained.tokenizers["tgt"].get_vocab() == tokenizer.get_vocab()


def test_translate_texts_keeps_order_blank_lines_and_matches_greedy_decoding(checkpoint):
    path, model, tokenizer = checkpoint
    trained = load_for_inference(path, "cpu")
    texts = ["Das ist gut.", "", "Wir gehen nach Hause."]
    out = translate_texts(trained, texts, max_len=8)
    assert len(out) == 3 and out[1] == ""
    src = torch.tensor(encode_sources(trained, texts[:1]))
    expected = greedy_decode(model, src, bos_id=BOS_ID, eos_id=EOS_ID, max_new_tokens=8)[0].tolist()
    from src.data.tokenizer import decode_ids

    assert out[0] == decode_ids(tokenizer, expected)
    with pytest.raises(ValueError,
                       match="--max-len must be between 1 and the model's max_positions=160, got 999"):
        translate_texts(trained, texts, max_len=999)


def test_an_old_checkpoint_without_tokenizers_is_a_clear_error(checkpoint, tmp_path):
    path, _, _ = checkpoint
    state = torch.load(path, weights_only=True)
    for key in ("tokenizers", "special_ids", "family", "format"):
        del state[key]
    old = tmp_path / "old.pt"
    atomic_torch_save(state, old)
    with pytest.raises(CheckpointError, match=r"cannot be used on its own: it lacks \['format', 'family', "
                                              r"'tokenizers', 'special_ids'\].*train again"):
        load_for_inference(old, "cpu")


def test_cuda_without_a_gpu_is_a_clear_error(checkpoint):
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(ValueError, match="no CUDA device is available"):
        load_for_inference(checkpoint[0], "cuda")
