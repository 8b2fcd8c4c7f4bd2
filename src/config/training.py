"""Optimisation settings (Sec. 5.3-5.4) and how the step is spread over processes and nodes."""

from typing import Literal

from pydantic import NonNegativeInt, PositiveFloat, PositiveInt, confloat, model_validator

from src.config.base import FrozenConfig


class TrainingConfig(FrozenConfig):
    """The explicit training loop's knobs.

    The global batch of one optimizer step is ``grad_accum_steps`` micro-batches of
    ``batching.max_tokens``, whatever the number of processes: with ``nodes * nproc_per_node``
    ranks each rank runs ``grad_accum_steps / (nodes * nproc_per_node)`` of them, so the data (and,
    on CPU, the loss curve) does not depend on how many processes share the work.
    """

    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    max_steps: PositiveInt = 2000
    max_minutes: PositiveFloat | None = None  # wall-clock budget; stops cleanly when reached
    lr: PositiveFloat = 7e-4
    betas: tuple[float, float] = (0.9, 0.98)
    eps: PositiveFloat = 1e-9
    weight_decay: confloat(ge=0.0) = 0.0
    schedule: Literal["inverse_sqrt", "cosine"] = "inverse_sqrt"
    warmup_steps: NonNegativeInt = 100
    label_smoothing: confloat(ge=0.0, lt=1.0) = 0.1
    grad_clip: PositiveFloat | None = 1.0
    grad_accum_steps: PositiveInt = 1
    log_every: PositiveInt = 10
    eval_every: PositiveInt = 200
    checkpoint_every: PositiveInt = 200
    keep_checkpoints: PositiveInt = 2
    nproc_per_node: PositiveInt = 1  # data-parallel processes per machine (``train --nproc N`` sets it)
    nodes: PositiveInt = 1  # machines; > 1 only on ClearML agents (Task.launch_multi_node)
    compile: bool = False  # torch.compile the model for training (worth it on a GPU; minutes of start-up)
    # distillation (src/training/distillation.py): a DistilBERT-style student learns from a teacher's softened
    # class distribution (Hinton et al. 2015) and the labels. distill_from: the teacher, any source
    # model.init_from takes (a run, a .pt, NAME:TAG, a Hugging Face folder); None = no teacher
    distill_from: str | None = None
    distill_alpha: confloat(ge=0.0, le=1.0) = 0.5  # the soft targets' weight; the labels' is 1 - alpha
    distill_temperature: PositiveFloat = 2.0  # T: the softmax temperature of both distributions
    # the teacher's logits computed once per training example before the first step (fixed data), instead
    # of by a teacher forward on every batch; pays off when the run sees each example more than once
    distill_cache: bool = False
    # --- fine-tuning (src/training/finetune.py): which weights train, and at which rate ---
    # full: every weight; lora: only low-rank adapters on the attention projections (Hu et al. 2021,
    # src/components/lora.py) and the task's new head, everything else frozen
    finetune: Literal["full", "lora"] = "full"
    # full only: layer-wise learning-rate decay (ELECTRA, BEiT): block i of L (0 = the lowest) trains at
    # lr * decay^(L - i), the embeddings at lr * decay^(L + 1), the head and final norm at lr; None = off
    layer_lr_decay: confloat(gt=0.0, le=1.0) | None = None
    freeze_embeddings: bool = False  # full only: the embedding tables (and a tied output layer) stay fixed
    lora_rank: int = 8  # r, the rank of each update B A
    lora_alpha: PositiveFloat = 16.0  # the update is scaled by alpha / r
    lora_dropout: confloat(ge=0.0, lt=1.0) = 0.0  # dropout on the adapters' input
    # the adapted projections: q, k, v (row blocks of the fused in_proj) and o (out_proj); the paper's q, v
    lora_targets: tuple[Literal["q", "k", "v", "o"], ...] = ("q", "v")

    @model_validator(mode="after")
    def _global_batch_divides(self) -> "TrainingConfig":
        check_global_batch(self.grad_accum_steps, self.nodes * self.nproc_per_node, "nodes * nproc_per_node")
        if self.distill_cache and self.distill_from is None:
            raise ValueError("training.distill_cache=true caches a teacher's logits; set "
                             "training.distill_from (got distill_from=None)")
        return self

    @model_validator(mode="after")
    def _finetune_options_fit(self) -> "TrainingConfig":
        if self.lora_rank < 1:
            raise ValueError(f"training.lora_rank={self.lora_rank}: LoRA's rank r is the width of its update "
                             "B A, expected an integer >= 1 (the paper uses 1 to 64)")
        if self.finetune == "lora" and (self.layer_lr_decay is not None or self.freeze_embeddings):
            raise ValueError("training.finetune=lora trains only the adapters and the head; "
                             "layer_lr_decay and freeze_embeddings are options of finetune=full (got "
                             f"layer_lr_decay={self.layer_lr_decay}, "
                             f"freeze_embeddings={self.freeze_embeddings})")
        if not self.lora_targets or len(set(self.lora_targets)) != len(self.lora_targets):
            raise ValueError("training.lora_targets must name distinct projections among q, k, v, o; got "
                             f"{list(self.lora_targets)}")
        return self


def check_global_batch(grad_accum_steps: int, world: int, ranks: str) -> None:
    """Refuse a global batch whose micro-batches cannot be dealt out evenly to ``world`` ranks.

    The config checks it against ``nodes * nproc_per_node``; the trainer again against the world size
    that torchrun or ClearML set in the environment, which the config cannot know.

    Args:
        grad_accum_steps: micro-batches in one optimizer step, over all ranks.
        world: the number of ranks.
        ranks: how the message names ``world`` (e.g. ``"nodes * nproc_per_node"``).
    """
    if grad_accum_steps % world:
        need = -(-grad_accum_steps // world) * world  # the next multiple of world
        raise ValueError(
            f"grad_accum_steps={grad_accum_steps} is not divisible by {ranks} = {world}: "
            "the global batch (grad_accum_steps micro-batches) is dealt out evenly to the ranks; "
            f"add the override training.grad_accum_steps={need} (or another multiple of {world})")


# the families whose layers attend: LoRA adapts their attention projections (the recurrent ones have none)
ATTENTION_FAMILIES = ("encoder_classifier", "encoder_mlm", "decoder_lm", "vit", "encoder_decoder")


def check_finetune(training: TrainingConfig, family: str) -> None:
    """The fine-tuning options that ``family`` cannot take, refused in one line before any step runs."""
    if training.finetune == "lora" and family not in ATTENTION_FAMILIES:
        raise ValueError(f"training.finetune=lora adapts the attention projections; "
                         f"model.family={family!r} has none (LoRA takes model.family in "
                         f"{list(ATTENTION_FAMILIES)}; fine-tune it with training.finetune=full)")
    if training.layer_lr_decay is not None and family == "encoder_decoder":
        raise ValueError("training.layer_lr_decay orders one stack of layers from the embeddings up to "
                         "the head; model.family='encoder_decoder' has two stacks and one embedding table "
                         "that is also its output layer (use layer_lr_decay with the encoder, decoder_lm, "
                         "vit or recurrent families)")
