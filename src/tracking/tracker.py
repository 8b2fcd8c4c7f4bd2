"""The ClearML adapter: one ``Tracker`` wraps one ``clearml.Task``, i.e. one pipeline step.

clearml is imported inside ``Tracker.start`` so that importing this module (for ``NullTracker``
or ``start_tracker(enabled=False)``) costs nothing and needs no ClearML setup.
"""

import copy
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

from loguru import logger

from src.config.tracking import TrackingConfig
from src.tracking.connection import check_server_reachable, resolve_offline
from src.tracking.null_tracker import NullTracker, plain_dict

if TYPE_CHECKING:
    import numpy as np
    import pandas
    from clearml import Task
    from matplotlib.figure import Figure

TASK_TYPES = (
    "training", "testing", "inference", "data_processing", "application",
    "monitor", "controller", "optimizer", "service", "qc", "custom",
)  # fmt: skip
# the task's recorded requirements: this file, not ClearML's import analysis of the checkout (2 s a task
# with a git remote), and what an agent installs for a cloned task
REQUIREMENTS_FILE = Path(__file__).resolve().parents[2] / "requirements.txt"
OFFLINE_DIR_NAME = "clearml_offline"  # under a step's output_dir: the session zips of a run
MODEL_UPDATE_ARTIFACT = "model-update"  # an offline update_model, applied by import_offline
# an input model that import_offline links (set_input_model): init_from's under this name, any other (the
# distillation teacher's, distill_from) under "input-model-<name>"
INPUT_MODEL_ARTIFACT = "input-model"


def input_model_artifact(name: str) -> str:
    """The artifact an offline task's input model ``name`` is stored as, for ``import_offline``."""
    return INPUT_MODEL_ARTIFACT if name == "init_from" else f"{INPUT_MODEL_ARTIFACT}-{name}"


