"""What each pipeline step does for masked-LM pretraining (IMDB's training reviews by default).

Unlabelled text: IMDB reviews, the prose corpus (Austen + Brown), local .txt files or a Hugging Face
dataset's text column. From IMDB only the reviews of the text classifier's *training* split are read: the
data step splits the CSV exactly as the classification task does with the same ``data`` settings
(cleaning, ``max_rows``, ``max_chars``, the validation/test sizes and the salt), sets that split's
validation and test reviews aside unread, and divides its training reviews into the pretraining splits
(``HELD_OUT`` each for validation and test, by another salt). A classifier fine-tuned from this encoder on
the same ``data`` settings is then tested on reviews its encoder never read. The other sources are split
as the language model splits them (``src/data/prose.py``).

The ``tokenizer.kind`` tokenizer is trained on the training texts and ``[MASK]`` appended to it; texts
are encoded as the classifier encodes them. The one training loop trains the ``encoder_mlm``; the test
split is scored with a fixed mask; the test masked-token loss gates the registry, lower being better.
"""

from typing import TYPE_CHECKING, Any

from src.tasks.common import load_tokenized, record_tokenized, train_and_register
from src.tasks.spec import StepContext

if TYPE_CHECKING:
    from src.inference import InferenceModel

# IMDB: the share of the classifier's training reviews held out for each of validation and test
HELD_OUT = 0.05


def read_texts(data) -> tuple[dict[str, list[str]], dict[str, Any]]:
    """The texts of each pretraining split, and what the data card says of the source."""
    if data.source == "imdb":
        return imdb_training_texts(data)
    from src.data.prose import read_prose, split_documents

    documents = read_prose(data)
    if not documents:
        raise ValueError(f"data.source={data.source!r} gave no documents")
    splits = split_documents(documents, data)
    return ({name: [doc.text for doc in docs] for name, docs in splits.items()},
            {"description": f"{data.source} ({', '.join(sorted({doc.corpus for doc in documents}))})"})


def imdb_training_texts(data) -> tuple[dict[str, list[str]], dict[str, Any]]:
    """The reviews of the classifier's training split (``data`` as the classification task reads it),
    divided into the pretraining splits; the classifier's validation and test reviews are left out."""
    from src.data.text_classification import clean_and_split, read_imdb, split_indices

    rows = read_imdb(data.imdb_path, data.max_rows)
    cleaned, classifier = clean_and_split(rows, data.valid_count or data.valid_fraction,
                                          data.test_count or data.test_fraction, data.split_salt,
                                          data.max_chars)
    reviews = [cleaned.texts[i] for i in classifier["train"]]
    own = split_indices(reviews, HELD_OUT, HELD_OUT, f"{data.split_salt}/masked_lm")
    return ({name: [reviews[i] for i in indices] for name, indices in own.items()},
            {"description": rows.description,
             "classifier_split": {name: len(indices) for name, indices in classifier.items()},
             "left_out": "the classifier's validation and test reviews (classifier_split), never read here",
             "held_out_fraction": HELD_OUT})


def data_prep(step: StepContext) -> dict[str, Any]:
    import json

    from datasets import Dataset, DatasetDict

    from src.data.prepare import check_split_sizes

    data, out_dir, tracker = step.cfg.data, step.step_dir, step.tracker
    texts, source = read_texts(data)
    counts = {name: len(split) for name, split in texts.items()}
    check_split_sizes(counts, data)  # before anything trains on it
    DatasetDict({name: Dataset.from_dict({"text": split}) for name, split in texts.items()}).save_to_disk(
        str(out_dir / "dataset"))
    card = {"source": data.source, **source, "counts": counts,
            "words": {name: sum(len(t.split()) for t in split) for name, split in texts.items()}}
    (out_dir / "data_card.json").write_text(json.dumps(card, indent=2), encoding="utf-8")
    tracker.upload_artifact("data_card", card)
    tracker.upload_artifact("dataset", out_dir / "dataset")
    tracker.log_scalars("texts per split", counts, 0)
    tracker.log_scalars("words per split", card["words"], 0)
    return {"data_dir": str(out_dir), "task_id": tracker.task_id, "counts": counts, "corpus": "dataset"}


