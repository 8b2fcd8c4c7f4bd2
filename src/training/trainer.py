"""The training loop, written out: forward, loss, backward, clip, step, schedule (nanoGPT style).

Everything a run needs to continue after a crash is in its checkpoints: model, optimizer,
scheduler, RNG states and the batch sampler's position (``checkpoint_format.py`` says what a
checkpoint holds and upgrades older ones). Resuming from step k therefore follows the same loss
curve as a run that was never interrupted (CPU, same seed). What the loop asks of a task is
``task.py``; the gradient and update measures it takes along the way are ``monitor.py``.

Data parallel (``src/training/distributed.py``): when the process group is up, the model is wrapped
in ``DistributedDataParallel`` for the training forward, each rank runs its share of the global
batch's micro-batches (the sampler deals them out), and rank 0 alone validates, writes checkpoints
and history and reports; every other rank gets a ``NullTracker``. A stop request (signal) or a
spent time budget on one rank stops all of them at the same step; they compare at steps divisible
by ``log_every`` (``_should_stop``), so that no step but a logging one waits for the device.
"""

import json
import math
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from loguru import logger
from tqdm import tqdm

from src.config.base import config_to_dict
from src.config.training import check_global_batch
from src.data.batching import TokenBudgetBatchSampler
from src.models.builders import build
from src.tracking import NullTracker, TrackerLike
from src.training import distributed
from src.training.checkpoint import CheckpointManager
from src.training.checkpoint_format import (
    best_state,
    check_same_shape,
    regroup_optimizer_state,
    stored_config,
    training_state,
)
from src.training.distributed import resolve_device
from src.training.finetune import check_same_finetuning, lora_record, optimizer_groups, prepare_model
from src.training.loss import perplexity
from src.training.monitor import Diagnostics, parameter_norm, save_curves
from src.training.resources import resource_usage
from src.training.rng import rng_state, seed_everything, set_rng_state
from src.training.schedule import make_schedule
from src.training.task import Task

if TYPE_CHECKING:  # a type only: the experiment config's module reads the task table, which reaches the loop
    from src.experiment import ExperimentConfig


@dataclass
class TrainResult:
    run_dir: Path
    steps: int
    best_valid_loss: float
    best_checkpoint: Path
    last_checkpoint: Path
    history: list[dict[str, float]] = field(default_factory=list)  # train rows: step, loss, lr
    valid_history: list[dict[str, float]] = field(default_factory=list)  # step, valid_loss, valid_perplexity


@contextmanager
def stop_requests() -> Iterator[threading.Event]:
    """SIGTERM / SIGINT ask the loop to stop at the next step boundary instead of dying mid-step.

    ClearML's own SIGTERM hook only flushes and lets the process run on, so without this a plain
    ``kill`` would not stop training at all.
    """
    requested = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield requested
        return
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}

    def handler(signum, frame):
        if requested.is_set():  # a second signal: stop now
            raise KeyboardInterrupt
        name = signal.Signals(signum).name
        logger.warning(f"received {name}: checkpointing after this step, then stopping")
        requested.set()

    for sig in previous:
        signal.signal(sig, handler)
    try:
        yield requested
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


