"""``model.init_from`` in the training loop: the weights it loads before the optimizer, never on a resume; the
tokenizer that comes with them; a checkpoint of this project as the source."""

import pytest
import torch

from src.experiment import load_config
from src.models.builders import build
from src.models.hf_config import InitSourceError
from src.models.hf_weights import bert_state_dict, read_hf_weights
from src.tasks.classification.task import ClassificationTask, LabelledCorpus, encode_texts
from src.tracking import NullTracker
from src.training.init_from import initialise_from, source_tokenizer
from src.training.trainer import Trainer
from tests.models.bert_folder import save_bert_folder


@pytest.fixture(scope="module")
def bert(tmp_path_factory):
    return save_bert_folder(tmp_path_factory.mktemp("bert"), layers=1, width=32, positions=64)


def classifier_config(folder, run_dir, *overrides):
    """config/tiny.yaml as a classifier with the folder's sizes (the sizes ``train`` would set)."""
    from src.models.hf_config import hf_model_keys, read_hf_config

    keys = hf_model_keys(read_hf_config(folder), "encoder_classifier")
    return load_config(
        "config/tiny.yaml",
        [
            "task=classification",
            "data.source=imdb",
            "model.family=encoder_classifier",
            f"model.init_from={folder}",
            *(f"model.{key}={value}" for key, value in keys.items()),
            "model.dropout=0.0",
            "training.max_steps=2",
            "tokenizer.max_tokens_per_sentence=64",
            f"output_dir={run_dir.parent}",
            f"run_name={run_dir.name}",
            *overrides,
        ],
    )


def tiny_task(tokenizer) -> ClassificationTask:
    ids, _ = encode_texts(tokenizer, ["the film was great", "a dull boring movie"] * 4, max_tokens=16)
    corpus = LabelledCorpus(ids, [1, 0] * 4)
    return ClassificationTask(corpus, corpus, tokenizer.get_vocab_size(), 2)


def test_a_pretrained_tokenizer_keeps_its_template_and_lower_casing(bert):
    tokenizer = source_tokenizer(str(bert))
    cls, sep = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
    ids, cut = encode_texts(
        tokenizer, ["The FILM was GREAT", "the film was great and the plot was slow", "a"], max_tokens=6
    )
    assert (
        ids[0] == ids[1] == [cls, *tokenizer.encode("the film was great", add_special_tokens=False).ids, sep]
    )
    assert cut == 1 and len(ids[2]) == 3  # the long text cut with [SEP] kept; no padding to the batch's width


def test_the_trainer_starts_from_the_folder_and_a_resume_does_not(bert, tmp_path):
    torch.manual_seed(0)
    tokenizer = source_tokenizer(str(bert))
    cfg = classifier_config(bert, tmp_path / "run")
    expected, _ = bert_state_dict(read_hf_weights(bert))
    trainer = Trainer(cfg, tiny_task(tokenizer), tmp_path / "run", NullTracker(output_dir=tmp_path))
    weights = trainer.model.state_dict()
    for name in (
        "embeddings.src.weight",
        "encoder.layers.0.self_attn.in_proj.weight",
        "embeddings.norm.bias",
    ):
        assert torch.equal(weights[name], expected[name]), name
    trainer.fit()  # its best checkpoint: the source of the next test
    resumed = Trainer(
        cfg, tiny_task(tokenizer), tmp_path / "other", NullTracker(output_dir=tmp_path), resuming=True
    )
    assert not torch.equal(
        resumed.model.state_dict()["embeddings.src.weight"], expected["embeddings.src.weight"]
    )


def test_a_checkpoint_of_this_project_is_a_source_with_its_tokenizer(bert, tmp_path):
    torch.manual_seed(0)
    tokenizer = source_tokenizer(str(bert))
    first = Trainer(
        classifier_config(bert, tmp_path / "a"),
        tiny_task(tokenizer),
        tmp_path / "a",
        NullTracker(output_dir=tmp_path),
        inference={"tokenizers": {"text": tokenizer.to_str()}, "family": "encoder_classifier"},
    )
    result = first.fit()
    torch.manual_seed(1)
    task = tiny_task(tokenizer)
    fresh = build(first.cfg.model, **task.model_sizes())  # other random weights, the same shapes
    assert not torch.equal(fresh.state_dict()["head.out.weight"], first.model.state_dict()["head.out.weight"])
    report = initialise_from(
        fresh, str(result.best_checkpoint), "encoder_classifier", tokenizer.get_vocab_size()
    )
    assert report.new == [] and report.ignored == []  # every tensor, head included
    best = torch.load(result.best_checkpoint, weights_only=True)["model"]
    assert all(torch.equal(fresh.state_dict()[name], best[name]) for name in best)
    assert source_tokenizer(str(result.best_checkpoint)).to_str() == tokenizer.to_str()
    with pytest.raises(
        InitSourceError, match="holds a 'encoder_classifier' model; model.family='decoder_lm'"
    ):
        initialise_from(fresh, str(result.best_checkpoint), "decoder_lm")
