"""``queues/queues.yaml``: the agents' queues, the container each runs, and which step runs on which.

The ClearML side (creating the queues on a server) is ``src.orchestration.ensure_queues``; this
module only reads and validates the file, so it needs no ClearML.
"""

from pathlib import Path

import yaml
from pydantic import Field, ValidationError, model_validator

from src.config.base import ConfigError, FrozenConfig

QUEUE_CONFIG_PATH = Path(__file__).resolve().parents[2] / "queues" / "queues.yaml"


class QueueSpec(FrozenConfig):
    """One agent queue and the container its tasks run in."""

    description: str = ""
    docker_image: str
    docker_args: tuple[str, ...] = ()
    docker_setup_script: str = ""  # shell run in the container before the task (agent: setup_shell_script)


class QueueConfig(FrozenConfig):
    """``queues/queues.yaml``: the queues, and which pipeline step runs on which."""

    queues: dict[str, QueueSpec] = Field(min_length=1)
    steps: dict[str, str]

    @model_validator(mode="after")
    def _steps_use_defined_queues(self) -> "QueueConfig":
        for step, queue in self.steps.items():
            if queue not in self.queues:
                raise ValueError(f"step {step!r} uses queue {queue!r}, expected one of {sorted(self.queues)}")
        return self

    @property
    def queue_names(self) -> list[str]:
        return list(self.queues)

    def queue(self, name: str) -> QueueSpec:
        if name not in self.queues:
            raise ConfigError(f"unknown queue {name!r}, expected one of {sorted(self.queues)}")
        return self.queues[name]

    def queue_for(self, step: str) -> str:
        """Name of the queue ``step`` runs on (``controller`` is the pipeline controller itself)."""
        if step not in self.steps:
            raise ConfigError(f"unknown pipeline step {step!r}, expected one of {sorted(self.steps)}")
        return self.steps[step]


def load_queue_config(path: str | Path = QUEUE_CONFIG_PATH) -> QueueConfig:
    """Read and validate a queue definition file; errors name the file and the offending key."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"queue config not found: {path}")
    try:
        return QueueConfig.model_validate(yaml.safe_load(path.read_text(encoding="utf-8")))
    except yaml.YAMLError as err:
        raise ConfigError(f"{path} is not valid YAML: {err}") from err
    except ValidationError as err:
        raise ConfigError(f"{path}: {err}") from err
