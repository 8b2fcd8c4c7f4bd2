"""The tasks, one package each (``src/tasks/spec.py`` says what a package holds), and their one table.

Adding a task: a package ``src/tasks/<task>/`` with its ``TASK`` record, and its line below
(CONTRIBUTING.md shows the whole change for the masked-LM pretraining task).
"""

from src.tasks.classification import TASK as CLASSIFICATION
from src.tasks.image_classification import TASK as IMAGE_CLASSIFICATION
from src.tasks.language_modeling import TASK as LANGUAGE_MODELING
from src.tasks.masked_lm import TASK as MASKED_LM
from src.tasks.spec import StepContext, TaskSpec
from src.tasks.translation import TASK as TRANSLATION

# the order is the config's: `task` lists them so in its errors
TASKS: dict[str, TaskSpec] = {task.name: task for task in (TRANSLATION, CLASSIFICATION, LANGUAGE_MODELING,
                                                           IMAGE_CLASSIFICATION, MASKED_LM)}

__all__ = ["TASKS", "StepContext", "TaskSpec"]
