"""Benchmark: our Transformer against ``torch.nn.Transformer``, and cached against uncached decoding.

    python -m src.main bench [--norm-first] [--json] [--repeats 5] [--steps 5] [--threads 2]
    python -m src.main bench --device cuda --d-model 512 --n-heads 8 --layers 6 --d-ff 2048 --batch-size 128


Two contests, each run in one process on the same config and the same batch:

1. Training tokens/s (forward, backward, AdamW step) of our model against ``nn.Transformer``
   with the same norm placement. The reference is wrapped with a copy of our embeddings and
   generator and our body starts from its weights, so both compute the same function and only the
   body's implementation differs. Both get exactly the masks that function needs: source padding
   and causal. (Our model also adds the final LayerNorms ``nn.Transformer`` has.)
2. Greedy decoding tokens/s with the key/value cache against without it. EOS is set to an id the
   model never emits, so both decode exactly ``--new-tokens`` steps.

Contestants alternate (A B A B ...) so that noise from other processes hits both alike; the
table gives the median of ``--repeats`` timings and the ratio of medians.

With ``--compile`` the training contest adds a third contestant, a copy of our model under
``torch.compile`` (inductor), timed the same way; its first step, which pays the compilation, is reported
apart.

On CUDA (``--device cuda``) training runs under bf16 autocast, as the trainer does, and the
table adds model FLOPs utilisation: the FLOPs of one training step, counted by PyTorch's
``FlopCounterMode`` on the real batch (matmuls and attention, forward and backward, padding
included, as the kernels compute it), times steps/s, over the device's peak dense bf16 FLOP/s
(``--peak-tflops``, or the datasheet figure for a known GPU).
"""

import argparse
import copy
import json
import statistics
import time
import warnings
from collections.abc import Callable

import torch
import torch.nn.functional as F
from loguru import logger
from torch import Tensor, nn

from src.bench_cli import add_arguments  # noqa: F401  (bench.add_arguments, as before; defined without torch)
from src.config.model import ModelConfig
from src.models.decoding import greedy_decode
from src.models.torch_compat import load_from_torch_transformer
from src.models.transformer import EncoderDecoderTransformer, build_model

PAD_ID, BOS_ID = 0, 1
COMPILED = "ours compiled"  # the training contestant of --compile
TARGETS = {"training": 1.0, "decoding": 3.0}  # ours/torch and cached/uncached ratios the project aims for
MFU_TARGET = 0.40
# Dense bf16 tensor-core peaks from NVIDIA's datasheets (SXM parts), TFLOP/s; other devices need --peak-tflops
PEAK_BF16_TFLOPS = {"H200": 989.4, "H100": 989.4, "A100": 312.0}


class TorchReference(nn.Module):
    """``nn.Transformer`` between (copies of) our embeddings and generator.

    Args:
        embeddings: our ``Embeddings`` module.
        body: the ``nn.Transformer`` (batch_first=True).
        generator: our output projection.
        pad_id: padding token id.
    """

    def __init__(
        self, embeddings: nn.Module, body: nn.Transformer, generator: nn.Linear, pad_id: int
    ) -> None:
        super().__init__()
        self.embeddings, self.body, self.generator, self.pad_id = embeddings, body, generator, pad_id

    def forward(self, src: Tensor, tgt: Tensor) -> Tensor:
        """Shape: src: (B, S), tgt: (B, T) -> logits (B, T, V)."""
        src_blocked = src == self.pad_id  # PyTorch's convention: True = may not attend
        causal = nn.Transformer.generate_square_subsequent_mask(tgt.size(1), device=tgt.device)
        hidden = self.body(
            self.embeddings.source(src),
            self.embeddings.target(tgt),
            tgt_mask=causal,
            src_key_padding_mask=src_blocked,
            memory_key_padding_mask=src_blocked,
            tgt_is_causal=True,
        )
        return self.generator(hidden)