class Tracker:
    """Hyperparameters, scalars, debug images, tables, artifacts and models of one ClearML task.

    ClearML allows one running task per process: close a step's tracker before starting the next.
    """

    def __init__(
        self,
        task: "Task",
        *,
        offline: bool,
        output_dir: Path | None = None,
        save_plots: bool = True,
        owns_task: bool = True,
    ):
        self._task = task
        self._logger = task.get_logger()
        self.offline = offline
        self.owns_task = owns_task
        self.output_dir = Path(output_dir) if output_dir is not None else None
        self.save_plots = save_plots
        self._closed = False
        self._session_zip: Path | None = None

    @classmethod
    def start(
        cls,
        *,
        project: str,
        task_name: str,
        task_type: str = "training",
        offline: bool | None = None,
        tags: Sequence[str] = (),
        output_dir: Path | None = None,
        output_uri: str | None = None,
        server_timeout_s: float = 5.0,
        save_plots: bool = True,
    ) -> "Tracker":
        """Create a new task. ``offline=None``: offline unless ``clearml_configured()``.

        Online, the API server is checked first (a TCP connect, ``server_timeout_s``) because
        ``Task.init`` against an unreachable host retries for many minutes.

        If a task already runs in this process, this tracker records into it instead and leaves
        it open (``owns_task=False``): on a ``clearml-agent`` that is the task the agent runs
        (a pipeline function step's wrapper calls ``Task.init`` before our step function, and
        uploads the step's return value after it; a closed task would lose that upload). Such a
        task gets an ``output_uri`` if it has none, else the SDK would register models at their
        ``file://`` path on the agent instead of uploading them.
        """
        if task_type not in TASK_TYPES:
            raise ValueError(
                f"task_type={task_type!r} is not a ClearML task type (expected one of {TASK_TYPES})"
            )
        offline = resolve_offline(offline)
        from clearml import Task
        from clearml.backend_api import Session

        from src.tracking import sdk_compat

        running = Task.current_task()
        if running is not None:
            return cls._attach(running, output_uri=output_uri, output_dir=output_dir, save_plots=save_plots)
        if not offline:
            check_server_reachable(Session.get_api_server_host(), server_timeout_s)
        Task.set_offline(offline)
        sdk_compat.set_report_in_subprocess(not offline)
        sdk_compat.preload_ipython()
        if REQUIREMENTS_FILE.is_file():
            Task.force_requirements_env_freeze(requirements_file=REQUIREMENTS_FILE.as_posix())
        task = Task.init(
            project_name=project,
            task_name=task_name,
            task_type=Task.TaskTypes(task_type),
            tags=list(tags) or None,
            reuse_last_task_id=False,
            continue_last_task=False,
            # offline, an output_uri cannot be set; online, True means the ClearML files server
            output_uri=None if offline else (output_uri or True),
            auto_connect_arg_parser=False,  # our CLI is not the task's parameters; the config is
            auto_connect_frameworks=False,  # no torch.save / matplotlib hooks: we report explicitly
            auto_resource_monitoring=False,  # resource_usage() scalars come from the trainer instead
        )
        if Task.running_locally():
            sdk_compat.wait_for_repository_detection(task)  # before any edit: see its docstring
            where = f"offline session {task.get_offline_mode_folder()}" if offline else "server"
            logger.info("ClearML task {} ({}/{}) recording to {}", task.id, project, task_name, where)
            return cls(task, offline=offline, output_dir=output_dir, save_plots=save_plots)
        # on an agent without a wrapper, Task.init attached to the agent's task
        return cls._attach(task, output_uri=output_uri, output_dir=output_dir, save_plots=save_plots)

    @classmethod
    def _attach(
        cls, task: "Task", *, output_uri: str | None, output_dir: Path | None, save_plots: bool
    ) -> "Tracker":
        """A tracker on a task someone else opened and will close (see ``start``)."""
        from clearml import Task

        offline = Task.is_offline()
        if not offline and not task.output_uri:
            task.output_uri = output_uri or True  # True: the ClearML files server
        logger.info("ClearML task {} ({}) already running in this process: recording into it", task.id,
                    task.name)
        return cls(task, offline=offline, output_dir=output_dir, save_plots=save_plots, owns_task=False)

    @property
    def task_id(self) -> str:
        return self._task.id

    @property
    def offline_folder(self) -> str | None:
        """The session folder an offline task writes to until ``close`` zips it (None online)."""
        return str(self._task.get_offline_mode_folder()) if self.offline else None

    def connect_config(self, config: Mapping[str, Any], name: str = "config") -> dict[str, Any]:
        """Show ``config`` as editable hyperparameters; return the values the task holds.

        Locally that is ``config`` itself. On an agent it is the values the task holds, edited in the
        web UI or not, as the strings the task stores them (``src.tracking.edited.held_values``: the
        SDK's own cast drops an edit it cannot cast): re-validate the result through the pydantic config.
        """
        from clearml import Task

        from src.tracking.edited import held_values

        connected = self._task.connect(copy.deepcopy(dict(config)), name=name)
        if Task.running_locally():
            return plain_dict(connected)
        return held_values(config, self._task.get_parameters(), section=name)

    def set_properties(self, **properties: str | int | float) -> None:
        """User properties (``Task.set_user_properties``): kept in offline sessions too, and imported.
        (Offline, ``start`` waited for the repository detection, whose write could otherwise undo them.)"""
        self._task.set_user_properties(**properties)

    def log_scalar(self, title: str, series: str, value: float, step: int) -> None:
        self._logger.report_scalar(title, series, value=float(value), iteration=int(step))

    def log_scalars(self, title: str, values: Mapping[str, float], step: int) -> None:
        for series, value in values.items():
            self.log_scalar(title, series, value, step)

    def log_single_value(self, name: str, value: float) -> None:
        """A summary number (final BLEU, parameter count) shown in the task's summary table."""
        self._logger.report_single_value(name, float(value))

    def log_figure(self, title: str, series: str, figure: "Figure", step: int) -> None:
        """A debug image (not an interactive plot); also a PNG under ``output_dir/plots``. Closes
        ``figure``."""
        from src.visualization.local_plots import close_figure, save_png  # matplotlib: only with a figure

        try:
            if self.save_plots and self.output_dir is not None:
                # render once: the PNG on disk is also the debug image (a second rendering by
                # report_matplotlib_figure doubled the cost of every heatmap report)
                path = save_png(figure, self.output_dir, title, series, step)
                self._logger.report_image(title, series, iteration=int(step), local_path=str(path))
            else:
                self._logger.report_matplotlib_figure(
                    title, series, figure, iteration=int(step), report_image=True
                )
        finally:
            close_figure(figure)

    def log_plot(self, title: str, series: str, figure: "Figure", step: int) -> None:
        """An interactive plot in the task's Plots tab: the SDK converts lines and points to plotly and
        embeds what it cannot convert (a heatmap) as an image. Leaves ``figure`` open (``log_figure`` closes
        it)."""
        self._logger.report_matplotlib_figure(title, series, figure, iteration=int(step), report_image=False)

    def log_image(self, title: str, series: str, image: "Path | str | np.ndarray", step: int) -> None:
        """A debug image from a file (PNG/JPEG) or an array (H, W) / (H, W, 3|4)."""
        if isinstance(image, (str, Path)):
            if not Path(image).is_file():
                raise FileNotFoundError(f"image {title!r}/{series!r}: no file at {image}")
            self._logger.report_image(title, series, iteration=int(step), local_path=str(image))
        else:
            self._logger.report_image(title, series, iteration=int(step), image=image)

    def log_table(self, title: str, series: str, table: "pandas.DataFrame", step: int = 0) -> None:
        self._logger.report_table(title, series, iteration=int(step), table_plot=table)

    def log_confusion_matrix(self, title: str, series: str, matrix: Sequence[Sequence[int]],
                             labels: Sequence[str], step: int = 0) -> None:
        """Counts per (true class, predicted class): rows are the true classes, as ClearML's Plots draw
        them."""
        import numpy as np

        self._logger.report_confusion_matrix(title, series, np.asarray(matrix), iteration=int(step),
                                             xaxis="predicted", yaxis="true", xlabels=list(labels),
                                             ylabels=list(labels))

    def log_text(self, text: str, console: bool = True) -> None:
        """A line in the task's console log; ``console=False`` keeps it out of this process's output."""
        self._logger.report_text(text, print_console=console)

    def upload_artifact(self, name: str, artifact: Path | Mapping | str) -> None:
        """A file or folder (``Path``; ClearML zips folders), a JSON artifact (mapping), or a string."""
        if isinstance(artifact, Path):
            if not artifact.exists():
                raise FileNotFoundError(f"artifact {name!r}: nothing at {artifact}")
            artifact = artifact.as_posix()
        elif isinstance(artifact, Mapping):
            artifact = plain_dict(artifact)
        self._task.upload_artifact(name, artifact_object=artifact, wait_on_upload=True)

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
        """Register ``weights_path`` as a PyTorch OutputModel with ``config`` as its design; returns its id.

        The weights are also uploaded as artifact ``"{name}-weights"``: a model from an offline
        session points at the original local path until ``import_offline`` uploads it. Metadata
        and publishing need a server, so offline they are stored as artifact
        ``"{name}-registration"`` (``{"metadata": ..., "publish": ...}``) and applied by
        ``import_offline``. The id of an offline model is a placeholder (``offline-...``).
        """
        from clearml import OutputModel

        from src.tracking import sdk_compat

        weights_path = Path(weights_path)
        if not weights_path.is_file():
            raise FileNotFoundError(f"model {name!r}: no weights file at {weights_path}")
        model = OutputModel(
            task=self._task, name=name, framework="PyTorch", tags=list(tags), config_dict=plain_dict(config)
        )
        sdk_compat.update_weights(
            model, weights_filename=weights_path.as_posix(), auto_delete_file=False, async_enable=False
        )
        if self.offline:
            sdk_compat.record_model_config_once(self._task)
        self.upload_artifact(f"{name}-weights", weights_path)  # also rewrites task.json with the model
        if self.offline:
            self.upload_artifact(f"{name}-registration", {"metadata": dict(metadata), "publish": publish})
        else:
            model.set_all_metadata(
                {key: typed_metadata(value) for key, value in metadata.items()}, replace=False
            )
            if publish:
                model.publish()
        logger.info("registered model {} ({}) from {}", name, model.id, weights_path)
        return model.id

    def update_model(
        self,
        model_id: str,
        *,
        name: str,
        source_task_id: str,
        tags: Sequence[str],
        metadata: Mapping[str, float | str],
        publish: bool = False,
    ) -> str:
        """Add tags and metadata to a model another step registered, and publish it if asked.

        No new model is made and no weights are uploaded: the registry keeps one model per
        trained checkpoint. Offline the model lives only in the session of ``source_task_id``;
        the update is stored as artifact ``MODEL_UPDATE_ARTIFACT`` and ``import_offline`` applies
        it to that task's imported model (found by ``name``). Returns ``model_id``.
        """
        update = {"model_id": model_id, "name": name, "source_task_id": source_task_id,
                  "tags": list(tags), "metadata": dict(metadata), "publish": publish}
        if self.offline:
            self.upload_artifact(MODEL_UPDATE_ARTIFACT, update)
            return model_id
        from clearml import Model

        apply_model_update(Model(model_id=model_id), update)
        logger.info("model {} ({}): tags {} added{}", name, model_id, list(tags),
                    ", published" if publish else "")
        return model_id

    def set_input_model(self, source: Mapping[str, Any], name: str = "init_from") -> None:
        """The task's input model (``Task.set_input_model``): the model page then lists this task.

        A server model is linked now. A model that exists only in an offline session (``offline-...``),
        or any link of an offline task, cannot be named to a server yet: it is stored as artifact
        ``input_model_artifact(name)`` and ``import_offline`` links the imported task to the imported model.
        ``name``: the role, as the web UI lists it (``init_from``; a distilled student's ``distill_from``).
        """
        source = {**plain_dict(source), "name": name}
        model_id = str(source.get("model_id") or "")
        if self.offline or not model_id or model_id.startswith("offline-"):
            from src.tracking.lineage import server_model_id

            found = None if self.offline else server_model_id(source)
            if found is None:
                if not self.offline:
                    logger.warning("input model {} is in an offline session not imported into this server; "
                                   "import its run (import-offline) to link it", model_id)
                self.upload_artifact(input_model_artifact(name), source)
                return
            model_id = found
        self._task.set_input_model(model_id=model_id, name=name, update_task_design=False,
                                   update_task_labels=False)
        logger.info("ClearML task {}: input model {} ({})", self.task_id, model_id, name)

    def launch_multi_node(self, nodes: int, *, port: int, devices: int) -> dict[str, Any] | None:
        """``Task.launch_multi_node`` on this task: on an agent, clone it onto ``nodes - 1`` more agents.

        Returns this node's settings (``node_rank``, ``total_num_nodes``, ...); outside an agent the SDK
        returns rank 0's and launches nothing. None offline: an offline task cannot be cloned.
        """
        if self.offline:
            return None
        return dict(self._task.launch_multi_node(nodes, port=port, devices=devices, wait=False))

    def flush(self) -> None:
        """Write what was reported so far (offline: into the session folder), so a kill loses little."""
        self._task.flush(wait_for_uploads=True)

    def close(self, failed: bool = False, reason: str = "") -> Path | None:
        """Flush and close the task (marked failed if ``failed``; offline sessions record no status).

        Offline: returns the session zip, moved to ``output_dir/clearml_offline/``. A task this
        tracker did not open (``owns_task=False``, see ``start``) is only flushed: its opener ends
        it (on an agent, as failed when the step's exception reaches the agent).
        """
        if self._closed:
            return self._session_zip
        folder = Path(self._task.get_offline_mode_folder()) if self.offline else None
        if failed:
            self.log_text(f"step failed: {reason}" if reason else "step failed", console=False)
        self._task.flush(wait_for_uploads=True)
        if not self.owns_task:
            self._closed = True
            return None
        self._task.close()
        self._closed = True
        if failed and not self.offline:
            # after close: an explicit close() of a local task marks it completed
            self._task.mark_failed(status_reason=reason or "step failed", force=True)
        if folder is None:
            return None
        zip_path = folder.with_name(folder.name + ".zip")  # the SDK's own naming, clearml/task.py close()
        if not zip_path.is_file():  # the SDK swallows errors while zipping
            raise RuntimeError(
                f"ClearML closed offline task {self.task_id} but wrote no session zip at {zip_path}"
            )
        if self.output_dir is not None:
            target = self.output_dir / OFFLINE_DIR_NAME / zip_path.name
            target.parent.mkdir(parents=True, exist_ok=True)
            zip_path = Path(shutil.move(zip_path, target))
        self._session_zip = zip_path
        logger.info("ClearML offline session of task {} stored in {}", self.task_id, zip_path)
        return zip_path

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        self.close(failed=exc is not None, reason=f"{type(exc).__name__}: {exc}" if exc else "")


