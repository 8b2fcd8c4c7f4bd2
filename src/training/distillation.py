"""Knowledge distillation (Hinton et al. 2015) into a DistilBERT-style student (Sanh et al. 2019).

``training.distill_from: <teacher>`` (any source ``model.init_from`` takes, resolved before the pipeline
runs by ``src/orchestration/init_source.py``, which also gives the student the teacher's sizes).

The student (Sanh et al. 2019, Sec. 3, "Student initialization"): the teacher's architecture with half its
layers (``model.n_encoder_layers`` defaults to half), started from one teacher layer out of two: student
layer ``i`` takes teacher layer ``i * L_t // L_s``, i.e. layers 0, 2, 4, ... when the student has half of
them (Hugging Face's extraction script for DistilBERT keeps 0, 2, 4, 7, 9, 11 of BERT-base instead: the
last layer rather than the fifth). The embeddings, the final norm and the classification head are copied.

The loss (Hinton et al. 2015, Sec. 2), per text, with student logits z, teacher logits v, temperature T:

    p_T(v)_k = exp(v_k / T) / sum_j exp(v_j / T)                          (softened distributions)
    L_soft   = T^2 * KL(p_T(v) || p_T(z)) = T^2 * sum_k p_T(v)_k (log p_T(v)_k - log p_T(z)_k)
    L_hard   = -log p_1(z)_y                                              (cross-entropy with the label y)
    L        = alpha * L_soft + (1 - alpha) * L_hard                      (alpha: training.distill_alpha)

averaged over the batch. The gradient of the soft term scales as 1/T^2 (Sec. 2: dL/dz_k = (p_T(z)_k -
p_T(v)_k) / T, and p_T(z) - p_T(v) itself shrinks as 1/T), hence the T^2 factor: the soft and hard
terms keep their relative weight whatever T. At high T, with zero-mean logits, the soft gradient tends to
(z_k - v_k) / K for K classes (Sec. 2.1): distillation becomes matching the teacher's logits.

Where the teacher's logits come from (``training.distill_cache``):

- on the fly (the default): the teacher (eval mode, no gradient) reads each training batch inside the one
  training loop. Exact for any data, no memory and no pass before the first step; costs a teacher forward
  per example seen;
- cached: one teacher pass over the training split before the first step, its logits kept per example
  (``(N, K)`` floats). Text classification's training data are fixed token ids, so the cache is exact (the
  tests compare it with the on-the-fly logits); it pays off once the run sees the split more than once.
"""

from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from loguru import logger
from torch import Tensor, nn

from src.config.base import config_to_dict
from src.config.model import ModelConfig
from src.data.batching import TokenBudgetBatchSampler
from src.models.builders import build
from src.models.hf_config import InitSourceError, hf_model_keys, is_hf_folder, read_hf_config
from src.training.init_from import LoadReport, checkpoint_state, load_matching, source_state


def distillation_loss(student: Tensor, teacher: Tensor, labels: Tensor, temperature: float, alpha: float,
                      label_smoothing: float = 0.0) -> tuple[Tensor, Tensor, Tensor]:
    """``alpha * T^2 * KL(p_T(teacher) || p_T(student)) + (1 - alpha) * CE(student, labels)``, batch means;
    also its two parts, detached (the module docstring has the equations).

    Shape:
        student, teacher: (B, K) logits; labels: (B,) class ids.
    """
    log_p_student = F.log_softmax(student.float() / temperature, dim=-1)
    log_p_teacher = F.log_softmax(teacher.float() / temperature, dim=-1)
    # kl_div(input=log q, target=log p) = sum p (log p - log q); batchmean: over texts, not over B*K
    soft = F.kl_div(log_p_student, log_p_teacher, log_target=True, reduction="batchmean") * temperature ** 2
    hard = F.cross_entropy(student.float(), labels, label_smoothing=label_smoothing)
    return alpha * soft + (1 - alpha) * hard, soft.detach(), hard.detach()