def tokenize(step: StepContext, data: dict[str, Any]) -> dict[str, Any]:
    """The ``tokenizer.kind`` tokenizer trained on the training texts, ``[MASK]`` appended (the last id);
    every text encoded as ``[CLS] + tokens``, cut to ``max_tokens_per_sentence``. A text with nothing to
    mask (every token special or unknown) is left out and counted."""
    from datasets import Dataset, DatasetDict, load_from_disk

    from src.data.special_tokens import MASK
    from src.data.tokenizer import load_tokenizer, train_text_tokenizer
    from src.tasks.classification.task import encode_texts
    from src.tasks.masked_lm.task import FIRST_ORDINARY_ID
    from src.tracking import resolve_input

    cfg, out_dir, tracker = step.cfg, step.step_dir, step.tracker
    data_dir = resolve_input(data, "data_dir", artifact="dataset", subdir="dataset")
    dataset = load_from_disk(str(data_dir / "dataset"))
    path = train_text_tokenizer(dataset["train"], cfg.tokenizer, out_dir / "tokenizer.json")
    tokenizer = load_tokenizer(path)
    tokenizer.add_special_tokens([MASK])
    tokenizer.save(str(path))
    encoded, report = DatasetDict(), {}
    for name, split in dataset.items():
        ids, truncated = encode_texts(tokenizer, split["text"], cfg.tokenizer.max_tokens_per_sentence)
        keep = [i for i, row in enumerate(ids) if any(t >= FIRST_ORDINARY_ID for t in row)]
        encoded[name] = Dataset.from_dict({"ids": [ids[i] for i in keep],
                                           "text": [split["text"][i] for i in keep]})
        report[name] = {"texts": len(keep), "tokens": sum(len(ids[i]) for i in keep), "truncated": truncated,
                        "nothing_to_mask": len(ids) - len(keep)}
    encoded.save_to_disk(str(out_dir / "encoded"))
    record_tokenized(tracker, out_dir, path, report)
    return {"tokenized_dir": str(out_dir), "task_id": tracker.task_id, "tokenizers": {"text": str(path)},
            "mask_id": tokenizer.token_to_id(MASK)}


def probe_for(cfg, ids: list[list[int]], tokenizer):
    from src.data.special_tokens import MASK
    from src.tasks.masked_lm.task import MaskedLMProbe

    n = cfg.tracking.probe_sentences
    return MaskedLMProbe.from_ids(ids[:n], tokenizer, tokenizer.token_to_id(MASK)) if n else None


def train(step: StepContext, tokenized: dict[str, Any], resume: bool) -> dict[str, Any]:
    from src.data.special_tokens import MASK
    from src.tasks.masked_lm.task import VALID_SEED, MaskedLMTask, TextCorpus, fixed_masks
    from src.training.checkpoint_format import inference_fields

    cfg = step.cfg
    encoded, tokenizers = load_tokenized(tokenized)
    tokenizer = tokenizers["text"]
    mask_id = tokenizer.token_to_id(MASK)
    task = MaskedLMTask(TextCorpus(encoded["train"]["ids"]),
                        fixed_masks(encoded["validation"]["ids"], mask_id, VALID_SEED),
                        tokenizer.get_vocab_size(), mask_id,
                        probe_for(cfg, encoded["validation"]["ids"], tokenizer))
    return train_and_register(step, task, inference_fields(tokenizers, "encoder_mlm"), resume)


def evaluate(step: StepContext, tokenized: dict[str, Any], model: "InferenceModel") -> dict[str, Any]:
    from datasets import load_from_disk

    from src.evaluation.evaluate import save_metrics
    from src.tracking import resolve_input

    cfg, tracker = step.cfg, step.tracker
    tok_dir = resolve_input(tokenized, "tokenized_dir", artifact="tokenized")
    test = load_from_disk(str(tok_dir / "encoded"))["test"]
    metrics = {**score_test(model, test["ids"]), "step": model.step}
    path = save_metrics(metrics, step.step_dir / "metrics.json")
    tracker.upload_artifact("metrics", path)
    tracker.log_scalars("test", {key: metrics[key] for key in ("loss", "accuracy", "perplexity")}, 0)
    probe = probe_for(cfg, test["ids"], model.tokenizers["text"])
    if probe is not None:
        probe.report(model.model, tracker, 0)
    return {"metrics": metrics, "metrics_path": str(path), "task_id": tracker.task_id}


def score_test(model: "InferenceModel", ids: list[list[int]]) -> dict[str, Any]:
    """Masked-token loss, accuracy and perplexity of ``ids`` under the test split's fixed mask
    (``TEST_SEED``): the same positions for every run on the same texts, whatever its batch budget."""
    from src.data.special_tokens import MASK
    from src.tasks.masked_lm.task import TEST_SEED, fixed_masks, score_masked

    masked = fixed_masks(ids, model.tokenizers["text"].token_to_id(MASK), TEST_SEED)
    return score_masked(model.model, masked, model.config.batching.max_tokens, model.device)


def gate(cfg, metrics: dict[str, Any]) -> dict[str, Any]:
    """The register step's gate: test masked-token loss at most ``evaluation.masked_loss_threshold``."""
    return {"metric": "masked_loss", "name": "masked-token loss", "value": float(metrics["loss"]),
            "threshold": cfg.evaluation.masked_loss_threshold, "higher_is_better": False,
            "metadata": {"masked_loss": float(metrics["loss"]), "masked_accuracy": float(metrics["accuracy"]),
                         "perplexity": float(metrics["perplexity"])}}


def summary(cfg, outputs: dict[str, Any]) -> list[str]:
    """The test figures ``train`` prints at the end (the register step's decision follows them)."""
    metrics = outputs["evaluate"]["metrics"]
    return [(f"test masked-token loss:     {metrics['loss']:.4f} ({metrics['n_masked']:,} masked tokens "
             f"in {metrics['n_texts']:,} texts)"),
            f"test masked-token accuracy: {metrics['accuracy']:.4f} (perplexity {metrics['perplexity']:.2f})"]
