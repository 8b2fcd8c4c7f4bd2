"""Entry point of the task the agent contract test queues; the agent runs it from this checkout.

It proves three things on the agent side: the project's own code imports (``src.config``), the
task's queued parameters reach the code (``Args/run_name``), and results go back to the server.
"""

from clearml import Task

from src.config import config_to_dict
from src.experiment import ExperimentConfig

task = Task.init()  # on an agent this attaches to the task it pulled (CLEARML_TASK_ID)
args = task.connect({"run_name": "local"}, name="Args")
config = ExperimentConfig(run_name=args["run_name"])
task.get_logger().report_scalar("config", "d_model", value=config.model.d_model, iteration=0)
task.upload_artifact("resolved_config", artifact_object=config_to_dict(config), wait_on_upload=True)
