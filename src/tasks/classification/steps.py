"""What each pipeline step does for text classification (IMDB sentiment by default).

The same five steps as translation (``src/tasks/translation/steps.py``): labelled text (IMDB, generated
ListOps, a local file or a Hugging Face dataset) is cleaned and split with a data card; the
``tokenizer.kind`` tokenizer (BPE, bytes, characters or words) is made from the training texts;
the one training loop trains the ``model.family`` classifier; the test split is scored (accuracy,
macro-F1, per-class precision and recall, a confusion matrix, the most confidently wrong texts,
[CLS] heatmaps); accuracy gates the registry.
"""

from pathlib import Path
from typing import TYPE_CHECKING, Any

from src.tasks.common import load_tokenized, record_tokenized, train_and_register
from src.tasks.spec import StepContext

if TYPE_CHECKING:
    from src.inference import InferenceModel


def read_rows(data):
    """The labelled rows of ``data.source``: the IMDB CSV, generated ListOps, a local file, or a Hugging Face
    dataset."""
    from src.data import text_classification as tc

    if data.source == "imdb":
        return tc.read_imdb(data.imdb_path, data.max_rows)
    if data.source == "listops":
        from src.data.listops import read_listops

        return read_listops(data)
    if data.source == "local":
        return tc.read_local_labelled(data.local_path, data.text_column, data.label_column, data.max_rows)
    return tc.read_hf_labelled(data.hf_name, data.hf_config, data.hf_split, data.text_column,
                               data.label_column,
                               data.max_rows)


def data_prep(step: StepContext) -> dict[str, Any]:
    from src.data.prepare import check_split_sizes
    from src.data.text_classification import prepare_text_classification

    data, out_dir, tracker = step.cfg.data, step.step_dir, step.tracker
    card = prepare_text_classification(read_rows(data), out_dir,
                                       valid_size=data.valid_count or data.valid_fraction,
                                       test_size=data.test_count or data.test_fraction, salt=data.split_salt,
                                       max_chars=data.max_chars)
    check_split_sizes(card["counts"], data)  # before anything trains on it
    tracker.upload_artifact("data_card", card)
    tracker.upload_artifact("dataset", out_dir / "dataset")
    tracker.log_scalars("texts per split", card["counts"], 0)
    tracker.log_scalars("dropped rows", {"total": card["dropped_rows"], **card["dropped"]}, 0)
    for split, balance in card["class_balance"].items():
        tracker.log_scalars(f"class balance/{split}", balance, 0)
    if (out_dir / "length_histogram.png").exists():
        tracker.log_image("data card", "length histogram", out_dir / "length_histogram.png", 0)
    return {"data_dir": str(out_dir), "task_id": tracker.task_id, "counts": card["counts"],
            "labels": card["labels"], "corpus": "dataset"}


def tokenize(step: StepContext, data: dict[str, Any]) -> dict[str, Any]:
    """The ``tokenizer.kind`` tokenizer (trained on the training texts, or the fixed byte one), or the one
    that comes with ``model.init_from``'s (or ``training.distill_from``'s) weights; every text encoded as
    ``[CLS] + tokens`` (a pretrained tokenizer: its own template), cut to ``max_tokens_per_sentence``."""
    from datasets import Dataset, DatasetDict, load_from_disk

    from src.data.tokenizer import load_tokenizer, train_text_tokenizer
    from src.tasks.classification.task import encode_texts
    from src.tracking import resolve_input
    from src.training.init_from import source_tokenizer

    cfg, out_dir, tracker = step.cfg, step.step_dir, step.tracker
    data_dir = resolve_input(data, "data_dir", artifact="dataset", subdir="dataset")
    dataset = load_from_disk(str(data_dir / "dataset"))
    # the weights' tokenizer: model.init_from's, or a distillation teacher's (the student reads its ids)
    weights = cfg.model.init_from or cfg.training.distill_from
    pretrained = source_tokenizer(weights) if weights else None
    if pretrained is not None:  # the ids the pretrained embeddings know; tokenizer.kind is not used
        pretrained.save(str(out_dir / "tokenizer.json"))
    tokenizer = pretrained or load_tokenizer(train_text_tokenizer(dataset["train"], cfg.tokenizer,
                                                                  out_dir / "tokenizer.json"))
    encoded, report = DatasetDict(), {}
    for name, split in dataset.items():
        ids, truncated = encode_texts(tokenizer, split["text"], cfg.tokenizer.max_tokens_per_sentence)
        encoded[name] = Dataset.from_dict({"ids": ids, "label": split["label"], "text": split["text"]})
        report[name] = {"texts": len(ids), "tokens": sum(map(len, ids)), "truncated": truncated}
    encoded.save_to_disk(str(out_dir / "encoded"))
    record_tokenized(tracker, out_dir, out_dir / "tokenizer.json", report)
    return {"tokenized_dir": str(out_dir), "task_id": tracker.task_id,
            "tokenizers": {"text": str(out_dir / "tokenizer.json")}, "labels": data["labels"]}


def train(step: StepContext, tokenized: dict[str, Any], resume: bool) -> dict[str, Any]:
    from src.training.checkpoint_format import inference_fields
    from src.tasks.classification.task import ClassificationProbe, ClassificationTask, LabelledCorpus

    cfg = step.cfg
    encoded, tokenizers = load_tokenized(tokenized)
    names = label_names(tokenized["labels"])
    n_probe = cfg.tracking.probe_sentences
    probe = ClassificationProbe.from_ids(encoded["validation"]["ids"][:n_probe],
                                         tokenizers["text"]) if n_probe else None
    task = ClassificationTask(LabelledCorpus.from_dataset(encoded["train"]),
                              LabelledCorpus.from_dataset(encoded["validation"]),
                              tokenizers["text"].get_vocab_size(), len(names), probe)
    inference = inference_fields(tokenizers, cfg.model.family) | {"labels": names}
    return train_and_register(step, task, inference, resume)


