"""ClearML isolation for tracking tests: offline, no server settings, every file under tmp_path.

The SDK writes offline sessions under ``$CLEARML_CACHE_DIR/offline`` (else the config's
``sdk.storage.cache.default_base_dir``, default ``~/.clearml/cache``) and ``~/.clearml/.session.json``;
both land in tmp_path here. Its offline switch is process-wide, so it is turned off again afterwards.
"""

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest
import torch

from src.config import TrackingConfig
from src.tracking import start_tracker
from src.visualization import plot_attention, plot_grad_norm_heatmap
from tests.clearml_session import read_offline_session

SERVER_VARIABLES = (
    "API_HOST",
    "WEB_HOST",
    "FILES_HOST",
    "API_ACCESS_KEY",
    "API_SECRET_KEY",
    "CONFIG_FILE",
    "TASK_ID",
)


@contextmanager
def isolated_offline_clearml(root: Path) -> Iterator[Path]:
    """Offline ClearML with HOME and the cache under ``root``; yields the cache folder."""
    with pytest.MonkeyPatch.context() as mp:
        for name in SERVER_VARIABLES:
            mp.delenv(f"CLEARML_{name}", raising=False)
            mp.delenv(f"TRAINS_{name}", raising=False)
        (root / "home").mkdir(parents=True, exist_ok=True)
        mp.setenv("HOME", str(root / "home"))
        mp.setenv("CLEARML_CACHE_DIR", str(root / "clearml_cache"))
        mp.setenv("CLEARML_OFFLINE_MODE", "1")
        try:
            yield root / "clearml_cache"
        finally:
            _leave_offline_mode()


def _leave_offline_mode() -> None:
    """Clear the SDK's process-wide offline flags so later tests start from its defaults, without
    reconnecting this test's sessions (``sdk_compat.leave_offline_mode`` says why)."""
    from src.tracking import sdk_compat

    sdk_compat.leave_offline_mode()


@pytest.fixture
def offline_clearml(tmp_path: Path) -> Iterator[Path]:
    with isolated_offline_clearml(tmp_path) as cache:
        yield cache


@pytest.fixture
def no_clearml_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No server settings at all and an empty HOME; returns that HOME."""
    for name in SERVER_VARIABLES:
        monkeypatch.delenv(f"CLEARML_{name}", raising=False)
        monkeypatch.delenv(f"TRAINS_{name}", raising=False)
    monkeypatch.delenv("CLEARML_OFFLINE_MODE", raising=False)
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    return home


def subprocess_env(root: Path) -> dict[str, str]:
    """Environment for a child Python: this repo importable, no server settings, files under ``root``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CLEARML_", "TRAINS_"))}
    (root / "home").mkdir(parents=True, exist_ok=True)
    env.update(
        HOME=str(root / "home"),
        CLEARML_CACHE_DIR=str(root / "clearml_cache"),
        PYTHONPATH=str(Path(__file__).resolve().parents[2]),
    )
    return env


CONFIG = {
    "run_name": "tiny",
    "model": {"d_model": 8, "n_heads": 2, "dropout": 0.1},
    "training": {"lr": 0.001, "betas": [0.9, 0.98], "max_minutes": None, "warmup_steps": 0},
    "tracking": {"enabled": True, "tags": ["unit"]},
}
SOURCE = ["▁Das", "▁Haus", "▁ist", "▁klein", "</s>"]
TARGET = ["<s>", "▁The", "▁house", "▁is", "▁small"]
LOSSES = {1: 2.5, 2: 2.0, 3: 1.6, 4: 1.3}


@pytest.fixture(scope="session")
def offline_run(tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    """A tiny fake 'train' step recorded offline: config, scalars, heatmaps, a table, a registered
    checkpoint."""
    root = tmp_path_factory.mktemp("fake_run")
    with isolated_offline_clearml(root) as cache:
        cfg = TrackingConfig(project_name="unit-tests", task_name="fake", tags=("unit",))
        tracker = start_tracker(cfg, step_name="train", task_type="training", output_dir=root / "train")
        connected = tracker.connect_config(CONFIG)
        for step, loss in LOSSES.items():
            tracker.log_scalars("train", {"loss": loss, "perplexity": 2.0**loss}, step)
            tracker.log_scalar("learning_rate", "lr", 1e-3 * step, step)
        torch.manual_seed(0)
        attention = torch.softmax(torch.randn(2, len(TARGET), len(SOURCE)), dim=-1)
        tracker.log_figure(
            "attention/cross", "layer 0", plot_attention(attention, TARGET, SOURCE, "cross layer 0"), 4
        )
        norms = [[1.0, 0.5, 0.25, 0.1], [2.0, 1.0, 0.0, 0.3]]
        grad_norms = plot_grad_norm_heatmap(["encoder.0", "decoder.0"], [1, 2, 3, 4], norms)
        tracker.log_figure("gradient norms", "layer x step", grad_norms, 4)
        tracker.log_table(
            "translations", "valid", pd.DataFrame({"src": ["Das Haus"], "hyp": ["The house"]}), 4
        )
        tracker.log_text("fake training done")
        checkpoint = root / "best.pt"
        torch.save({"weights": torch.arange(6.0)}, checkpoint)
        model_id = tracker.register_model(
            checkpoint,
            name="tiny-model",
            tags=["best-valid"],
            config=CONFIG,
            metadata={"valid_loss": 1.3, "stage": "candidate"},
        )
        session_zip = tracker.close()
        closed_again = tracker.close()
    return SimpleNamespace(
        root=root, cache=cache, tracker=tracker, connected=connected, model_id=model_id,
                           checkpoint=checkpoint,
        session_zip=session_zip, closed_again=closed_again, session=read_offline_session(session_zip),
    )  # fmt: skip
