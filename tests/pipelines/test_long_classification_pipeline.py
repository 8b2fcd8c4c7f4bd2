"""``train`` on config/listops_tiny.yaml (generated, no data files) and config/imdb_long_tiny.yaml (bytes):
the five steps, nothing dropped or cut that the label needs, and checkpoints that carry the new tokenizers."""

import json

import pytest
import torch
from datasets import load_from_disk

from src.data.listops import evaluate_listops
from src.data.special_tokens import CLS_ID
from src.tasks.classification.task import ClassificationProbe
from tests.clearml_session import read_offline_session

pytestmark = pytest.mark.timeout(300)


def tokenization_report(run_dir) -> dict:
    session = read_offline_session(next((run_dir / "tokenize" / "clearml_offline").glob("*.zip")))
    return json.loads(session.read_bytes(session.artifacts["tokenization_report"]))


# listops_run and imdb_long_run: session fixtures in tests/conftest.py (the ONNX serving test reads them too)


def test_listops_keeps_every_expression_whole_and_labels_it_with_its_value(listops_run):
    card = json.loads((listops_run / "data_prep" / "data_card.json").read_text())
    assert card["input_rows"] == card["kept_rows"] == 600 and card["dropped_rows"] == 0
    assert card["labels"] == {str(v): v for v in range(10)}
    assert all(split["truncated"] == 0 for split in tokenization_report(listops_run).values())
    test = load_from_disk(str(listops_run / "tokenize" / "encoded"))["test"]
    assert [evaluate_listops(text) for text in test["text"]] == [int(y) for y in test["label"]]
    assert all(len(ids) == len(text.split()) + 1 and ids[0] == CLS_ID for ids, text in zip(test["ids"],
                                                                                           test["text"]))
    metrics = json.loads((listops_run / "evaluate" / "metrics.json").read_text())
    assert metrics["labels"] == [str(v) for v in range(10)] and metrics["n_texts"] == len(test)


def test_the_listops_checkpoint_carries_its_word_tokenizer(listops_run):
    from src.inference import load_for_inference

    model = load_for_inference(listops_run / "train" / "checkpoints" / "best.pt", "cpu")
    assert (model.config.model.attention, model.config.model.window) == ("sliding_window", 8)
    tokenizer = model.tokenizers["text"]
    assert set(tokenizer.get_vocab()) == {"<pad>", "<s>", "</s>", "<unk>", "[MAX", "[MIN", "[MED", "[SM", "]",
                                          *map(str, range(10))}
    ids = [CLS_ID, *tokenizer.encode("[MAX 2 9 [MIN 4 7 ] 0 ]").ids]
    probe = ClassificationProbe.from_ids([ids], tokenizer)
    assert probe.tokens[0] == ["<s>", "[MAX", "2", "9", "[MIN", "4", "7", "]", "0", "]"]  # the heatmap's axis
    assert probe.texts[0] == "[MAX 2 9 [MIN 4 7 ] 0 ]"
    with torch.no_grad():
        assert model.model(torch.tensor([ids])).shape == (1, 10)


# the byte-level IMDB tiny run costs ~15 s; ListOps keeps a long-document run in the default suite
@pytest.mark.slow
def test_byte_level_imdb_reads_bytes_and_cuts_at_max_tokens(imdb_long_run):
    report = tokenization_report(imdb_long_run)
    assert report["train"]["truncated"] > 0  # most reviews are longer than 255 bytes
    test = load_from_disk(str(imdb_long_run / "tokenize" / "encoded"))["test"]
    for ids, text in zip(test["ids"], test["text"]):
        assert ids == [CLS_ID, *(4 + b for b in text.encode("utf-8")[:255])]
    session = read_offline_session(next((imdb_long_run / "train" / "clearml_offline").glob("*.zip")))
    assert "attention/cls" in {image.title for image in session.images}


# the byte-level IMDB tiny run costs ~15 s; ListOps keeps a long-document run in the default suite
@pytest.mark.slow
def test_the_byte_level_checkpoint_decodes_what_it_encodes(imdb_long_run):
    from src.inference import load_for_inference

    model = load_for_inference(imdb_long_run / "train" / "checkpoints" / "best.pt", "cpu")
    assert (model.config.model.attention, model.config.tokenizer.kind) == ("longformer", "byte")
    tokenizer = model.tokenizers["text"]
    text = "Une révélation — 5/5 😀"
    ids = tokenizer.encode(text).ids
    assert tokenizer.get_vocab_size() == 260 and tokenizer.decode([CLS_ID, *ids]) == text
    assert ClassificationProbe.from_ids([[CLS_ID, *ids]], tokenizer).tokens[0][:4] == ["<s>", "U", "n", "e"]
    with torch.no_grad():
        assert model.model(torch.tensor([[CLS_ID, *ids]])).shape == (1, 2)