def label_names(mapping: dict[str, int]) -> list[str]:
    """Class names in id order."""
    return [name for name, _ in sorted(mapping.items(), key=lambda item: item[1])]


def evaluate(step: StepContext, tokenized: dict[str, Any], model: "InferenceModel") -> dict[str, Any]:
    from datasets import load_from_disk

    from src.tasks.classification.task import (
        ClassificationProbe,
        LabelledCorpus,
        classification_metrics,
        predict,
    )
    from src.tracking import resolve_input

    cfg, tracker = step.cfg, step.tracker
    tok_dir = resolve_input(tokenized, "tokenized_dir", artifact="tokenized")
    test = load_from_disk(str(tok_dir / "encoded"))["test"]
    names = model.labels
    probabilities, loss = predict(model.model, LabelledCorpus.from_dataset(test), cfg.batching.max_tokens,
                                  model.device)
    scores = classification_metrics(probabilities.argmax(-1).tolist(), [int(x) for x in test["label"]],
                                    len(names))
    metrics, path = report_test_scores(tracker, scores, names, loss, "n_texts",
                                       step.step_dir / "metrics.json")
    worst = worst_misclassified(test, probabilities, names, cfg.evaluation.n_worst)
    tracker.log_table("misclassified", "most confident mistakes", worst, 0)
    tracker.upload_artifact("predictions",
                            save_predictions(test, probabilities, names, step.step_dir / "predictions.tsv"))
    n = cfg.tracking.probe_sentences
    if n:
        ClassificationProbe.from_ids(test["ids"][:n], model.tokenizers["text"]).report(model.model, tracker,
                                                                                       0)
    return {"metrics": metrics, "metrics_path": str(path), "task_id": tracker.task_id}


def report_test_scores(tracker, scores: dict[str, Any], names: list[str], loss: float, count_key: str,
                       path: Path) -> tuple[dict[str, Any], Path]:
    """``metrics.json`` and the test scalars of a classifier (texts or images): accuracy, macro-F1 and
    loss, precision and recall per class, the confusion matrix. Returns the metrics and the file."""
    from src.evaluation.evaluate import save_metrics

    metrics = {"accuracy": scores["accuracy"], "macro_f1": scores["macro_f1"], "loss": loss,
               count_key: scores["n"],
               "labels": names, "confusion": scores["confusion"],
               "per_class": {name: {"precision": p, "recall": r}
                             for name, p, r in zip(names, scores["precision"], scores["recall"])}}
    path = save_metrics(metrics, path)
    tracker.upload_artifact("metrics", path)
    tracker.log_scalars(
        "test", {"accuracy": metrics["accuracy"], "macro_f1": metrics["macro_f1"], "loss": loss}, 0)
    tracker.log_scalars("test/precision", dict(zip(names, scores["precision"])), 0)
    tracker.log_scalars("test/recall", dict(zip(names, scores["recall"])), 0)
    tracker.log_confusion_matrix("confusion matrix", "test", scores["confusion"], names, 0)
    return metrics, path


def worst_misclassified(test, probabilities, names: list[str], n: int):
    """The ``n`` wrong predictions made with the highest confidence: the reviews a researcher reads first."""
    import pandas as pd

    from src.training.probe import shorten

    confidence, predicted = probabilities.max(-1)
    rows = [
        (float(confidence[i]), i) for i, label in enumerate(test["label"]) if int(predicted[i]) != int(label)]
    rows.sort(reverse=True)
    return pd.DataFrame([{"text": shorten(test["text"][i], 300), "label": names[int(test["label"][i])],
                          "predicted": names[int(predicted[i])],
                          "confidence": round(c, 4)} for c, i in rows[:n]],
                        columns=["text", "label", "predicted", "confidence"])


def save_predictions(test, probabilities, names: list[str], path: Path) -> Path:
    """Every test text with its label, the predicted class and its probability, as TSV."""
    confidence, predicted = probabilities.max(-1)
    lines = ["\t".join(["text", "label", "predicted", "confidence"])]
    for i, (text, label) in enumerate(zip(test["text"], test["label"])):
        lines.append("\t".join([" ".join(text.split()), names[int(label)], names[int(predicted[i])],
                                f"{float(confidence[i]):.4f}"]))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def gate(cfg, metrics: dict[str, Any]) -> dict[str, Any]:
    """The register step's gate: test accuracy against ``evaluation.accuracy_threshold``."""
    return {"metric": "accuracy", "name": "accuracy", "value": float(metrics["accuracy"]),
            "threshold": cfg.evaluation.accuracy_threshold,
            "metadata": {"accuracy": float(metrics["accuracy"]), "macro_f1": float(metrics["macro_f1"]),
                         "test_loss": float(metrics["loss"])}}


def summary(cfg, outputs: dict[str, Any]) -> list[str]:
    """The test figures ``train`` prints at the end (the register step's decision follows them)."""
    metrics = outputs["evaluate"]["metrics"]
    return [f"test accuracy:   {metrics['accuracy']:.4f} ({metrics['n_texts']} texts)",
            f"test macro-F1:   {metrics['macro_f1']:.4f}"]
