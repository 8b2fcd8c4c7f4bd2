"""Step 5: register the model, tagged production only when it passes the quality gate."""

from typing import Any

from src.steps.context import ConfigLike, tracked_step


def run(config: ConfigLike, trained: dict[str, Any], evaluated: dict[str, Any], *,
        offline: bool | None = None) -> dict[str, Any]:
    from src.evaluation.gate import quality_gate
    from src.tracking import published_model_metric, resolve_input

    with tracked_step("register", config, "custom", offline=offline) as step:
        cfg, tracker = step.cfg, step.tracker
        checkpoint = resolve_input(trained, "checkpoint", artifact=f"{cfg.tracking.model_name}-weights")
        metrics = evaluated["metrics"]
        bleu = float(metrics["beam"]["bleu"])
        champion = published_model_metric(cfg.tracking.project_name, cfg.tracking.model_name, "bleu")
        decision = quality_gate(bleu, cfg.evaluation.bleu_threshold, champion)
        model_id = tracker.register_model(
            checkpoint, name=cfg.tracking.model_name, tags=[decision.stage, *cfg.tracking.tags],
            config=cfg.model_dump(mode="json"),
            metadata={"bleu": bleu, "chrf": float(metrics["beam"]["chrf"]), "bleu_greedy": float(metrics["greedy"]["bleu"]),
                      "test_loss": float(metrics["test"]["loss"]), "stage": decision.stage, "reason": decision.reason},
            publish=decision.promote,
        )
        record = {"model_id": model_id, "stage": decision.stage, "reason": decision.reason, "bleu": bleu,
                  "champion_bleu": champion, "threshold": cfg.evaluation.bleu_threshold}
        tracker.upload_artifact("registration", record)
        tracker.log_text(f"registration: {decision.stage} ({decision.reason})")
        return record | {"task_id": tracker.task_id}