def build_contestants(args: argparse.Namespace) -> tuple[EncoderDecoderTransformer, TorchReference]:
    """Our model and the reference, same sizes, same weights, dropout 0.1 everywhere."""
    cfg = ModelConfig(
        d_model=args.d_model,
        n_heads=args.n_heads,
        n_encoder_layers=args.layers,
        n_decoder_layers=args.layers,
        d_ff=args.d_ff,
        dropout=0.1,
        attention_dropout=0.1,
        norm_first=args.norm_first,
        final_norm=True,
        max_positions=max(args.seq_len, args.new_tokens),
    )
    ours = build_model(cfg, args.vocab_size, args.vocab_size, PAD_ID)
    with (
        warnings.catch_warnings()
    ):  # pre-norm: "enable_nested_tensor is True, but ..." (an inference-only path)
        warnings.simplefilter("ignore", UserWarning)
        body = nn.Transformer(
            cfg.d_model,
            cfg.n_heads,
            cfg.n_encoder_layers,
            cfg.n_decoder_layers,
            cfg.d_ff,
            dropout=cfg.dropout,
            batch_first=True,
            norm_first=cfg.norm_first,
        )
    load_from_torch_transformer(ours, body)
    shell = copy.deepcopy(ours)  # one deepcopy keeps the embedding-generator tie inside the copy
    return ours, TorchReference(shell.embeddings, body, shell.generator, PAD_ID)


def make_batch(args: argparse.Namespace, generator: torch.Generator) -> tuple[Tensor, Tensor, Tensor]:
    """Random right-padded sentences, lengths in [seq_len/2, seq_len]: src, decoder input, labels (B, L)."""

    def sentences() -> Tensor:
        tokens = torch.randint(2, args.vocab_size, (args.batch_size, args.seq_len), generator=generator)
        lengths = torch.randint(
            args.seq_len // 2, args.seq_len + 1, (args.batch_size, 1), generator=generator
        )
        return tokens.masked_fill(torch.arange(args.seq_len) >= lengths, PAD_ID)

    src, labels = sentences(), sentences()
    tgt_in = torch.cat([torch.full((args.batch_size, 1), BOS_ID), labels[:, :-1]], dim=1)
    return src, tgt_in, labels


def train_steps(
    model: nn.Module, optimizer: torch.optim.Optimizer, batch: tuple[Tensor, Tensor, Tensor], steps: int
) -> None:
    src, tgt_in, labels = batch
    for _ in range(steps):
        with torch.autocast("cuda", torch.bfloat16, enabled=src.is_cuda):  # as the trainer on CUDA
            logits = model(src, tgt_in)
            loss = F.cross_entropy(logits.flatten(0, 1).float(), labels.flatten(), ignore_index=PAD_ID)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)


