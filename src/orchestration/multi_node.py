"""ClearML multi-node training: ``Task.launch_multi_node`` on the step's task (agents only).

On an agent, the node that runs the train step (rank 0) clones its task ``nodes - 1`` times and
enqueues the clones on its own queue; each clone, run by another agent, finds its node rank in
the task's runtime properties. On every node the SDK then sets ``MASTER_ADDR``, ``MASTER_PORT``,
``NODE_RANK``, ``RANK`` and ``WORLD_SIZE`` (``nodes * nproc_per_node``), which
``src.training.distributed.rendezvous_from_env`` reads. Outside an agent the SDK call returns
rank 0's settings and sets nothing: training stays on this machine.
"""

import os
from typing import Any

from loguru import logger

from src.tracking import TrackerLike


def launch_nodes(tracker: TrackerLike, nodes: int, nproc_per_node: int) -> dict[str, Any] | None:
    """Spread the step over ``nodes`` agents; returns this node's multi-node settings, None when alone.

    Args:
        tracker: the train step's tracker (its ClearML task is the one cloned).
        nodes: machines in all (``training.nodes``), this one included.
        nproc_per_node: data-parallel processes on each (``training.nproc_per_node``).
    """
    if nodes == 1:
        return None
    # imported here, not at the top: importing src.orchestration stays torch-free
    from src.training.distributed import free_port

    # The master's port: a free one here (several nodes may share a host); a clone reads the master's
    # from its runtime properties, the SDK preferring CLEARML_MULTI_NODE_MASTER_DEF_PORT / MASTER_PORT.
    config = tracker.launch_multi_node(nodes, port=free_port(), devices=nproc_per_node)
    if config is None:  # tracking off, or an offline task: no agent can clone it
        logger.warning(f"training.nodes={nodes} takes effect on ClearML agents only; this run trains on this "
                       f"machine with nproc_per_node={nproc_per_node} process(es)")
        return None
    from clearml import Task

    if Task.running_locally():
        logger.warning(f"training.nodes={nodes}: not running on a ClearML agent, so no nodes were launched; "
                       f"training on this machine with nproc_per_node={nproc_per_node}")
        return None
    logger.info("multi-node training: node {} of {}, master {}:{}, WORLD_SIZE={}", config.get("node_rank"),
                config.get("total_num_nodes"), os.environ.get("MASTER_ADDR"), os.environ.get("MASTER_PORT"),
                os.environ.get("WORLD_SIZE"))
    return config
