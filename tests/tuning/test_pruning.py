"""Median pruning on the trainer's own validation scalars: a clearly bad trial stops at its first
evaluation."""

import json

import optuna
import pytest

from src.experiment import load_config
from src.tracking import NullTracker
from src.tuning.space import parse_space
from src.tuning.study import run_local_sweep
from src.tuning.trial import PruningTracker, TrialSettings, direction_of


def test_pruning_tracker_reports_valid_metric_and_prunes_below_the_median():
    study = optuna.create_study(pruner=optuna.pruners.MedianPruner(n_startup_trials=1))
    good = study.ask()
    inner = NullTracker()
    tracker = PruningTracker(inner, good, "loss")
    tracker.log_scalars("train", {"loss": 9.0}, 5)  # training loss: not the objective
    tracker.log_scalars("valid", {"loss": 2.0, "perplexity": 7.4}, 5)
    tracker.log_scalar("valid", "loss", 1.5, 10)
    assert good.storage.get_trial(good._trial_id).intermediate_values == {5: 2.0, 10: 1.5}
    assert tracker.best("minimize") == 1.5 and tracker.steps == 10
    assert inner.scalars[("valid", "loss")] == [(5, 2.0), (10, 1.5)]  # everything reaches the real tracker
    assert inner.scalars[("train", "loss")] == [(5, 9.0)]
    study.tell(good, 1.5)

    bad = PruningTracker(NullTracker(), study.ask(), "loss")
    with pytest.raises(optuna.TrialPruned, match="valid loss 4.0000 at step 5"):
        bad.log_scalars("valid", {"loss": 4.0}, 5)
    better = PruningTracker(NullTracker(), study.ask(), "loss")
    better.log_scalars("valid", {"loss": 1.0}, 5)  # below the median: goes on


def test_best_of_a_trial_without_validation_is_a_clear_error():
    tracker = PruningTracker(NullTracker(), optuna.create_study().ask(), "accuracy")
    with pytest.raises(ValueError, match="no valid/accuracy"):
        tracker.best("maximize")
    assert direction_of("accuracy") == "maximize" and direction_of("loss") == "minimize"


@pytest.mark.timeout(300)
def test_a_deliberately_bad_learning_rate_is_pruned_at_its_first_evaluation(tmp_path):
    """Two trials on the tiny config, tracking off, in this process (23-49 s measured on a shared machine).

    Trial 0 is the base config (lr 3e-3); with seed 0 the sampler then draws lr 1e-7, whose
    validation loss after 3 steps is above trial 0's, so the median pruner stops it at step 3 of 6.
    """
    base = load_config("config/tiny.yaml",
                       ["tracking.enabled=false", "training.max_steps=6", "training.eval_every=3",
                                            "training.checkpoint_every=3", "training.warmup_steps=2"])
    space = parse_space({"training.lr": {"choices": [3e-3, 1e-7]}}, base)
    settings = TrialSettings(base=base, space=space, study="bad-lr", sweep_dir=tmp_path / "bad-lr",
                             metric="loss",
                             direction="minimize", offline=True)
    result = run_local_sweep(settings, 2, seed=0, startup_trials=1)
    baseline, bad = result.rows
    assert (baseline["state"], baseline["params"], baseline["steps"], baseline["baseline"]) == (
        "COMPLETE", {"training.lr": 3e-3}, 6, True)
    assert (bad["state"], bad["params"], bad["steps"]) == ("PRUNED", {"training.lr": 1e-7}, 3)
    study = optuna.load_study(study_name="bad-lr", storage=f"sqlite:///{result.study_file}")
    trials = study.trials
    assert list(trials[1].intermediate_values) == [3]  # stopped at its first evaluation, before max_steps=6
    assert trials[1].intermediate_values[3] > trials[0].intermediate_values[3]
    assert not (tmp_path / "bad-lr" / "trial_001" / "train" / "checkpoints" / "step_00000006.pt").exists()
    best = load_config(result.best_config)  # usable with train --config
    assert best.training.lr == 3e-3 and best.model == base.model
    assert json.loads(result.trials_json.read_text())[1]["state"] == "PRUNED"


def test_failed_trials_are_recorded_the_search_goes_on_and_the_study_grows(tmp_path, monkeypatch):
    """The study's bookkeeping without training: trials stand in for run_trial (a second, tracking off)."""
    base = load_config("config/tiny.yaml", ["tracking.enabled=false"])
    space = parse_space({"training.lr": {"choices": [3e-3, 1e-3, 3e-4]}}, base)
    settings = TrialSettings(base=base, space=space, study="s", sweep_dir=tmp_path / "s", metric="loss",
                             direction="minimize", offline=True)

    def fake_trial(trial, settings):
        lr = settings.space.suggest(trial)["training.lr"]
        if trial.number == 1:
            raise RuntimeError("diverged")
        trial.set_user_attr("steps", 30)
        return 1.0 + lr  # the smallest lr wins

    monkeypatch.setattr("src.tuning.study.run_trial", fake_trial)
    first = run_local_sweep(settings, 3, seed=0)
    assert [row["state"] for row in first.rows] == ["COMPLETE", "FAIL", "COMPLETE"]
    assert first.rows[0]["params"] == {"training.lr": 3e-3} and first.rows[0]["baseline"]
    second = run_local_sweep(settings, 2, seed=0)  # same study, two more trials, no second baseline
    assert len(second.rows) == 5 and [row["baseline"] for row in second.rows].count(True) == 1
    completed = [row for row in second.rows if row["state"] == "COMPLETE"]
    best = min(completed, key=lambda row: row["value"])
    assert load_config(second.best_config).training.lr == best["params"]["training.lr"]
    header = second.trials_csv.read_text().splitlines()[0]
    assert header == "number,state,value,params.training.lr,steps,duration_s,baseline,task_id,session"

    monkeypatch.setattr("src.tuning.study.run_trial", lambda trial, settings: 1 / 0)
    broken = TrialSettings(**{**settings.__dict__, "study": "broken", "sweep_dir": tmp_path / "broken"})
    assert run_local_sweep(broken, 2).best_config is None  # nothing completed: no best config
