"""ClearML pipeline objects for pipelines/pipeline.py, which must not import clearml itself."""

from typing import Any


def new_pipeline_controller(name: str, project: str, **options: Any):
    """A ``clearml.PipelineController``; ``options`` go to its constructor.

    Defaults: steps tagged with the pipeline id, and the pipeline stops at the first failed step.
    """
    from clearml import PipelineController

    options = {"add_pipeline_tags": True, "abort_on_failure": True} | options
    return PipelineController(name=name, project=project, **options)


def pipeline_web_url(pipe) -> str:
    """The web page of the pipeline's controller task."""
    return pipe.task.get_output_log_web_page()
