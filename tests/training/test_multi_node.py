"""Multi-node training on ClearML agents, against the loopback stand-in server.

Two real ``clearml-agent`` daemons serve the ``gpu`` queue (on CPU here). The queued train step has
``training.nodes=2``: on the first agent its ``Task.launch_multi_node`` clones the task and enqueues
the clone with node rank 1; the second agent runs the clone; both join one gloo group on 127.0.0.1
(``CLEARML_MULTI_NODE_MASTER_DEF_ADDR``) and train. The two nodes follow the curve of one process
with the same global batch (``tests/training/test_distributed.py``'s reference).
"""

import json
import subprocess

import pytest

from tests.clearml_stub import fixture as stub_fixtures
from tests.clearml_stub.stub import ClearMLStub, kill_process_group
from tests.training.test_distributed import STEPS, assert_same_curve, one_process, step_config, tokenized  # noqa: F401
from tests.training.test_trainer import corpus_dir  # noqa: F401 (a fixture)

clearml_stub = stub_fixtures.clearml_stub
_DONE = ("completed", "failed", "stopped")

QUEUE_TASK = """
import json
from clearml import Task
task = Task.create(project_name="multi-node", task_name="train", task_type="training")
task.set_script(repository="", branch="", commit="", diff="", working_dir=".",
                entry_point="tests/training/multi_node_entry.py")
task.set_parameters({{"Args/config": {config!r}, "Args/tokenized": {tokenized!r}}})
Task.enqueue(task, queue_name="gpu")
"""


def start_agent(stub: ClearMLStub, name: str) -> subprocess.Popen:
    """``clearml-agent daemon --queue gpu`` (as ``ClearMLStub.start_agent``), with the multi-node
    master address pinned to loopback: both nodes are this machine."""
    log = open(stub.workdir / f"agent-{name}.log", "w")  # noqa: SIM115 (the agent keeps writing)
    env = {**stub.agent_env(name, from_checkout=True), "CLEARML_MULTI_NODE_MASTER_DEF_ADDR": "127.0.0.1"}
    return subprocess.Popen(["clearml-agent", "daemon", "--queue", "gpu", "--foreground", "--cpu-only"],
                            cwd=stub.workdir, env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)


def logs(stub: ClearMLStub) -> str:
    return "\n".join(
        f"--- {p.name} ---\n{p.read_text()[-5000:]}" for p in sorted(stub.workdir.glob("agent-*.log")))


@pytest.mark.slow
@pytest.mark.timeout(480)
def test_two_agents_run_the_two_nodes_of_one_train_step(clearml_stub, corpus_dir, one_process, tmp_path):  # noqa: F811
    queue = clearml_stub.add_queue("gpu")
    run_dir = tmp_path / "multi"
    cfg = step_config(run_dir, nproc=1).model_copy(deep=True)
    config = json.loads(cfg.model_dump_json())
    config["training"]["nodes"] = 2  # grad_accum_steps=2: one micro-batch per node
    result = clearml_stub.run_python(QUEUE_TASK.format(config=json.dumps(config),
                                                       tokenized=json.dumps(tokenized(corpus_dir))),
                                     timeout=90)
    assert result.returncode == 0, result.output
    master_id = clearml_stub.queue_entries("gpu")[0]

    agents = [start_agent(clearml_stub, name) for name in ("node-a", "node-b")]
    try:
        def finished():
            tasks = [t for t in clearml_stub.tasks if t["id"] == master_id or t.get("parent") == master_id]
            return tasks if len(tasks) == 2 and all(t["status"] in _DONE for t in tasks) else None

        try:
            master, clone = sorted(clearml_stub.wait_for(finished, 420, "both nodes to finish"),
                                   key=lambda t: t["id"] != master_id)
        except AssertionError as err:
            raise AssertionError(f"{err}; unknown endpoints: "
                                 f"{clearml_stub.unknown_calls}\n{logs(clearml_stub)}") from None
    finally:
        for agent in agents:
            kill_process_group(agent)

    assert (master["status"], clone["status"]) == ("completed", "completed"), logs(clearml_stub)
    # The clone: created by the master's launch_multi_node, enqueued on the master's queue, node rank 1.
    assert clone["parent"] == master_id and "multi_node_instance" in clone["system_tags"]
    assert clone["execution"]["queue"] == queue
    assert clearml_stub.status_history(clone["id"])[:3] == ["created", "queued", "in_progress"]
    runtime = clone["runtime"]
    assert runtime["launch_multi_node/node_rank"] in (1, "1")
    assert runtime["launch_multi_node/master_addr"] == "127.0.0.1"
    assert str(runtime["launch_multi_node/total_num_nodes"]) == "2"
    # Both ranks met on loopback and trained; rank 0 (the master) alone wrote the history and the model.
    text = logs(clearml_stub)
    port = runtime["launch_multi_node/master_port"]
    assert (f"rank 0 of 2 joined (gloo, 127.0.0.1:{port})" in text
            and f"rank 1 of 2 joined (gloo, 127.0.0.1:{port})" in text)
    assert f"rank 1: trained {STEPS} steps" in text
    assert [m for m in clearml_stub.models if m.get("task") == master_id], "rank 0 registered no model"
    assert_same_curve(run_dir, one_process)
