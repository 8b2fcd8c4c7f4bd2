"""Data parallelism on ``torch.distributed``: who this process is, joining the group, local workers.

Three ways a train step runs on several processes, one TCP rendezvous underneath (MASTER_ADDR:MASTER_PORT):

- ``train --nproc N`` (``training.nproc_per_node``): the step's process is rank 0; it spawns
  ranks 1..N-1 on this machine, with ``MASTER_ADDR=127.0.0.1`` and a free port.
- ``torchrun``: every process already has ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``; rank 0 runs the
  pipeline, the others wait in ``serve_as_worker`` for the train step.
- ClearML agents (``training.nodes > 1``): ``Task.launch_multi_node`` (``src/orchestration/multi_node.py``)
  sets ``MASTER_ADDR``, ``MASTER_PORT``, ``NODE_RANK``, ``RANK``, ``WORLD_SIZE`` on each node's copy of
  the step; each node then spawns its ``nproc_per_node - 1`` local workers as above.

Every process that has no step of its own (spawned or torchrun workers) receives the step's inputs
(config, upstream outputs, resume flag, run folder) from rank 0 by one broadcast, then runs the
step body (``target``) with a ``NullTracker``: rank 0 alone writes checkpoints and reports.

Deterministic settings (the loss curve does not depend on the number of processes, on CPU):
fp32 on CPU; the same seed on every rank and every micro-batch seeded by (seed, step, index) so
dropout does not depend on which rank runs it (``micro_batch_seed``); gloo's all-reduce sums the
same values in a fixed order; the micro-batches of a global batch are dealt round-robin
(``TokenBudgetBatchSampler.stream``) and the loss is normalised by the global batch's target count.
"""

import multiprocessing
import os
import socket
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from multiprocessing.process import BaseProcess
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from loguru import logger

TIMEOUT = timedelta(minutes=30)  # a collective waits this long for a slow rank (rank 0 validating)


def free_port(host: str = "") -> int:
    """A TCP port free on ``host`` now (``""``: every interface, as another node connects to it).

    Used here for a local rendezvous, and by ``src.orchestration.launch_nodes`` for the master's port.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


@dataclass(frozen=True)
class World:
    """This process's place among the data-parallel ranks (``rank 0 of 1`` without torch.distributed)."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0


@dataclass(frozen=True)
class Rendezvous:
    """Where the ranks meet and which of them this machine starts: global ranks ``first_rank`` ..
    ``first_rank + nproc - 1``, the first being this process."""

    addr: str
    port: int
    world_size: int
    first_rank: int
    nproc: int
    torchrun: bool = False  # the launcher started every local process itself: spawn none


