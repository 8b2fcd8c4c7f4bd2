"""Entry point of the multi-node train-step task (tests/training/test_multi_node.py); an agent runs it
from this checkout. Each node runs the real train step, ``run_step(STEP["train"], ...)``, on the queued config
(``training.nodes=2``) and the tokenized corpus the test prepared on this machine."""

import json

from clearml import Task

from src.steps import STEP, run_step

task = Task.init()  # on an agent this attaches to the task it pulled (CLEARML_TASK_ID)
args = task.connect({"config": "{}", "tokenized": "{}"}, name="Args")
output = run_step(STEP["train"], json.loads(args["config"]), tokenized=json.loads(args["tokenized"]))
task.upload_artifact("train_output", artifact_object=output, wait_on_upload=True)
