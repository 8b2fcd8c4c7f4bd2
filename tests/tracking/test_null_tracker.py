"""Tracking off: same interface, nothing sent to ClearML, PNGs still written."""

import subprocess
import sys
import textwrap
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from src.config import TrackingConfig
from src.tracking import NullTracker, Tracker, start_tracker
from tests.tracking.conftest import subprocess_env


def test_disabled_config_or_flag_gives_a_null_tracker(tmp_path: Path):
    assert isinstance(
        start_tracker(
            TrackingConfig(enabled=False), step_name="train", task_type="training", output_dir=tmp_path
        ),
        NullTracker,
    )
    assert isinstance(
        start_tracker(
            TrackingConfig(), step_name="train", task_type="training", output_dir=tmp_path, enabled=False
        ),
        NullTracker,
    )


def test_null_tracker_has_every_public_method_of_tracker():
    public = {name for name in vars(Tracker) if not name.startswith("_") and name != "start"}
    assert public <= set(dir(NullTracker)), sorted(public - set(dir(NullTracker)))


def test_null_tracker_keeps_scalars_and_returns_config_copies(tmp_path: Path):
    tracker = NullTracker(output_dir=tmp_path)
    config = {"model": {"d_model": 8}, "tags": ["a"]}
    connected = tracker.connect_config(config)
    assert connected == config and connected is not config and connected["model"] is not config["model"]
    tracker.log_scalars("train", {"loss": 2.0}, 1)
    tracker.log_scalar("train", "loss", 1.5, 2)
    assert tracker.scalars == {("train", "loss"): [(1, 2.0), (2, 1.5)]}
    tracker.log_table("t", "s", None)
    tracker.log_text("x")
    tracker.upload_artifact("a", {"b": 1})
    assert tracker.register_model(tmp_path / "w.pt", name="m", tags=[], config={}, metadata={}) == ""
    assert tracker.close() is None


def test_null_tracker_saves_and_closes_figures(tmp_path: Path):
    tracker = NullTracker(output_dir=tmp_path)
    figure = plt.figure()
    plt.plot(np.arange(3))
    tracker.log_figure("curves/loss", "train", figure, 7)
    assert (tmp_path / "plots" / "curves_loss" / "train_step0000007.png").is_file()
    assert not plt.fignum_exists(figure.number)


NO_CLEARML_IMPORT = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from src.config import TrackingConfig
    from src.tracking import read_session_record, start_tracker
    from src.training.resources import resource_usage
    import src.visualization
    tracker = start_tracker(TrackingConfig(enabled=False), step_name="s", task_type="training",
                            output_dir=Path("."))
    tracker.log_scalar("a", "b", 1.0, 0)
    resource_usage()
    print("CLEARML_IMPORTED", "clearml" in sys.modules)
    """
)


def test_tracking_off_and_visualization_never_import_clearml(tmp_path: Path):
    result = subprocess.run(
        ["timeout", "-s", "KILL", "60", sys.executable, "-c", NO_CLEARML_IMPORT],
        env=subprocess_env(tmp_path), cwd=tmp_path, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    assert "CLEARML_IMPORTED False" in result.stdout
