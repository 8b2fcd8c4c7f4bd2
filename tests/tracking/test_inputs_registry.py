"""Step inputs and the champion model, in the cases that need no server."""

from pathlib import Path

import pytest

from src.orchestration import best_value, published_model_metric
from src.tracking import resolve_input


def test_local_output_of_the_previous_step_is_used(tmp_path: Path):
    (tmp_path / "encoded").mkdir()
    assert (
        resolve_input({"tokenized_dir": str(tmp_path), "task_id": "x"}, "tokenized_dir", artifact="encoded")
        == tmp_path
    )


@pytest.mark.parametrize("task_id", ["offline-123", "tracking-off", None])
def test_missing_output_without_a_server_task_is_explained(tmp_path: Path, task_id):
    with pytest.raises(FileNotFoundError, match="does not exist on this machine"):
        resolve_input(
            {"checkpoint": str(tmp_path / "best.pt"), "task_id": task_id},
            "checkpoint",
            artifact="best_checkpoint",
        )


def test_no_champion_without_a_server(no_clearml_config):
    assert published_model_metric("p", "m", "bleu", higher_is_better=True) is None


def test_the_champion_is_the_best_value_in_the_metric_s_own_direction():
    assert best_value([21.0, 27.5, 19.0], higher_is_better=True) == 27.5  # BLEU, accuracy
    assert best_value([2.1, 1.7, 2.6], higher_is_better=False) == 1.7  # bits per character, loss
    # never a NaN champion
    assert best_value([float("nan"), 1.9, float("inf")], higher_is_better=False) == 1.9
    assert best_value([], higher_is_better=True) is None
