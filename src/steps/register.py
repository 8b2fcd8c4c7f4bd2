"""Step 5: tag the train step's model production (and publish it) only when it passes the quality gate.

The model was registered once, by the train step; this step finds it by id and adds its stage,
test metrics and the gate's reason, so the registry holds one model per trained checkpoint.
"""

from typing import Any

from src.steps.context import ConfigLike, for_task, tracked_step


def run(config: ConfigLike, trained: dict[str, Any], evaluated: dict[str, Any], *,
        offline: bool | None = None) -> dict[str, Any]:
    from src.evaluation.gate import quality_gate
    from src.orchestration import published_model_metric

    with tracked_step("register", config, "custom", offline=offline) as step:
        cfg, tracker = step.cfg, step.tracker
        gate = for_task(cfg).gate(cfg, evaluated["metrics"])  # the task's metric: BLEU, accuracy, bpc
        higher_is_better = gate.get("higher_is_better", True)  # bpc: lower is better
        champion = published_model_metric(cfg.tracking.project_name, cfg.tracking.model_name, gate["metric"],
                                          higher_is_better=higher_is_better)
        decision = quality_gate(gate["value"], gate["threshold"], champion, metric=gate["name"],
                                higher_is_better=higher_is_better)
        model_id = tracker.update_model(
            trained["model_id"], name=cfg.tracking.model_name, source_task_id=trained["task_id"],
            tags=[decision.stage, *cfg.tracking.tags],
            metadata={**gate["metadata"], "stage": decision.stage, "reason": decision.reason},
            publish=decision.promote,
        )
        record = {"model_id": model_id, "stage": decision.stage, "reason": decision.reason, gate["metric"]: gate["value"],
                  f"champion_{gate['metric']}": champion, "threshold": gate["threshold"]}
        tracker.upload_artifact("registration", record)
        tracker.log_text(f"registration: {decision.stage} ({decision.reason})")
        return record | {"task_id": tracker.task_id}