class Trainer:
    """Owns the model, optimizer, schedule and sampler of one run; ``fit()`` runs the loop.

    What depends on the task (batches, loss, validation, probe) comes from ``task``, e.g. a
    ``src.tasks.translation.TranslationTask``; the model from ``src.models.builders.build`` for
    ``cfg.model.family`` with the task's ``model_sizes()``.

    Args:
        cfg: the whole experiment config.
        task: the task's data and rules (``src/training/task.py``).
        run_dir: where checkpoints, history and plots go.
        tracker: the step's tracker.
        inference: what every checkpoint carries so the model can be used alone (tokenizers,
            special ids, family; ``src.training.checkpoint_format.inference_fields``).
        resuming: a resume follows; ``model.init_from`` is then applied only if no checkpoint is found.
    """

    def __init__(self, cfg: "ExperimentConfig", task: Task, run_dir: Path, tracker: TrackerLike,
                 inference: dict[str, Any] | None = None, *, resuming: bool = False) -> None:
        self.cfg, self.task = cfg, task
        self.inference = inference or {}
        self.tc = cfg.training
        self.world = distributed.current()
        self.run_dir, self.probe = run_dir, task.probe
        self.tracker = tracker if self.world.is_main else NullTracker()
        # Diagnostics (per-layer gradient norms, update ratio, heatmaps) only when someone records them.
        self.diagnostics = Diagnostics(cfg.tracking.enabled and self.world.is_main,
                                       cfg.tracking.grad_norm_every)
        self.device = resolve_device(self.tc.device, self.world.local_rank)
        # torchrun's or ClearML's world size, which the config's own check could not know
        check_global_batch(self.tc.grad_accum_steps, self.world.size, "the world size")
        self.micro_per_rank = self.tc.grad_accum_steps // self.world.size
        if self.device.type == "cuda":  # TF32 tensor cores for float32 matmuls (bf16 autocast: the rest)
            torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
        seed_everything(self.tc.seed)
        self.model = build(cfg.model, **task.model_sizes())
        if self.tc.distill_from is not None:  # the loss against a teacher (src/training/distillation.py)
            from src.training.distillation import distillation_task

            self.task = distillation_task(cfg, task, self.device)
        if not resuming:  # before the optimizer and DDP's broadcast see the weights
            self._initialise_from()
        # which weights train and at which rates (src/training/finetune.py); a LoRA checkpoint says it is one
        prepare_model(self.model, self.tc, cfg.model.family)
        self.inference = {**self.inference, **lora_record(self.tc)}
        self.model = self.model.to(self.device)
        self.train_model = self._wrap(self.model)
        # weight decay and layer-wise rates by parameter group; checkpoints from before, with one group:
        # regroup_optimizer_state (src/training/checkpoint_format.py). Fused: one kernel for every tensor, on
        # a CPU core 4x faster than the foreach loop (55 against 210 ms a step for MiniLM's 22.7M weights)
        self.optimizer = torch.optim.AdamW(optimizer_groups(self.model, self.tc), lr=self.tc.lr,
                                           betas=self.tc.betas, eps=self.tc.eps,
                                           fused=self.device.type in ("cpu", "cuda"))
        schedule = make_schedule(self.tc.schedule, self.tc.warmup_steps, self.tc.max_steps)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, schedule)
        # Fixed-size items (images, language-model windows) have length 1: the budget is then the batch size.
        self.sampler = TokenBudgetBatchSampler(
            *task.lengths(), cfg.batching.batch_size or cfg.batching.max_tokens,
            shuffle=cfg.batching.shuffle, seed=self.tc.seed,
            bucket_size_multiplier=cfg.batching.bucket_size_multiplier,
            rank=self.world.rank, world_size=self.world.size,
        )
        self.checkpoints = CheckpointManager(run_dir / "checkpoints", keep=self.tc.keep_checkpoints)
        self.step, self.elapsed, self.best_valid = 0, 0.0, math.inf
        self.history_path = run_dir / "train_history.jsonl"

    def _initialise_from(self) -> None:
        """``model.init_from``'s weights in place of the fresh ones (``src/training/init_from.py``), or the
        distillation teacher's chosen layers (``src/training/distillation.py``)."""
        if self.tc.distill_from is not None:
            from src.training.distillation import student_from_teacher

            student_from_teacher(self.model, self.task.teacher, self.tc.distill_from)
        elif self.cfg.model.init_from is not None:
            from src.training.init_from import initialise_from

            initialise_from(self.model, self.cfg.model.init_from, self.cfg.model.family,
                            self.task.model_sizes().get("vocab_size"))

    def _wrap(self, model: torch.nn.Module) -> torch.nn.Module:
        """The module the training forward goes through: DDP when distributed, compiled when asked.
        ``self.model`` stays the plain module (checkpoints, validation, probes)."""
        if self.world.size > 1:
            from torch.nn.parallel import DistributedDataParallel

            ids = [self.device.index] if self.device.type == "cuda" else None
            model = DistributedDataParallel(model, device_ids=ids)
        return torch.compile(model) if self.tc.compile else model

    # --- checkpoints -------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return training_state(
            step=self.step, elapsed=self.elapsed, best_valid=self.best_valid, model=self.model,
            optimizer=self.optimizer, scheduler=self.scheduler, sampler=self.sampler, rng=rng_state(),
            config=self.cfg, grad_history=self.diagnostics.grad_history,
            grad_steps=self.diagnostics.grad_steps, inference=self.inference)

    def resume(self) -> bool:
        state = self.checkpoints.load_latest()
        if state is None:
            logger.info(f"no usable checkpoint in {self.checkpoints.directory}; starting from step 0")
            self._initialise_from()  # in place: the optimizer holds the same parameters, with no state yet
            return False
        check_same_shape(stored_config(state)["model"], config_to_dict(self.cfg.model))
        check_same_finetuning(stored_config(state).get("training", {}), self.tc)
        self.model.load_state_dict(state["model"])
        # each group's rate and decay rule, as built from the config (a loaded state brings its own)
        rules = [(group["lr_scale"], group["decay"]) for group in self.optimizer.param_groups]
        # one parameter group in checkpoints from before the no-decay group
        optimizer_state = regroup_optimizer_state(state["optimizer"], self.model, self.optimizer)
        self.optimizer.load_state_dict(optimizer_state)
        self.scheduler.load_state_dict(state["scheduler"])
        self._apply_optimizer_settings(rules)
        self.sampler.load_state_dict(state["sampler"])
        set_rng_state(state["rng"])
        self.step, self.elapsed, self.best_valid = state["step"], state["elapsed"], state["best_valid"]
        self.diagnostics.grad_history = state["grad_history"]
        self.diagnostics.grad_steps = state["grad_steps"]
        if not distributed.same_on_all_ranks(self.step, self.device):
            raise RuntimeError(f"rank {self.world.rank} resumed from step {self.step}, another rank from a "
                               "different step: the ranks must read the same checkpoint folder "
                               f"({self.checkpoints.directory})")
        if self.world.is_main:
            self._truncate_history(self.step)
        return True

    def _apply_optimizer_settings(self, rules: list[tuple[float, bool]]) -> None:
        """The config's optimizer settings win over the checkpoint's: a resume may change lr, betas, eps,
        weight decay or the layer decay's factor (``check_resume`` allows it). ``rules``: each group's
        (lr scale, takes weight decay). The schedule continues at the checkpoint's step."""
        groups = self.optimizer.param_groups
        for group, (scale, decays) in zip(groups, rules, strict=True):  # the no-decay groups stay at 0
            group.update(initial_lr=self.tc.lr * scale, betas=self.tc.betas, eps=self.tc.eps, lr_scale=scale,
                         decay=decays, weight_decay=self.tc.weight_decay if decays else 0.0)
        self.scheduler.base_lrs = [group["initial_lr"] for group in groups]
        for group, schedule in zip(groups, self.scheduler.lr_lambdas):
            group["lr"] = group["initial_lr"] * schedule(self.scheduler.last_epoch)  # as LambdaLR computes it

    def _truncate_history(self, step: int) -> None:
        if self.history_path.exists():
            rows = [json.loads(line) for line in self.history_path.read_text().splitlines() if line]
            self.history_path.write_text("".join(json.dumps(r) + "\n" for r in rows if r["step"] <= step))

    def save_checkpoint(self) -> Path | None:
        if not self.world.is_main:
            return None
        path = self.checkpoints.save(self.state_dict())
        self.tracker.flush()  # the scalars up to this checkpoint survive a kill, as the checkpoint does
        return path

    def save_best(self, valid_loss: float) -> Path | None:
        if not self.world.is_main:
            return None
        return self.checkpoints.save_best(best_state(step=self.step, model=self.model, valid_loss=valid_loss,
                                                     config=self.cfg, inference=self.inference))

    # --- one optimizer step --------------------------------------------------------------------
    def _batch(self, indices: list[int]) -> tuple[Any, int, int]:
        """A micro-batch on the device, with its target and token counts taken on the host batch.

        Counting on the device would make the host wait for the GPU on every micro-batch; on CUDA the
        host batch is then pinned and copied without blocking.
        """
        if self.device.type == "cpu":
            batch = self.task.batch(indices, self.device)
            return batch, self.task.targets(batch), self.task.tokens(batch)
        host = self.task.batch(indices, torch.device("cpu"))
        return tuple(self._to_device(t) for t in host), self.task.targets(host), self.task.tokens(host)

    def _to_device(self, host: torch.Tensor) -> torch.Tensor:
        """A host tensor on the device; on CUDA from pinned memory without blocking (a plain copy waits)."""
        cuda = self.device.type == "cuda"
        return (host.pin_memory() if cuda else host).to(self.device, non_blocking=cuda)

    def train_step(self, batches) -> tuple[torch.Tensor, torch.Tensor, int]:
        """Forward/backward over this rank's micro-batches of the global batch (gradients not yet stepped).

        The loss is the sum of token losses over the *global* batch divided by its target count, on any
        number of ranks: each rank scales by ``world / n_global`` because DDP averages gradients.
        Micro-batch ``j`` of the global batch (rank ``j % world``) draws its randomness (dropout,
        augmentation) from a seed of (seed, step, j). Returns the summed token loss of this rank (a
        tensor: no host sync here), the global batch's target count (a tensor) and this rank's token count.
        Target and token counts come from the host batches (``_batch``), never read back from the device.
        """
        autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.device.type == "cuda")
        # this rank's micro-batches, by their index in the global batch
        index = [self.world.rank + i * self.world.size for i in range(self.micro_per_rank)]
        micro = []  # (batch on the device, its targets, its tokens)
        for j in index:
            torch.manual_seed(distributed.micro_batch_seed(self.tc.seed, self.step, j, 0))
            micro.append(self._batch(next(batches)))
        n_local = torch.tensor([float(sum(n for _, n, _ in micro))])
        n_global = distributed.all_reduce_sum(self._to_device(n_local))[0]
        loss_sum = torch.zeros((), device=self.device)
        for i, (j, (batch, n, _)) in enumerate(zip(index, micro)):
            torch.manual_seed(distributed.micro_batch_seed(self.tc.seed, self.step, j, 1))
            last = i == len(micro) - 1
            # DDP all-reduces the gradients once, after the last micro-batch
            sync = self.train_model.no_sync() if self.world.size > 1 and not last else nullcontext()
            with sync, autocast:  # the loss itself is computed in float32 (src/training/loss.py)
                loss, _ = self.task.loss(self.train_model, batch, self.tc.label_smoothing)  # its count is n
            (loss * (n * self.world.size) / n_global).backward()
            loss_sum += loss.detach() * n
        return loss_sum, n_global, sum(tokens for _, _, tokens in micro)

    # --- the loop ---------------------------------------------------------------------------
    def fit(self) -> TrainResult:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        batches = self.sampler.stream()
        budget = self.tc.max_minutes * 60 if self.tc.max_minutes else math.inf
        bar = tqdm(total=self.tc.max_steps, initial=self.step, desc="train", unit="step", dynamic_ncols=True,
                   disable=not self.world.is_main)
        self._window = (0, time.perf_counter())  # tokens since the last log line, and when it was written
        self.model.train()
        stopped = False
        with stop_requests() as stop:
            while self.step < self.tc.max_steps:
                stopped, out_of_time = self._should_stop(stop.is_set(), self.elapsed >= budget)
                if stopped or out_of_time:
                    break
                self._loop_step(batches, bar)
        bar.close()
        if stopped:
            path = self.save_checkpoint()
            raise KeyboardInterrupt(f"stopped by signal at step {self.step}; "
                                    f"resume from {path} with --resume")
        return self._finish()

    def _should_stop(self, stop_requested: bool, out_of_time: bool) -> tuple[bool, bool]:
        """(a stop was requested, the time budget is spent), the same on every rank: ranks stop at one step.

        Alone both are read at every step, for free. With several ranks agreeing costs an all-reduce
        and a host read (a GPU sync), so the ranks compare only at steps divisible by ``log_every``
        (the loss is read there anyway): a signal to one rank, or one rank's clock running out, takes
        effect within ``log_every`` steps, and a run may overshoot ``max_minutes`` by as many steps.
        """
        if self.world.size == 1:
            return stop_requested, out_of_time
        if self.step % self.tc.log_every:
            return False, False
        stopped, spent = distributed.any_rank((stop_requested, out_of_time), self.device)
        return stopped, spent

    def _loop_step(self, batches, bar: tqdm) -> None:
        """One optimizer step, then its logging and periodic work (all inside the time budget)."""
        t0 = time.perf_counter()
        measure = self.diagnostics.before_step(self.model, self.step + 1)
        loss_sum, n_global, n_tokens = self.train_step(batches)
        clip = self.tc.grad_clip if self.tc.grad_clip is not None else math.inf
        # the gradients are already all-reduced: every rank clips the same
        total_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), clip)
        self.step += 1
        logging = self.step % self.tc.log_every == 0 or self.step == 1
        if self.device.type == "cpu" or logging or measure:  # on a GPU, .item() only where it is logged
            self.diagnostics.log_gradients(self.model, self.tracker, total_norm.item(), self.step)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        if measure:
            self.diagnostics.log_update_ratio(self.model, self.tracker, self.step)
        tokens, since = self._window[0] + n_tokens, self._window[1]
        self._window = (tokens, since)
        if logging:  # the global batch's mean loss and all ranks' tokens: one all-reduce, at log steps only
            tokens_here = torch.tensor(float(tokens), dtype=torch.float64, device=self.device)
            totals = distributed.all_reduce_sum(torch.stack([loss_sum.double(), tokens_here]))
            loss_total, tokens_total = totals.tolist()
            seconds = max(time.perf_counter() - since, 1e-9)
            self._log_train(loss_total / n_global.item(), tokens_total / seconds, bar)
            self._window = (0, time.perf_counter())
        self._periodic()
        self.elapsed += time.perf_counter() - t0
        bar.update(1)

    def _log_train(self, loss: float, tok_s: float, bar: tqdm) -> None:
        if not self.world.is_main:
            return
        lr = self.scheduler.get_last_lr()[0]
        values = {"loss": loss, "perplexity": perplexity(loss)}
        parts = self.task.loss_parts() if hasattr(self.task, "loss_parts") else {}  # distillation's terms
        self.tracker.log_scalars("train", values | parts, self.step)
        self.tracker.log_scalar("learning_rate", "lr", lr, self.step)
        self.tracker.log_scalar("throughput", "tokens/s", tok_s, self.step)
        self.tracker.log_scalar("param_norm", "total", parameter_norm(self.model), self.step)
        self._append_history({"step": self.step, "loss": loss, "lr": lr, "tokens_per_s": tok_s, **parts})
        bar.set_postfix(loss=f"{loss:.3f}", lr=f"{lr:.2e}", tok_s=f"{tok_s:,.0f}")

    def _periodic(self) -> None:
        last = self.step >= self.tc.max_steps
        if self.step % self.cfg.tracking.resource_every == 0 or self.step == 1:
            self.tracker.log_scalars("resources", resource_usage(), self.step)
        # rank 0 alone validates; the others wait for it at the next all-reduce
        if (self.step % self.tc.eval_every == 0 or last) and self.world.is_main:
            self.validate()
        if self.step % self.tc.checkpoint_every == 0 or last:
            self.save_checkpoint()
        drawn = self.step % self.cfg.tracking.heatmap_every == 0 or last
        if self.diagnostics.enabled and self.probe is not None and drawn:
            self.probe.report(self.model, self.tracker, self.step)

    def _append_history(self, row: dict[str, float]) -> None:
        with self.history_path.open("a") as f:
            f.write(json.dumps(row) + "\n")

    def validate(self) -> float:
        """The task's validation metrics, logged and kept in the history; the loss picks the best one."""
        metrics = self.task.validate(self.model, self.cfg.batching.max_tokens, self.device)
        valid_loss = metrics["loss"]
        self.tracker.log_scalars("valid", metrics, self.step)
        self._append_history({"step": self.step, **{f"valid_{k}": v for k, v in metrics.items()}})
        logger.info(f"step {self.step}: " + ", ".join(f"valid {k} {v:.4f}" for k, v in metrics.items()))
        if valid_loss < self.best_valid:
            self.best_valid = valid_loss
            self.save_best(valid_loss)
        return valid_loss

    def _finish(self) -> TrainResult:
        if not self.world.is_main:
            logger.info(f"rank {self.world.rank}: trained {self.step} steps")
            return TrainResult(self.run_dir, self.step, math.inf, self.checkpoints.directory / "best.pt",
                               self.checkpoints.path_for(self.step))
        files = self.checkpoints.step_files()
        if not files or files[-1] != self.checkpoints.path_for(self.step):
            self.validate()  # stopped by the time budget between two periodic steps
            self.save_checkpoint()
            if self.diagnostics.enabled and self.probe is not None:
                self.probe.report(self.model, self.tracker, self.step)  # the final heatmaps, always
        self.diagnostics.log_heatmap(self.tracker, self.step)
        history = [json.loads(line) for line in self.history_path.read_text().splitlines() if line]
        save_curves(history, self.run_dir, self.step)
        logger.info(f"trained {self.step} steps in {self.elapsed / 60:.1f} min; "
                    f"best valid loss {self.best_valid:.4f}")
        return TrainResult(self.run_dir, self.step, self.best_valid, self.checkpoints.directory / "best.pt",
                           self.checkpoints.step_files()[-1], [row for row in history if "loss" in row],
                           [row for row in history if "valid_loss" in row])
