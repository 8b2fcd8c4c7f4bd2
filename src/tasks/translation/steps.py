"""What each pipeline step does for translation; ``src/steps`` opens the step's task and calls these.

Each function takes the open ``StepContext`` (config, tracker, folders) and the upstream steps'
outputs, does the step's work, reports to the tracker and returns the step's small output dict.
"""

from pathlib import Path
from typing import TYPE_CHECKING, Any

from src.tasks.common import load_tokenized, train_and_register
from src.tasks.spec import StepContext

if TYPE_CHECKING:
    from src.inference import InferenceModel


def data_prep(step: StepContext) -> dict[str, Any]:
    """Read the raw parallel text, clean, split, and save the dataset with its data card."""
    from src.data.prepare import check_split_sizes, prepare_corpus

    out_dir = step.step_dir
    card = prepare_corpus(step.cfg.data, out_dir)
    check_split_sizes(card["counts"], step.cfg.data)  # before anything trains on it
    step.tracker.upload_artifact("data_card", card)
    step.tracker.upload_artifact("dataset", out_dir / "dataset")
    for split, count in card["counts"].items():
        step.tracker.log_scalar("pairs per split", split, count, 0)
    for reason, count in card["dropped"].items():
        step.tracker.log_scalar("dropped rows", reason, count, 0)
    histogram = out_dir / "length_histogram.png"
    if histogram.exists():
        step.tracker.log_image("data card", "length histogram", histogram, 0)
    return {"data_dir": str(out_dir), "task_id": step.tracker.task_id, "counts": card["counts"],
            "corpus": "dataset"}


def tokenize(step: StepContext, data: dict[str, Any]) -> dict[str, Any]:
    """Train BPE on the training split and encode every split into Arrow."""
    from datasets import load_from_disk

    from src.data.tokenizer import encode_corpus, train_tokenizer
    from src.tracking import resolve_input

    data_dir = resolve_input(data, "data_dir", artifact="dataset", subdir="dataset")
    dataset = load_from_disk(str(data_dir / "dataset" if (data_dir / "dataset").exists() else data_dir))
    out_dir = step.step_dir
    tokenizer_paths = train_tokenizer(dataset, step.cfg.tokenizer, out_dir)
    encoded, report = encode_corpus(dataset, tokenizer_paths, step.cfg.tokenizer, out_dir)
    step.tracker.upload_artifact("tokenizer", Path(tokenizer_paths["tgt"]))  # the file a user downloads alone
    step.tracker.upload_artifact("tokenization_report", report)
    # tokenizer(s) + encoded splits: what later steps fetch
    step.tracker.upload_artifact("tokenized", out_dir)
    for split, stats in report.get("splits", {}).items():
        for key, value in stats.items():
            if isinstance(value, (int, float)):
                step.tracker.log_scalar(f"tokenization/{split}", key, value, 0)
    return {"tokenized_dir": str(out_dir), "task_id": step.tracker.task_id,
            "tokenizers": {k: str(v) for k, v in tokenizer_paths.items()}}


def train(step: StepContext, tokenized: dict[str, Any], resume: bool) -> dict[str, Any]:
    """Train the Transformer; the best checkpoint becomes an output model of the step's task."""
    from src.training.checkpoint_format import inference_fields
    from src.tasks.translation.task import TranslationTask
    from src.training.loss import perplexity

    cfg = step.cfg
    encoded, tokenizers = load_tokenized(tokenized)
    task = TranslationTask.from_encoded(encoded, tokenizers, cfg.batching.upsample_primary,
                                        cfg.tracking.probe_sentences)
    return train_and_register(step, task, inference_fields(tokenizers, cfg.model.family), resume,
                              lambda loss: {"valid_perplexity": perplexity(loss)})


def evaluate(step: StepContext, tokenized: dict[str, Any], trained_model: "InferenceModel") -> dict[str, Any]:
    """Score the best checkpoint on the held-out test split: loss, BLEU/chrF, samples, heatmaps."""
    import pandas as pd
    from datasets import load_from_disk

    from src.data.special_tokens import BOS_ID, EOS_ID
    from src.tasks.translation.scoring import score_test_split
    from src.evaluation.evaluate import save_metrics, save_samples
    from src.tracking import resolve_input
    from src.training.probe import AttentionProbe

    cfg, tracker = step.cfg, step.tracker
    tok_dir = resolve_input(tokenized, "tokenized_dir", artifact="tokenized")
    test = load_from_disk(str(tok_dir / "encoded"))["test"]
    model, tokenizers, device = trained_model.model, trained_model.tokenizers, trained_model.device
    result = score_test_split(model, test, tokenizers["tgt"], cfg, device)
    metrics = result["metrics"]
    path = save_metrics(metrics, step.step_dir / "metrics.json")
    tracker.upload_artifact("samples", save_samples(result["translations"], step.step_dir / "samples.tsv"))
    tracker.upload_artifact("metrics", path)
    tracker.log_scalars("test", metrics["test"], 0)
    for name in ("greedy", "beam"):
        tracker.log_scalars(f"test/{name}", {k: metrics[name][k] for k in ("bleu", "chrf")}, 0)
    tracker.log_table("translations", "test samples", pd.DataFrame(result["samples"]), 0)
    # Heatmaps of what the model attended to while writing its own (beam) translations.
    n = min(len(result["samples"]), cfg.tracking.probe_sentences)
    hyp_ids = [[BOS_ID, *tokenizers["tgt"].encode(h["beam"], add_special_tokens=False).ids, EOS_ID]
               for h in result["samples"][:n]]
    AttentionProbe.from_ids(test["src_ids"][:n], hyp_ids, tokenizers["src"], tokenizers["tgt"]).report(
        model, tracker, 0)
    return {"metrics": metrics, "metrics_path": str(path), "task_id": tracker.task_id}


def gate(cfg, metrics: dict[str, Any]) -> dict[str, Any]:
    """The register step's gate: beam BLEU against ``evaluation.bleu_threshold``, and the model's metadata."""
    return {"metric": "bleu", "name": "BLEU", "value": float(metrics["beam"]["bleu"]),
            "threshold": cfg.evaluation.bleu_threshold,
            "metadata": {"bleu": float(metrics["beam"]["bleu"]), "chrf": float(metrics["beam"]["chrf"]),
                         "bleu_greedy": float(metrics["greedy"]["bleu"]),
                         "test_loss": float(metrics["test"]["loss"])}}


def summary(cfg, outputs: dict[str, Any]) -> list[str]:
    """The test figures ``train`` prints at the end (the register step's decision follows them)."""
    metrics = outputs["evaluate"]["metrics"]
    return [f"test BLEU:       {metrics['beam']['bleu']:.2f} (beam {cfg.evaluation.beam_size}), "
            f"{metrics['greedy']['bleu']:.2f} (greedy)",
            f"test chrF:       {metrics['beam']['chrf']:.2f}",
            f"test perplexity: {metrics['test']['perplexity']:.2f}"]