def teacher_layers(n_teacher: int, n_student: int) -> list[int]:
    """The teacher layer each student layer starts from: one out of two for a student of half the depth
    (0, 2, 4, ...), evenly spaced from layer 0 for any other depth."""
    if not 1 <= n_student <= n_teacher:
        raise InitSourceError(f"a student of {n_student} layers cannot take the weights of a teacher of "
                              f"{n_teacher} (expected 1 to {n_teacher} layers)")
    return [i * n_teacher // n_student for i in range(n_student)]


def student_from_teacher(student: nn.Module, teacher: nn.Module, source: str) -> LoadReport:
    """Copy the teacher's embeddings, chosen layers (``teacher_layers``), final norm and head into the
    student; log the table (the teacher's other layers are its "ignored" row)."""
    chosen = teacher_layers(len(teacher.encoder.layers), len(student.encoder.layers))
    renamed, dropped = {}, []
    for name, tensor in teacher.state_dict().items():
        if not name.startswith("encoder.layers."):
            renamed[name] = tensor
            continue
        index = int(name.split(".")[2])
        if index in chosen:  # teacher layer chosen[i] -> student layer i
            student_name = name.replace(f"layers.{index}.", f"layers.{chosen.index(index)}.", 1)
            renamed[student_name] = tensor
        else:
            dropped.append(name)
    report = load_matching(student, renamed, f"{source} (student layers from teacher layers {chosen})",
                           dropped)
    report.key = "distill_from"
    if report.new:  # the student is the teacher's architecture: every tensor must come from it
        raise InitSourceError(f"training.distill_from={source}: the student's {report.new[0]} has no tensor "
                              "in the teacher (the student must be the teacher's architecture)")
    logger.info(report.table())
    return report


def build_teacher(student_cfg: ModelConfig, source: str, sizes: dict[str, int]) -> nn.Module:
    """The teacher of ``source`` (a resolved checkpoint file or Hugging Face folder) with all its weights,
    in eval mode and frozen. Refused when any tensor of the model is missing: a teacher must be a trained
    classifier, not a pretrained encoder with a fresh head."""
    if is_hf_folder(source):
        keys = hf_model_keys(read_hf_config(source), "encoder_classifier", source) | {"pooling": "cls"}
        teacher_cfg = ModelConfig.model_validate(config_to_dict(student_cfg) | keys | {"init_from": None})
    else:
        from src.training.checkpoint_format import stored_config

        stored = stored_config(checkpoint_state(source, None))["model"]
        teacher_cfg = ModelConfig.model_validate(stored | {"init_from": None})
    teacher = build(teacher_cfg, **sizes)
    state, ignored = source_state(source, "encoder_classifier", sizes.get("vocab_size"))
    report = load_matching(teacher, state, source, ignored)
    if report.new:
        missing = ", ".join(report.new[:3])
        raise InitSourceError(f"training.distill_from={source}: the teacher has no {missing}: a teacher is a "
                              "trained classifier (e.g. an imdb-classifier run), not a pretrained encoder "
                              "with a fresh head")
    return teacher.eval().requires_grad_(False)


@dataclass
class Distillation:
    """A task whose loss is ``distillation_loss`` against a teacher: the loop's ``Task`` (``task.py``)
    around the student's task, which lends its batches, validation and probe.

    The student's task must have ``logits_and_labels(model, batch)`` (class logits (B, K), labels (B,)).
    Each batch carries its examples' indices last, which the cache is looked up by.

    Args:
        task: the student's task (e.g. ``ClassificationTask``).
        teacher: the frozen teacher, on the training device.
        temperature: T.
        alpha: the soft targets' weight.
        cached: the teacher's logits per training example (N, K), or None to compute them on the fly.
    """

    task: Any
    teacher: nn.Module
    temperature: float
    alpha: float
    cached: Tensor | None = None
    # (soft * n, hard * n, n) since the last log line: one running sum, which ranks that never log keep small
    _sums: Tensor | None = field(default=None, init=False, repr=False)

    @property
    def probe(self):
        return self.task.probe

    def model_sizes(self) -> dict[str, int]:
        return self.task.model_sizes()

    def lengths(self) -> tuple[list[int], list[int]]:
        return self.task.lengths()

    def batch(self, indices: list[int], device: torch.device) -> tuple[Tensor, ...]:
        return (*self.task.batch(indices, device), torch.tensor(indices, device=device))

    def targets(self, batch: tuple[Tensor, ...]) -> int:
        return self.task.targets(batch[:-1])

    def tokens(self, batch: tuple[Tensor, ...]) -> int:
        return self.task.tokens(batch[:-1])

    @torch.no_grad()
    def teacher_logits(self, batch: tuple[Tensor, ...]) -> Tensor:
        """The teacher's logits for the student task's ``batch`` (without the indices)."""
        logits, _ = self.task.logits_and_labels(self.teacher, batch)
        return logits.float()

    def loss(self, model: nn.Module, batch: tuple[Tensor, ...], label_smoothing: float) -> tuple[Tensor, int]:
        """``distillation_loss`` of the batch's texts, and their count; its parts are kept for the log."""
        *inner, index = batch
        student, labels = self.task.logits_and_labels(model, tuple(inner))
        teacher = self.cached[index] if self.cached is not None else self.teacher_logits(tuple(inner))
        loss, soft, hard = distillation_loss(student, teacher, labels, self.temperature, self.alpha,
                                             label_smoothing)
        n = labels.numel()
        # full_like fills on the device: a tensor made from a host number would be a copy that waits for it
        sums = torch.stack([soft * n, hard * n, torch.full_like(soft, float(n))])
        self._sums = sums if self._sums is None else self._sums + sums
        return loss, n

    def loss_parts(self) -> dict[str, float]:
        """The soft (T^2 KL) and hard (cross-entropy) terms' means over the texts since the last call (the
        trainer's log window), for the training log; read on the host, at log steps only."""
        if self._sums is None:
            return {}
        soft, hard, n = self._sums.tolist()
        self._sums = None
        return {"distill_soft": soft / n, "distill_hard": hard / n}

    def validate(self, model: nn.Module, max_tokens: int, device: torch.device) -> dict[str, Any]:
        """The student's own validation (its hard labels): what the best checkpoint is chosen by."""
        return self.task.validate(model, max_tokens, device)


@torch.no_grad()
def cache_teacher_logits(task: Any, teacher: nn.Module, max_tokens: int, device: torch.device) -> Tensor:
    """The teacher's logits for every training example of ``task``, in example order: (N, K), on
    ``device``."""
    lengths = task.lengths()
    rows: list[Tensor | None] = [None] * len(lengths[0])
    for indices in TokenBudgetBatchSampler(*lengths, max_tokens, shuffle=False):
        logits, _ = task.logits_and_labels(teacher, task.batch(indices, device))
        for i, row in zip(indices, logits.float()):
            rows[i] = row
    return torch.stack(rows)


def distillation_task(cfg, task: Any, device: torch.device) -> Distillation:
    """The student's ``task`` wrapped for ``training.distill_from``'s teacher, with its logits cached when
    ``training.distill_cache``."""
    tc = cfg.training
    if not hasattr(task, "logits_and_labels"):
        raise InitSourceError(f"training.distill_from: task={cfg.task!r} has no class logits to distil "
                              "(distillation takes task=classification)")
    teacher = build_teacher(cfg.model, tc.distill_from, task.model_sizes()).to(device)
    cached = None
    if tc.distill_cache:
        cached = cache_teacher_logits(task, teacher, cfg.batching.max_tokens, device)
        logger.info(f"training.distill_cache: the teacher's logits of {len(cached)} training examples")
    logger.info(f"distilling from {tc.distill_from}: T={tc.distill_temperature}, alpha={tc.distill_alpha}, "
                f"teacher logits {'cached' if cached is not None else 'on the fly'}")
    return Distillation(task, teacher, tc.distill_temperature, tc.distill_alpha, cached)
