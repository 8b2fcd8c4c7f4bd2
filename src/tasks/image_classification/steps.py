"""What each pipeline step does for image classification (Fashion-MNIST with a Vision Transformer).

The same five steps as the text tasks: the IDX files are read and split with a data card; the
"tokenize" step turns images into the model's input format (uint8 tensors, the training split's
normalisation, the patch count); the one training loop trains the ViT; the test split is scored
(accuracy, macro-F1, per-class precision and recall, a confusion matrix, the most confident
mistakes, [CLS] attention and rollout, the patch-embedding filters); accuracy gates the registry.
"""

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from src.tasks.common import train_and_register
from src.tasks.spec import StepContext

if TYPE_CHECKING:
    from src.inference import InferenceModel

EXAMPLES_PER_CLASS = 6


def data_prep(step: StepContext) -> dict[str, Any]:
    """Read the IDX files, hold out validation images from the training set, save the splits and the card."""
    from src.data.fashion_mnist import example_indices, load_splits, prepare_fashion_mnist
    from src.data.prepare import check_split_sizes
    from src.visualization.images import plot_image_grid

    data, out_dir, tracker = step.cfg.data, step.step_dir, step.tracker
    card = prepare_fashion_mnist(data.fashion_mnist_path, out_dir, data.valid_count or data.valid_fraction,
                                 data.split_salt, data.max_rows)
    check_split_sizes(card["counts"], data)  # before anything trains on it
    (out_dir / "data_card.json").write_text(json.dumps(card, indent=2) + "\n", encoding="utf-8")
    images, labels = load_splits(out_dir)["train"]
    picks = example_indices(labels, EXAMPLES_PER_CLASS)
    figure = plot_image_grid(images[picks], [card["labels"][labels[i]] for i in picks], EXAMPLES_PER_CLASS,
                             "Fashion-MNIST training images, one class per row")
    figure.savefig(out_dir / "examples.png", dpi=100)
    tracker.upload_artifact("data_card", card)
    tracker.upload_artifact("dataset", out_dir / "dataset")
    tracker.log_scalars("images per split", card["counts"], 0)
    for split, balance in card["class_balance"].items():
        tracker.log_scalars(f"class balance/{split}", balance, 0)
    tracker.log_image("data card", "examples", out_dir / "examples.png", 0)
    return {"data_dir": str(out_dir), "task_id": tracker.task_id, "counts": card["counts"],
            "labels": card["labels"], "corpus": "dataset"}


