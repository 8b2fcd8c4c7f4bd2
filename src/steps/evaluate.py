"""Step 4: score the best checkpoint on the held-out test split."""

from typing import Any

from src.steps.context import ConfigLike, tracked_step


def run(config: ConfigLike, tokenized: dict[str, Any], trained: dict[str, Any], *,
        offline: bool | None = None) -> dict[str, Any]:
    import pandas as pd
    from datasets import load_from_disk

    from src.data.tokenizer import BOS_ID, EOS_ID
    from src.evaluation.evaluate import evaluate, save_metrics, save_samples
    from src.inference import load_for_inference
    from src.tracking import resolve_input
    from src.training.probe import AttentionProbe

    with tracked_step("evaluate", config, "testing", offline=offline) as step:
        cfg, tracker = step.cfg, step.tracker
        tok_dir = resolve_input(tokenized, "tokenized_dir", artifact="tokenized")
        checkpoint = resolve_input(trained, "checkpoint", artifact=f"{cfg.tracking.model_name}-weights")
        test = load_from_disk(str(tok_dir / "encoded"))["test"]
        trained_model = load_for_inference(checkpoint, cfg.training.device)  # the checkpoint alone: model + tokenizers
        model, tokenizers, device = trained_model.model, trained_model.tokenizers, trained_model.device
        result = evaluate(model, test, tokenizers["tgt"], cfg, device)
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
        AttentionProbe.from_ids(test["src_ids"][:n], hyp_ids, tokenizers["src"], tokenizers["tgt"]).report(model, tracker, 0)
        return {"metrics": metrics, "metrics_path": str(path), "task_id": tracker.task_id}