def apply_model_update(model: Any, update: Mapping[str, Any]) -> None:
    """Tags (added to the model's own), metadata and publishing of ``update`` on a server model."""
    model.tags = sorted(set(model.tags or []) | set(update["tags"]))
    model.set_all_metadata({k: typed_metadata(v) for k, v in update["metadata"].items()}, replace=False)
    if update.get("publish"):
        model.publish()


def typed_metadata(value: float | str) -> dict[str, str]:
    """A model metadata entry as ClearML stores it: value as string plus its type."""
    is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
    return {"value": str(value), "type": "float" if is_number else "str"}


def start_tracker(
    cfg: TrackingConfig,
    *,
    step_name: str,
    task_type: str,
    output_dir: Path,
    enabled: bool = True,
    offline: bool | None = None,
) -> Tracker | NullTracker:
    """The tracker of one pipeline step: task ``"{cfg.task_name}-{step_name}"`` in ``cfg.project_name``.

    ``enabled=False`` or ``cfg.enabled=False`` gives a ``NullTracker``. ``offline`` overrides
    ``cfg.offline``; both ``None`` means offline unless ClearML is configured.
    """
    if not (enabled and cfg.enabled):
        return NullTracker(output_dir=output_dir, save_plots=cfg.save_plots)
    return Tracker.start(
        project=cfg.project_name,
        task_name=f"{cfg.task_name}-{step_name}",
        task_type=task_type,
        offline=cfg.offline if offline is None else offline,
        tags=(*cfg.tags, step_name),
        output_dir=output_dir,
        output_uri=cfg.output_uri,
        server_timeout_s=cfg.server_timeout_s,
        save_plots=cfg.save_plots,
    )