_local_rank = 0  # this process's index on its machine, while in a group


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """``auto``/``cpu``/``cuda``; on CUDA each data-parallel rank of a machine takes its own GPU."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} asked for, but no CUDA device is available "
                         "(expected 'cpu' or 'auto')")
    return torch.device("cuda", local_rank) if name == "cuda" else torch.device(name)


def current() -> World:
    if dist.is_available() and dist.is_initialized():
        return World(dist.get_rank(), dist.get_world_size(), _local_rank)
    return World()


def backend_for(device_type: str) -> str:
    return "nccl" if device_type == "cuda" else "gloo"


def rendezvous_from_env(nproc_per_node: int, env: Mapping[str, str] | None = None) -> Rendezvous:
    """The group this step joins: torchrun's or ClearML's variables when set, else a local one.

    Args:
        nproc_per_node: processes per machine (``training.nproc_per_node``).
        env: the environment (default ``os.environ``).
    """
    env = os.environ if env is None else env
    if "LOCAL_RANK" in env and "WORLD_SIZE" in env:  # torchrun: one process per rank, all started
        return Rendezvous(env.get("MASTER_ADDR", "127.0.0.1"), int(env.get("MASTER_PORT", "29500")),
                          int(env["WORLD_SIZE"]), int(env["RANK"]), 1, torchrun=True)
    if "NODE_RANK" in env and "WORLD_SIZE" in env and int(env["WORLD_SIZE"]) > 1:  # Task.launch_multi_node
        world = int(env["WORLD_SIZE"])
        if world % nproc_per_node:
            raise ValueError(f"WORLD_SIZE={world} from the launcher is not a multiple of "
                             f"nproc_per_node={nproc_per_node}")
        return Rendezvous(env["MASTER_ADDR"], int(env["MASTER_PORT"]), world,
                          int(env["NODE_RANK"]) * nproc_per_node, nproc_per_node)
    return Rendezvous("127.0.0.1", free_port("127.0.0.1"), nproc_per_node, 0, nproc_per_node)


def init(rendezvous: Rendezvous, rank: int, backend: str, workers: Sequence[BaseProcess] = ()) -> World:
    """Join the group as ``rank`` (the environment is left as it was, so a later step in the same
    process does not take it for a torchrun launch).

    Rank 0 hosts the rendezvous store and waits for the others while watching its own spawned
    ``workers``: one that dies before joining (an import error, say) fails the step at once instead
    of leaving rank 0 waiting for the whole timeout. Under torchrun, torchrun's own store is used.
    """
    global _local_rank
    _local_rank = int(os.environ["LOCAL_RANK"]) if rendezvous.torchrun else rank - rendezvous.first_rank
    if backend == "nccl":
        torch.cuda.set_device(_local_rank)
    if rendezvous.torchrun:
        dist.init_process_group(backend, init_method="env://", timeout=TIMEOUT)
    else:
        store = dist.TCPStore(rendezvous.addr, rendezvous.port, rendezvous.world_size, is_master=rank == 0,
                              timeout=TIMEOUT, wait_for_workers=False)
        if rank == 0:
            _wait_for_ranks(store, rendezvous.world_size, workers)
        else:
            store.add("joined", 1)
        dist.init_process_group(backend, store=store, rank=rank, world_size=rendezvous.world_size,
                                timeout=TIMEOUT)
    logger.info(f"rank {rank} of {rendezvous.world_size} joined ({backend}, "
                f"{rendezvous.addr}:{rendezvous.port})")
    return current()


def _wait_for_ranks(store: dist.TCPStore, world_size: int, workers: Sequence[BaseProcess]) -> None:
    deadline = time.monotonic() + TIMEOUT.total_seconds()
    while store.add("joined", 0) < world_size - 1:
        dead = [f"{w.name} (exit code {w.exitcode})" for w in workers if not w.is_alive()]
        if dead:
            raise RuntimeError(f"data-parallel worker(s) {', '.join(dead)} exited before joining the group")
        if time.monotonic() > deadline:
            raise TimeoutError(f"{store.add('joined', 0) + 1} of {world_size} ranks joined within {TIMEOUT}")
        time.sleep(0.1)


def teardown() -> None:
    global _local_rank
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
    _local_rank = 0


def broadcast_inputs(inputs: dict[str, Any] | None) -> dict[str, Any]:
    """Rank 0's step inputs to every rank (the argument is ignored elsewhere)."""
    box = [inputs if current().is_main else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def _worker(rendezvous: Rendezvous, rank: int, backend: str, target: Callable[[dict[str, Any]],
                                                                              None]) -> None:
    """A spawned (or torchrun) rank: join, take the step's inputs, run ``target(inputs)``, leave."""
    init(rendezvous, rank, backend)
    try:
        inputs = broadcast_inputs(None)
        target(inputs)
        dist.barrier()  # leave together: rank 0 hosts the rendezvous store
    finally:
        teardown()


def serve_as_worker(target: Callable[[dict[str, Any]], None], device_type: str = "cpu") -> None:
    """Under torchrun, a rank other than 0: wait for rank 0's train step, train, return."""
    rendezvous = rendezvous_from_env(1)
    _worker(rendezvous, rendezvous.first_rank, backend_for(device_type), target)


@contextmanager
def data_parallel(nproc_per_node: int, device_type: str, target: Callable[[dict[str, Any]], None],
                  inputs: dict[str, Any]) -> Iterator[World]:
    """Run the body as one rank of the step's group: spawn this machine's other ranks, join, share inputs.

    With one process in all this does nothing (``World()``). Spawned workers call ``target`` (a
    module-level function: a spawned process imports it by its qualified name) with ``inputs``; it
    must run the same training loop.

    Args:
        nproc_per_node: processes on this machine.
        device_type: ``"cpu"`` (gloo) or ``"cuda"`` (NCCL, one GPU per local rank).
        target: the step body for the other ranks.
        inputs: what they need to build it (a picklable dict).
    """
    rendezvous = rendezvous_from_env(nproc_per_node)
    if rendezvous.world_size == 1:
        yield World()
        return
    backend = backend_for(device_type)
    context = multiprocessing.get_context("spawn")
    workers = [] if rendezvous.torchrun else [
        context.Process(target=_worker, args=(rendezvous, rendezvous.first_rank + i, backend, target),
                        name=f"rank{rendezvous.first_rank + i}")
        for i in range(1, rendezvous.nproc)]
    for worker in workers:
        worker.start()
    try:
        world = init(rendezvous, rendezvous.first_rank, backend, workers)
        broadcast_inputs(inputs)
        yield world
        dist.barrier()
    finally:
        teardown()
        for worker in workers:
            worker.join(timeout=60)
            if worker.is_alive():
                worker.terminate()
    failed = [f"{w.name} (exit code {w.exitcode})" for w in workers if w.exitcode != 0]
    if failed:
        raise RuntimeError(f"data-parallel workers failed: {', '.join(failed)}")


def micro_batch_seed(seed: int, step: int, index: int, purpose: int) -> int:
    """The RNG seed of micro-batch ``index`` of optimizer step ``step``: the same on whichever rank runs
    it."""
    return int(np.random.SeedSequence([seed, step, index, purpose]).generate_state(1)[0])


def all_reduce_sum(values: torch.Tensor) -> torch.Tensor:
    """Sum over ranks (in place when distributed; unchanged alone)."""
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return values


def any_rank(flags: Sequence[bool], device: torch.device) -> tuple[bool, ...]:
    """Each flag, true on every rank when it is true on one (stop requests, time budgets): ranks must stop
    together. One all-reduce and one host read for all the flags (the trainer calls it every ``log_every``
    steps)."""
    if not (dist.is_available() and dist.is_initialized()):
        return tuple(bool(f) for f in flags)
    values = torch.tensor([1.0 if f else 0.0 for f in flags], device=device)
    dist.all_reduce(values, op=dist.ReduceOp.MAX)
    return tuple(v > 0 for v in values.tolist())


def same_on_all_ranks(value: int, device: torch.device) -> bool:
    """Whether every rank holds the same integer (e.g. the step each resumed from)."""
    if not (dist.is_available() and dist.is_initialized()):
        return True
    lo = torch.tensor([float(value)], device=device)
    hi = lo.clone()
    dist.all_reduce(lo, op=dist.ReduceOp.MIN)
    dist.all_reduce(hi, op=dist.ReduceOp.MAX)
    return bool(lo.item() == hi.item())