def step_flops(model: nn.Module, optimizer: torch.optim.Optimizer, batch: tuple[Tensor, Tensor,
                                                                                Tensor]) -> int:
    """FLOPs of one training step (forward and backward) on ``batch``, as PyTorch's FlopCounterMode counts
    them."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        train_steps(model, optimizer, batch, 1)
    return counter.get_total_flops()


def peak_flops(args: argparse.Namespace) -> float | None:
    """The device's peak FLOP/s: ``--peak-tflops``, else a known GPU's datasheet bf16 figure, else None."""
    if args.peak_tflops is not None:
        return args.peak_tflops * 1e12
    if args.device != "cuda":
        return None
    name = torch.cuda.get_device_name()
    return next((tflops * 1e12 for key, tflops in PEAK_BF16_TFLOPS.items() if key in name), None)


def interleaved_medians(
    contestants: dict[str, Callable[[], None]], work: float, repeats: int
) -> dict[str, dict]:
    """Time each contestant ``repeats`` times, alternating A B A B; ``work`` units per call -> units/s.

    "best" (the fastest repeat) is reported next to the median: on a shared machine it is the
    repeat least disturbed by other processes.
    """
    timings: dict[str, list[float]] = {name: [] for name in contestants}
    for run_once in contestants.values():  # warm-up: allocator, thread pool, first-call dispatch
        run_once()
    for repeat in range(repeats):
        for name, run_once in contestants.items():
            start = time.perf_counter()
            run_once()
            if torch.cuda.is_initialized():
                torch.cuda.synchronize()  # the timer reads the host clock: wait for the queued kernels
            timings[name].append(work / (time.perf_counter() - start))
            logger.debug(f"repeat {repeat}: {name} {timings[name][-1]:.4g}/s")
    return {
        name: {"median": statistics.median(values), "best": max(values), "repeats": values}
        for name, values in timings.items()
    }


def report(args: argparse.Namespace) -> str:
    """Run both contests; return a table (or, with ``--json``, one JSON object) for the console."""
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    if args.device == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda: no CUDA device is visible to PyTorch here")
    torch.manual_seed(args.seed)
    ours, reference = (m.to(args.device) for m in build_contestants(args))
    batch = tuple(t.to(args.device) for t in make_batch(args, torch.Generator().manual_seed(args.seed)))
    ours.eval(), reference.eval()
    with (
        torch.no_grad(),
        warnings.catch_warnings(),
    ):  # PyTorch's eval fast path warns that nested tensors are a prototype
        warnings.simplefilter("ignore", UserWarning)
        max_diff = (ours(*batch[:2]) - reference(*batch[:2])).abs().max().item()
    logger.info(f"same weights, eval mode: max |logits ours - torch| = {max_diff:.2e}")

    ours.train(), reference.train()
    optimizers = {
        name: torch.optim.AdamW(m.parameters(), lr=1e-4) for name, m in (("ours", ours), ("torch", reference))
    }
    tokens = (batch[2] != PAD_ID).sum().item() * args.steps
    flops = {name: step_flops(m, optimizers[name], batch) for name, m in (("ours", ours),
                                                                          ("torch", reference))}
    contestants = {
        "ours": lambda: train_steps(ours, optimizers["ours"], batch, args.steps),
        "torch": lambda: train_steps(reference, optimizers["torch"], batch, args.steps),
    }
    compile_s = None
    if args.compile:  # a copy of ours (same weights), compiled; its first step pays the compilation
        twin = copy.deepcopy(ours)
        optimizers[COMPILED] = torch.optim.AdamW(twin.parameters(), lr=1e-4)
        compiled = torch.compile(twin)
        started = time.perf_counter()
        train_steps(compiled, optimizers[COMPILED], batch, 1)
        compile_s = time.perf_counter() - started
        logger.info(f"torch.compile: first step {compile_s:.1f} s (compilation included)")
        flops[COMPILED] = flops["ours"]  # the same model: the same FLOPs, however they are scheduled
        contestants[COMPILED] = lambda: train_steps(compiled, optimizers[COMPILED], batch, args.steps)
    logger.info(f"training: {args.repeats} x {args.steps} steps per contestant")
    training = interleaved_medians(contestants, tokens, args.repeats)

    ours.eval()
    decode = {
        "bos_id": BOS_ID,
        "eos_id": args.vocab_size,
        "max_new_tokens": args.new_tokens,
    }  # EOS: never emitted
    logger.info(f"decoding: {args.repeats} x {args.new_tokens} new tokens per contestant")
    decoding = interleaved_medians(
        {
            "cached": lambda: greedy_decode(ours, batch[0], use_cache=True, **decode),
            "uncached": lambda: greedy_decode(ours, batch[0], use_cache=False, **decode),
        },
        args.batch_size * args.new_tokens,
        args.repeats,
    )

    result = _result(args, max_diff, training, decoding) | {"mfu": _mfu(args, flops, training, tokens)}
    if compile_s is not None:
        result["ratios"]["training_compiled"] = training[COMPILED]["median"] / training["torch"]["median"]
        result["compile_first_step_s"] = compile_s
    return json.dumps(result, indent=2) if args.json else _table(result)


def _mfu(args: argparse.Namespace, flops: dict[str, int], training: dict, tokens_per_call: int) -> dict:
    """Model FLOPs utilisation of each contestant: step FLOPs x median steps/s over the peak (None: no peak
    known)."""
    peak = peak_flops(args)
    steps_per_s = {name: training[name]["median"] / tokens_per_call * args.steps for name in flops}
    achieved = {name: flops[name] * steps_per_s[name] for name in flops}
    return {"step_flops": flops, "achieved_tflops": {n: a / 1e12 for n, a in achieved.items()},
            "peak_tflops": None if peak is None else peak / 1e12,
            "utilisation": {n: None if peak is None else a / peak for n, a in achieved.items()},
            "target": MFU_TARGET}


def _result(args: argparse.Namespace, max_diff: float, training: dict, decoding: dict) -> dict:
    settings = {
        key: getattr(args, key)
        for key in (
            "norm_first",
            "batch_size",
            "seq_len",
            "new_tokens",
            "vocab_size",
            "d_model",
            "n_heads",
            "layers",
            "d_ff",
            "repeats",
            "steps",
            "device",
            "compile",
        )
    }
    ratios = {
        "training": training["ours"]["median"] / training["torch"]["median"],
        "decoding": decoding["cached"]["median"] / decoding["uncached"]["median"],
    }
    return {
        "settings": settings | {"threads": torch.get_num_threads(), "torch": torch.__version__},
        "max_abs_logit_diff": max_diff,
        "training_tokens_per_s": training,
        "decoding_tokens_per_s": decoding,
        "ratios": ratios,
        "meets_targets": {name: ratios[name] >= TARGETS[name] for name in TARGETS},
    }


def _table(result: dict) -> str:
    s = result["settings"]
    placement = "pre-norm" if s["norm_first"] else "post-norm"
    sizes = (
        f"d_model {s['d_model']}, {s['n_heads']} heads, {s['layers']}+{s['layers']} layers, ff {s['d_ff']}"
    )
    data = f"batch {s['batch_size']}, length {s['seq_len']}, vocab {s['vocab_size']}"
    same = f"same weights: max |logit diff| {result['max_abs_logit_diff']:.1e}"
    lines = [
        (f"Transformer bench on {s['device']}: {placement}, {sizes}, {data}, {s['threads']} threads, "
         f"torch {s['torch']}"),
        f"median of {s['repeats']} interleaved repeats; {same}",
        "",
        f"{'contest':<38}{'A tokens/s':>12}{'B tokens/s':>12}{'A/B':>8}{'target':>8}",
    ]
    contests = {
        "training": ("training_tokens_per_s", "ours", "torch", "train: ours (A) vs nn.Transformer (B)"),
        "decoding": ("decoding_tokens_per_s", "cached", "uncached", "greedy: cached (A) vs uncached (B)"),
    }
    if "training_compiled" in result["ratios"]:
        contests["training_compiled"] = ("training_tokens_per_s", COMPILED, "torch",
                                         "train: ours compiled (A) vs torch (B)")
    for contest, (key, a, b, title) in contests.items():
        medians = result[key][a]["median"], result[key][b]["median"]
        ratio, target = result["ratios"][contest], TARGETS[contest.removesuffix("_compiled")]
        lines.append(f"{title:<38}{medians[0]:>12.0f}{medians[1]:>12.0f}{ratio:>8.2f}{target:>8.1f}")
    if "compile_first_step_s" in result:
        lines.append(f"torch.compile: first training step {result['compile_first_step_s']:.1f} s "
                     "(compilation included, not in the figures above)")
    mfu = result["mfu"]
    achieved = ", ".join(f"{name} {tflops:.2f}" for name, tflops in mfu["achieved_tflops"].items())
    if mfu["peak_tflops"] is None:
        lines.append(f"training TFLOP/s: {achieved} (MFU needs --peak-tflops on this device)")
    else:
        shares = ", ".join(f"{name} {u:.3f}" for name, u in mfu["utilisation"].items())
        lines.append(f"training TFLOP/s: {achieved}; MFU of {mfu['peak_tflops']:.0f}: {shares} (target "
                     f"{MFU_TARGET})")
    return "\n".join(lines)
