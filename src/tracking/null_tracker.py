"""Tracking off: the ``Tracker`` interface without ClearML (overhead measurements, unit tests).

Scalars are kept in memory (``scalars``, shaped as the tests read an offline session's scalars) so
tests of the trainer can assert what it logged; figures are still saved as PNG when ``output_dir`` is set.
"""

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

if TYPE_CHECKING:
    import numpy as np
    import pandas
    from matplotlib.figure import Figure


def plain_dict(mapping: Mapping[str, Any]) -> dict[str, Any]:
    """A deep copy made of plain ``dict``/``list`` (ClearML hands back proxy dicts)."""

    def plain(value: Any) -> Any:
        if isinstance(value, Mapping):
            return {str(k): plain(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [plain(v) for v in value]
        return value

    return plain(mapping)


class NullTracker:
    """Same methods as ``Tracker``; records nothing in ClearML."""

    task_id = "tracking-off"
    offline_folder = None

    def __init__(self, output_dir: Path | None = None, save_plots: bool = True):
        self.output_dir = Path(output_dir) if output_dir is not None else None
        self.save_plots = save_plots
        self.scalars: dict[tuple[str, str], list[tuple[int, float]]] = {}
        self.properties: dict[str, str | int | float] = {}
        self.input_models: dict[str, dict[str, Any]] = {}

    def connect_config(self, config: Mapping[str, Any], name: str = "config") -> dict[str, Any]:
        return plain_dict(config)

    def set_properties(self, **properties: str | int | float) -> None:
        self.properties.update(properties)

    def set_input_model(self, source: Mapping[str, Any], name: str = "init_from") -> None:
        self.input_models[name] = dict(source)

    def log_scalar(self, title: str, series: str, value: float, step: int) -> None:
        self.scalars.setdefault((title, series), []).append((int(step), float(value)))

    def log_scalars(self, title: str, values: Mapping[str, float], step: int) -> None:
        for series, value in values.items():
            self.log_scalar(title, series, value, step)

    def log_single_value(self, name: str, value: float) -> None:
        pass

    def log_figure(self, title: str, series: str, figure: "Figure", step: int) -> None:
        from src.visualization.local_plots import close_figure, save_png  # matplotlib: only with a figure

        try:
            if self.save_plots and self.output_dir is not None:
                save_png(figure, self.output_dir, title, series, step)
        finally:
            close_figure(figure)

    def log_plot(self, title: str, series: str, figure: "Figure", step: int) -> None:
        pass

    def log_image(self, title: str, series: str, image: "Path | str | np.ndarray", step: int) -> None:
        pass

    def log_table(self, title: str, series: str, table: "pandas.DataFrame", step: int = 0) -> None:
        pass

    def log_confusion_matrix(self, title: str, series: str, matrix: Sequence[Sequence[int]],
                             labels: Sequence[str], step: int = 0) -> None:
        pass

    def log_text(self, text: str, console: bool = True) -> None:
        pass

    def upload_artifact(self, name: str, artifact: Path | Mapping | str) -> None:
        pass

    def register_model(
        self,
        weights_path: Path,
        *,
        name: str,
        tags: Sequence[str],
        config: Mapping[str, Any],
        metadata: Mapping[str, float | str],
        publish: bool = False,
    ) -> str:
        return ""

    def update_model(self, model_id: str, *, name: str, source_task_id: str, tags: Sequence[str],
                     metadata: Mapping[str, float | str], publish: bool = False) -> str:
        return model_id

    def launch_multi_node(self, nodes: int, *, port: int, devices: int) -> dict[str, Any] | None:
        return None  # no task to clone

    def flush(self) -> None:
        pass

    def close(self, failed: bool = False, reason: str = "") -> Path | None:
        return None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