def tokenize(step: StepContext, data: dict[str, Any]) -> dict[str, Any]:
    """Images need no tokenizer: this step stores each split as (N, C, H, W) uint8 and int64 label
    tensors in ``encoded.pt``, computes the training split's pixel mean and std (``image_stats.json``,
    later carried by every checkpoint) and records the patch count N, so a batch costs N + 1 tokens."""
    import torch

    from src.data.fashion_mnist import load_splits
    from src.tasks.image_classification.task import ImageStats
    from src.tracking import resolve_input

    cfg, out_dir, tracker = step.cfg, step.step_dir, step.tracker
    splits = load_splits(resolve_input(data, "data_dir", artifact="dataset", subdir="dataset"))
    encoded = {name: {"images": torch.from_numpy(x).unsqueeze(1), "labels": torch.from_numpy(y).long()}
               for name, (x, y) in splits.items()}  # (N, H, W) -> (N, 1, H, W): one grey channel
    shape, expected = tuple(encoded["train"]["images"].shape[1:]), (cfg.model.in_channels,
                                                                    cfg.model.image_size,
                                                                     cfg.model.image_size)
    if shape != expected:
        raise ValueError(f"images are {shape} (C, H, W), the model expects {expected}: "
                         "set model.in_channels and model.image_size to match the data")
    stats = ImageStats.of(encoded["train"]["images"])
    n_patches = (cfg.model.image_size // cfg.model.patch_size) ** 2
    torch.save(encoded, out_dir / "encoded.pt")
    (out_dir / "image_stats.json").write_text(json.dumps(stats.to_dict()) + "\n", encoding="utf-8")
    report = {name: {"images": len(split["labels"]), "patches": len(split["labels"]) * n_patches,
                     "tokens": len(split["labels"]) * (n_patches + 1)} for name, split in encoded.items()}
    tracker.upload_artifact("tokenization_report",
                            {"splits": report, "patches_per_image": n_patches, **stats.to_dict()})
    tracker.upload_artifact("tokenized", out_dir)
    for name, counts in report.items():
        tracker.log_scalars(f"tokenization/{name}", counts, 0)
    tracker.log_scalars("normalisation", {"mean": stats.mean[0], "std": stats.std[0]}, 0)
    return {"tokenized_dir": str(out_dir), "task_id": tracker.task_id, "tokenizers": {},
            "labels": data["labels"],
            "image_stats": stats.to_dict(), "n_patches": n_patches}


def load_encoded(tokenized: dict[str, Any]):
    """The tokenize step's tensors per split and the training split's ``ImageStats``."""
    from src.tasks.image_classification.task import read_encoded
    from src.tracking import resolve_input

    return read_encoded(resolve_input(tokenized, "tokenized_dir", artifact="tokenized"))


def train(step: StepContext, tokenized: dict[str, Any], resume: bool) -> dict[str, Any]:
    from src.training.checkpoint_format import inference_fields
    from src.tasks.image_classification.task import ImageAttentionProbe, ImageClassificationTask, ImageSplit

    cfg = step.cfg
    splits, stats = load_encoded(tokenized)
    names, n_probe = list(tokenized["labels"]), cfg.tracking.probe_sentences
    valid = splits["validation"]
    probe = ImageAttentionProbe(ImageSplit(valid.images[:n_probe], valid.labels[:n_probe]), stats, names)
    n_patches = (cfg.model.image_size // cfg.model.patch_size) ** 2
    task = ImageClassificationTask(splits["train"], valid, stats, len(names), n_patches + 1,
                                   cfg.data.augmentation,
                                   probe, eval_batch_size=max(cfg.batching.batch_size or 0, 1000))
    inference = inference_fields({}, cfg.model.family) | {"labels": names, "image_stats": stats.to_dict()}
    return train_and_register(step, task, inference, resume)


def evaluate(step: StepContext, tokenized: dict[str, Any], model: "InferenceModel") -> dict[str, Any]:
    from src.tasks.classification.steps import report_test_scores
    from src.tasks.classification.task import classification_metrics
    from src.tasks.image_classification.task import (
        ImageAttentionProbe,
        ImageSplit,
        ImageStats,
        predict_images,
    )
    from src.visualization.images import plot_patch_filters

    cfg, tracker = step.cfg, step.tracker
    test = load_encoded(tokenized)[0]["test"]
    # the training split's, from the checkpoint
    stats, names = ImageStats.from_dict(model.image_stats), model.labels
    probabilities, loss = predict_images(model.model, test, stats, model.device)
    scores = classification_metrics(probabilities.argmax(-1).tolist(), test.labels.tolist(), len(names))
    metrics, path = report_test_scores(tracker, scores, names, loss, "n_images",
                                       step.step_dir / "metrics.json")
    tracker.log_figure("misclassified", "most confident mistakes",
                       mistakes_figure(test, probabilities, names, cfg.evaluation.n_worst), 0)
    predictions = save_predictions(test, probabilities, names, step.step_dir / "predictions.tsv")
    tracker.upload_artifact("predictions", predictions)
    n = cfg.tracking.probe_sentences
    ImageAttentionProbe(ImageSplit(test.images[:n], test.labels[:n]), stats, names).report(model.model,
                                                                                           tracker, 0)
    weight = model.model.embeddings.patch_embedding.projection.weight
    tracker.log_figure("patch embedding", "filters", plot_patch_filters(weight), 0)
    return {"metrics": metrics, "metrics_path": str(path), "task_id": tracker.task_id}


def mistakes_figure(test, probabilities, names: list[str], n: int):
    """The ``n`` wrong predictions made with the highest confidence, titled "predicted (p) / true"."""
    from src.visualization.images import plot_image_grid

    confidence, predicted = probabilities.max(-1)
    wrong = (predicted != test.labels).nonzero().flatten()
    worst = wrong[confidence[wrong].argsort(descending=True)][:n].tolist()
    titles = [
        f"{names[int(predicted[i])]} ({float(confidence[i]):.2f})\n/ {names[int(test.labels[i])]}"
        for i in worst]
    title = f"most confident mistakes: predicted (probability) / true, {len(wrong)} wrong of {len(test)}"
    return plot_image_grid(test.images[worst, 0], titles, n_cols=10, title=title)


def save_predictions(test, probabilities, names: list[str], path: Path) -> Path:
    """Every test image's index, label, predicted class and its probability, as TSV."""
    confidence, predicted = probabilities.max(-1)
    lines = ["index\tlabel\tpredicted\tconfidence"]
    lines += [f"{i}\t{names[int(label)]}\t{names[int(predicted[i])]}\t{float(confidence[i]):.4f}"
              for i, label in enumerate(test.labels)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def summary(cfg, outputs: dict[str, Any]) -> list[str]:
    """The test figures ``train`` prints at the end (the register step's decision follows them)."""
    metrics = outputs["evaluate"]["metrics"]
    return [f"test accuracy:   {metrics['accuracy']:.4f} ({metrics['n_images']} images)",
            f"test macro-F1:   {metrics['macro_f1']:.4f}"]
