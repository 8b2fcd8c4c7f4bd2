"""The interface every tracker implements: ``Tracker`` (ClearML) and ``NullTracker`` (tracking off).

The trainer, the probes and the pipeline steps are typed against this, so a third tracker (or a
test double) only has to provide these methods.
"""

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import numpy as np
    import pandas
    from matplotlib.figure import Figure


class TrackerLike(Protocol):
    @property
    def task_id(self) -> str: ...

    @property
    def offline_folder(self) -> str | None: ...

    def connect_config(self, config: Mapping[str, Any], name: str = "config") -> dict[str, Any]: ...

    def set_properties(self, **properties: str | int | float) -> None:
        """Set the task's user properties: the columns the experiments table sorts and filters by."""
        ...

    def log_scalar(self, title: str, series: str, value: float, step: int) -> None: ...

    def log_scalars(self, title: str, values: Mapping[str, float], step: int) -> None: ...

    def log_single_value(self, name: str, value: float) -> None: ...

    def log_figure(self, title: str, series: str, figure: "Figure", step: int) -> None: ...

    def log_plot(self, title: str, series: str, figure: "Figure", step: int) -> None: ...

    def log_image(self, title: str, series: str, image: "Path | str | np.ndarray", step: int) -> None: ...

    def log_table(self, title: str, series: str, table: "pandas.DataFrame", step: int = 0) -> None: ...

    def log_confusion_matrix(self, title: str, series: str, matrix: Sequence[Sequence[int]],
                             labels: Sequence[str], step: int = 0) -> None: ...

    def log_text(self, text: str, console: bool = True) -> None: ...

    def upload_artifact(self, name: str, artifact: Path | Mapping | str) -> None: ...

    def register_model(self, weights_path: Path, *, name: str, tags: Sequence[str], config: Mapping[str, Any],
                       metadata: Mapping[str, float | str], publish: bool = False) -> str: ...

    def update_model(self, model_id: str, *, name: str, source_task_id: str, tags: Sequence[str],
                     metadata: Mapping[str, float | str], publish: bool = False) -> str: ...

    def set_input_model(self, source: Mapping[str, Any], name: str = "init_from") -> None:
        """Record the model this task's weights started from (its lineage in the web UI): ``source`` holds
        ``model_id``, and for a model another offline session made, ``task_id`` and ``session``."""
        ...

    def launch_multi_node(self, nodes: int, *, port: int, devices: int) -> dict[str, Any] | None:
        """Run this task on ``nodes`` ClearML agents (``Task.launch_multi_node``); this node's settings, or
        None when the task cannot be cloned onto agents (tracking off, offline)."""
        ...

    def flush(self) -> None: ...

    def close(self, failed: bool = False, reason: str = "") -> Path | None: ...
