"""Entry point of the multi-node train-step task (tests/training/test_multi_node.py); an agent runs it
from this checkout. Each node runs the real train step, ``src.steps.train.run``, on the queued config
(``training.nodes=2``) and the tokenized corpus the test prepared on this machine."""

import json

from clearml import Task

from src.steps import train

task = Task.init()  # on an agent this attaches to the task it pulled (CLEARML_TASK_ID)
args = task.connect({"config": "{}", "tokenized": "{}"}, name="Args")
output = train.run(json.loads(args["config"]), json.loads(args["tokenized"]))
task.upload_artifact("train_output", artifact_object=output, wait_on_upload=True)
