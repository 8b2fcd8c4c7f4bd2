"""Modern blocks: RoPE and ALiBi positions, grouped-query caches, each block on a run, the vanishing gradient.

Uses the decoder LM's switches (``model.positional_encoding: rope | alibi``, ``norm: rmsnorm``,
``activation: swiglu``, ``n_kv_heads``, ``bias``; ``src/models/decoder_lm.py``) with the components
``RotaryPositionEmbedding``, ``alibi_bias``, ``RMSNorm`` and ``KVCache`` (``src/components/``), and the
project's recurrent classifiers (``src/models/rnn_classifier.py``) for the last step.
"""

import torch
from torch import Tensor

from src.components.positional_encoding import sinusoidal_table
from src.components.rotary_position_embedding import RotaryPositionEmbedding
from src.config import ModelConfig
from src.lessons import toy
from src.lessons.plots import heatmap, line_plot
from src.lessons.step import Knob, Step, StepResult
from src.models.builders import build
from src.models.sampling import generate

N_POSITIONS = 48
EXTRAPOLATION_STEPS, EXTRAPOLATION_FACTOR, N_SYMBOLS = 300, 4, 10
POSITION_KINDS = ("learned", "rope", "alibi")
# each block switched on alone on the GPT-2-shaped toy LM, then all of them (the Llama shape)
BLOCKS = {
    "GPT-2 (learned, LayerNorm, GELU, MHA)": {},
    "+ RoPE": {"positional_encoding": "rope"},
    "+ ALiBi": {"positional_encoding": "alibi"},
    "+ RMSNorm": {"norm": "rmsnorm"},
    "+ SwiGLU": {"activation": "swiglu", "d_ff": 43},  # 3 matrices of 43 ~ 2 of 64: the same size
    "+ GQA (1 key/value head)": {"n_kv_heads": 1},
    "Llama (all, no biases)": {
        "positional_encoding": "rope",
        "norm": "rmsnorm",
        "activation": "swiglu",
        "d_ff": 43,
        "n_kv_heads": 1,
        "bias": False,
    },
}
MEMORY_STEPS, MEMORY_CLASSES, CELLS = 400, 4, ("rnn", "lstm", "gru")


def small_lm(seed: int = 0, **overrides: object) -> torch.nn.Module:
    """The lessons' 2-layer, 32-wide decoder LM, 4 heads and GELU (``toy.lm_config``), plus ``overrides``."""
    return toy.lm_model(toy.lm_config(**{"n_heads": 4, "activation": "gelu", **overrides}), N_SYMBOLS, seed)


# --- 1. rotary positions --------------------------------------------------------------------------
def relative_scores(head_dim: int) -> StepResult:
    """q rotated to position m, k to position n: the score depends on m - n alone. An added position
    vector (the sinusoid table) gives scores that depend on m and n."""
    generator = torch.Generator().manual_seed(0)
    q, k = torch.randn(2, head_dim, generator=generator, dtype=torch.float64)
    rope = RotaryPositionEmbedding(head_dim, N_POSITIONS)
    rotated_q = rope(q.expand(1, 1, N_POSITIONS, head_dim))[0, 0]  # (P, D): q at every position
    rotated_k = rope(k.expand(1, 1, N_POSITIONS, head_dim))[0, 0]
    table = sinusoidal_table(N_POSITIONS, head_dim).double()
    scores = {
        "RoPE": rotated_q @ rotated_k.T,  # (P, P), [m, n] = <R_m q, R_n k>
        "added sinusoids": (q + table) @ (k + table).T,
    }
    spreads, by_offset = {}, {}
    for name, s in scores.items():
        diagonals = [torch.diagonal(s, offset=-d) for d in range(N_POSITIONS)]  # entries with m - n = d
        spreads[name] = max(float(diag.max() - diag.min()) for diag in diagonals)
        by_offset[name] = [float(diag[0]) for diag in diagonals]  # the score at (m, n) = (d, 0)
    norm_error = float((rotated_q.norm(dim=-1) - q.norm()).abs().max())
    ticks = [str(p) if p % 8 == 0 else "" for p in range(N_POSITIONS)]
    return StepResult(
        outcome=f"head_dim={head_dim}: over all pairs (m, n) with the same m - n, RoPE's score varies by "
        f"{spreads['RoPE']:.1e}, added sinusoids' by {spreads['added sinusoids']:.2f}; rotation keeps "
        f"|q| to {norm_error:.0e}",
        metrics={
            "rope_offset_spread": spreads["RoPE"],
            "added_offset_spread": spreads["added sinusoids"],
            "rope_norm_error": norm_error,
        },
        columns=("m - n", "RoPE score", "added-sinusoid score"),
        rows=[[d, by_offset["RoPE"][d], by_offset["added sinusoids"][d]] for d in range(0, N_POSITIONS, 6)],
        figures={
            "rope_scores": heatmap(
                scores["RoPE"],
                ticks,
                ticks,
                "<R_m q, R_n k>: constant along diagonals",
                cmap="RdBu",
                xlabel="key position n",
                ylabel="query position m",
            ),
            "added_scores": heatmap(
                scores["added sinusoids"],
                ticks,
                ticks,
                "(q + PE_m) . (k + PE_n)",
                cmap="RdBu",
                xlabel="key position n",
                ylabel="query position m",
            ),
        },
    )


# --- 2. extrapolation ------------------------------------------------------------------------------
def loss_by_position(model: torch.nn.Module, length: int) -> Tensor:
    """Mean next-token loss at each position of fresh ``skip`` sequences of ``length`` tokens.

    Shape: (length-1,).
    """
    tokens = toy.lm_batch("skip", 256, length, N_SYMBOLS, torch.Generator().manual_seed(99))
    with torch.no_grad():
        logits = model(tokens[:, :-1])  # (B, T-1, V)
    return torch.nn.functional.cross_entropy(logits.transpose(1, 2), tokens[:, 1:], reduction="none").mean(0)


def extrapolation(train_length: int) -> StepResult:
    """Train at ``train_length`` tokens, test at 4x: learned positions fail past the training length,
    ALiBi does not."""
    test_length = EXTRAPOLATION_FACTOR * train_length
    losses, curves = {}, {}
    for kind in POSITION_KINDS:
        model = small_lm(positional_encoding=kind, max_positions=test_length)
        log = toy.train(
            model,
            toy.lm_loss("skip", train_length, N_SYMBOLS),
            steps=EXTRAPOLATION_STEPS,
            lr=3e-3,
            seed=0,
            warmup_steps=30,
            series=f"loss {kind}",
        )
        losses[kind], curves[f"loss {kind}"] = loss_by_position(model, test_length), log.losses
    # loss[t] predicts token t + 1; from t = 1 on, the rule (two back, plus 1) fixes it: the floor is 0
    seen = slice(1, train_length - 1)
    unseen = slice(train_length - 1, test_length - 1)  # predictions of tokens no training sequence had
    within = {kind: float(loss[seen].mean()) for kind, loss in losses.items()}
    beyond = {kind: float(loss[unseen].mean()) for kind, loss in losses.items()}
    return StepResult(
        outcome=f"trained at {train_length} tokens, tested at {test_length}; mean loss (nats) within / "
        "beyond the training length: "
        + ", ".join(f"{kind} {within[kind]:.3f} / {beyond[kind]:.3f}" for kind in POSITION_KINDS),
        metrics={
            **{f"within_{k}": v for k, v in within.items()},
            **{f"beyond_{k}": v for k, v in beyond.items()},
        },
        columns=(
            "positions",
            "loss within the training length",
            f"loss at {train_length}..{test_length - 1}",
        ),
        rows=[[kind, within[kind], beyond[kind]] for kind in POSITION_KINDS],
        figures={
            "loss_by_position": line_plot(
                list(range(1, test_length)),
                {k: v.tolist() for k, v in losses.items()},
                "position",
                "next-token loss (nats)",
                f"trained on {train_length} tokens (dashed: the length)",
                vline=train_length - 1,
                log_y=True,
            )
        },
        curves=curves,
    )


# --- 3. grouped-query caches ----------------------------------------------------------------------
def cache_bytes(kv_heads: int) -> StepResult:
    """Key/value cache bytes per token for 8 query heads sharing 8 (MHA), ``kv_heads`` (GQA) or 1 (MQA)
    key/value heads, measured on the cache after generating; the tokens are the same as without a cache."""
    if 8 % kv_heads:
        raise ValueError(f"kv_heads must divide the 8 query heads (1, 2, 4 or 8), got {kv_heads}")
    rows, measured = [], {}
    new_tokens, prompt = 64, torch.tensor([[toy.BOS, toy.FIRST_SYMBOL]])
    for groups in sorted({8, kv_heads, 1}, reverse=True):
        model = toy.lm_model(
            toy.lm_config(d_model=64, n_heads=8, n_kv_heads=groups, max_positions=128), N_SYMBOLS, seed=0
        )
        cache = model.new_cache()
        with torch.no_grad():
            logits = model(prompt, cache=cache)
            tokens = [int(logits[0, -1].argmax())]
            for _ in range(new_tokens - 1):
                logits = model(torch.tensor([[tokens[-1]]]), cache=cache)
                tokens.append(int(logits[0, -1].argmax()))
        uncached = generate(model, prompt, new_tokens, temperature=0.0, use_cache=False)[0, 2:].tolist()
        length = cache[0].length
        per_token = sum(layer.nbytes for layer in cache) / length
        formula = 2 * len(cache) * groups * (64 // 8) * 4  # keys and values, layers, heads, head width, fp32
        name = {8: "MHA", 1: "MQA"}.get(groups, "GQA")
        measured[name] = per_token
        rows.append([f"{name} ({groups} key/value heads)", per_token, formula, tokens == uncached])
    return StepResult(
        outcome="bytes of cache per token, 2 layers, 8 query heads of width 8, float32: "
        + ", ".join(f"{row[0]} {row[1]:.0f}" for row in rows)
        + f"; generation with the cache equals generation without it: {all(row[3] for row in rows)}",
        metrics={
            **{f"bytes_per_token_{k}": v for k, v in measured.items()},
            "cache_matches_formula": float(all(row[1] == row[2] for row in rows)),
            "cached_equals_uncached": float(all(row[3] for row in rows)),
        },
        columns=("attention", "measured bytes/token", "2 x layers x G x C/H x 4", "same tokens as uncached"),
        rows=rows,
    )


# --- 4. each block on a short run -----------------------------------------------------------------
def block_effects(steps: int) -> StepResult:
    """The toy LM trained ``steps`` steps on the skip pattern with each block on alone, then all of them."""
    rows, curves = [], {}
    for name, overrides in BLOCKS.items():
        model = small_lm(**overrides)
        log = toy.train(
            model,
            toy.lm_loss("skip", 24, N_SYMBOLS),
            steps=steps,
            lr=3e-3,
            seed=0,
            warmup_steps=20,
            series=f"loss {name}",
        )
        rows.append([name, sum(p.numel() for p in model.parameters()), log.final_loss()])
        curves[f"loss {name}"] = log.losses
    losses = {row[0]: row[2] for row in rows}
    base, llama = losses["GPT-2 (learned, LayerNorm, GELU, MHA)"], losses["Llama (all, no biases)"]
    return StepResult(
        outcome=f"after {steps} steps (mean of the last 10): GPT-2-shaped {base:.3f}, Llama-shaped "
        f"{llama:.3f}; "
        + ", ".join(f"{row[0]} {row[2]:.3f}" for row in rows[1:-1]),
        metrics={
            "loss_gpt2": base,
            "loss_llama": llama,
            **{f"loss {name}": loss for name, loss in losses.items()},
            **{f"parameters {row[0]}": row[1] for row in rows},
        },
        columns=("model", "parameters", f"loss after {steps} steps"),
        rows=rows,
        figures={
            "block_losses": line_plot(
                list(range(steps)),
                {k.removeprefix("loss "): v for k, v in curves.items()},
                "step",
                "loss (nats)",
                "the skip pattern, each block",
                log_y=True,
            )
        },
        curves=curves,
    )


# --- 5. the vanishing gradient --------------------------------------------------------------------
def memory_batch(batch: int, length: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """Sequences whose label is their first token (one of ``MEMORY_CLASSES``), followed by noise tokens.

    Shape: tokens (B, length), labels (B,).
    """
    labels = torch.randint(0, MEMORY_CLASSES, (batch,), generator=generator)
    noise = torch.randint(MEMORY_CLASSES, N_SYMBOLS, (batch, length - 1), generator=generator)
    return torch.cat([labels[:, None], noise], 1) + toy.FIRST_SYMBOL, labels


def gradient_by_position(model: torch.nn.Module, length: int) -> tuple[Tensor, float]:
    """|d loss / d x_t| for each input position t (mean over a batch), and the accuracy. Shape: (length,)."""
    tokens, labels = memory_batch(256, length, torch.Generator().manual_seed(7))
    embedded: list[Tensor] = []
    hook = model.embeddings.register_forward_hook(
        lambda _m, _i, out: embedded.append(out) or out.retain_grad()
    )
    model.zero_grad()
    logits = model(tokens)
    torch.nn.functional.cross_entropy(logits, labels).backward()
    hook.remove()
    return embedded[0].grad.norm(dim=-1).mean(0), float((logits.argmax(-1) == labels).float().mean())


def memory_model(cell: str, seed: int = 0) -> torch.nn.Module:
    """A 1-layer, 32-wide one-way recurrent classifier (``build_rnn_classifier``)."""
    torch.manual_seed(seed)
    cfg = ModelConfig(
        family=f"{cell}_classifier", d_model=32, n_encoder_layers=1, rnn_bidirectional=False, dropout=0.0
    )
    return build(cfg, vocab_size=toy.FIRST_SYMBOL + N_SYMBOLS, n_classes=MEMORY_CLASSES, pad_id=toy.PAD)


def vanishing_gradient(length: int) -> StepResult:
    """Remember the first of ``length`` tokens: the gradient that reaches it, at initialisation and after
    training, and the accuracy, per cell."""

    def loss_of_batch(model: torch.nn.Module, generator: torch.Generator) -> Tensor:
        tokens, labels = memory_batch(32, length, generator)
        return torch.nn.functional.cross_entropy(model(tokens), labels)

    gradients, rows, metrics = {}, [], {}
    for cell in CELLS:
        model = memory_model(cell)
        at_init, _ = gradient_by_position(model, length)
        toy.train(model, loss_of_batch, steps=MEMORY_STEPS, lr=1e-2, seed=0, series=f"loss {cell}")
        trained, accuracy = gradient_by_position(model, length)
        gradients[f"{cell}, initial"], gradients[f"{cell}, trained"] = at_init, trained
        initial_ratio, trained_ratio = float(at_init[0] / at_init[-1]), float(trained[0] / trained[-1])
        per_step = initial_ratio ** (1 / (length - 1))  # the geometric factor per step back
        rows.append([cell, initial_ratio, per_step, trained_ratio, accuracy])
        metrics |= {
            f"initial_ratio_{cell}": initial_ratio,
            f"per_step_{cell}": per_step,
            f"trained_ratio_{cell}": trained_ratio,
            f"accuracy_{cell}": accuracy,
        }
    return StepResult(
        outcome=f"{length} tokens; the gradient reaching the first token over the last one's, initially: "
        + ", ".join(f"{row[0]} {row[1]:.0e} ({row[2]:.2f}x per step)" for row in rows)
        + f"; after {MEMORY_STEPS} steps: "
        + ", ".join(f"{row[0]} {row[3]:.0e}, accuracy {row[4]:.2f}" for row in rows)
        + f" (chance {1 / MEMORY_CLASSES:.2f})",
        metrics=metrics,
        columns=(
            "cell",
            "first/last, initial",
            "factor per step",
            f"first/last after {MEMORY_STEPS} steps",
            "accuracy",
        ),
        rows=rows,
        figures={
            "gradient_by_position": line_plot(
                list(range(length)),
                {k: g.clamp_min(1e-30).tolist() for k, g in gradients.items()},
                "input position t",
                "|d loss / d x_t|",
                "the gradient reaching each token",
                log_y=True,
            )
        },
    )


STEPS = [
    Step(
        "rotary positions see only the offset",
        """
RoPE (Su et al. 2021) adds nothing to the embeddings. It rotates each pair of a query's (and a key's)
dimensions by an angle proportional to the position m. A rotation keeps the length, and the dot
product of a query rotated by m with a key rotated by n depends only on m - n (RoFormer Eq. 16):
attention sees relative positions although each vector carries its absolute one. We compare the
scores of one q and one k placed at every pair of positions with those of the Transformer's added
sinusoids.""",
        relative_scores,
        Knob("head_dim", 16, "the per-head width, an even number", low=2, high=256),
    ),
    Step(
        "ALiBi extrapolates, learned positions do not",
        """
ALiBi (Press et al. 2022) adds -m_h (i - j) to head h's score of query i for key j: a penalty linear
in the distance, with no learned part. Nothing in it depends on the absolute position, so a model
trained on short sequences sees nothing new on long ones. A learned position table has rows that
training never reached past its length. Three toy LMs learn a rule of relative position (each symbol
is the one two places back, plus 1) on short sequences; we test them four times longer.""",
        extrapolation,
        Knob("train_length", 16, "the training length; tests run at 4x", low=8, high=32),
    ),
    Step(
        "grouped-query attention shrinks the cache",
        """
When generating, every layer keeps the keys and values of all earlier tokens. Grouped-query
attention (Ainslie et al. 2023) lets G < H query heads share each key/value head, so the cache holds
G heads instead of H; multi-query attention is G = 1. We generate 64 tokens and measure the cache.""",
        cache_bytes,
        Knob("kv_heads", 2, "key/value heads for the 8 query heads: 1, 2, 4 or 8", low=1, high=8),
    ),
    Step(
        "each block on a short run",
        """
Llama differs from GPT-2 in five blocks: RoPE or ALiBi instead of a position table, RMSNorm
(Zhang & Sennrich 2019) instead of LayerNorm, the SwiGLU feed-forward (Shazeer 2020), grouped-query
attention and no biases. We switch each on alone in the toy LM and train on a pattern whose next
token is the one two places back plus 1: a rule of relative position. The parameter counts differ
(SwiGLU's width is chosen to match; shared key/value heads and no biases remove weights), so read
the losses with them. One seed, a toy task: the language-modelling section of the README measures
the same blocks on real text at the same size and budget.""",
        block_effects,
        Knob("steps", 200, "training steps per model", low=20, high=2000),
    ),
    Step(
        "the vanishing gradient of the plain RNN",
        """
Before attention, recurrent networks read a sequence one token at a time. The plain (Elman) RNN's
gradient to a token t steps back is a product of t factors tanh'(.) U, so it shrinks geometrically
(Bengio et al. 1994); the LSTM's additive cell and the GRU's interpolation give it a path that need
not shrink (Hochreiter & Schmidhuber 1997). Each cell learns to report the first of many tokens; we
measure the gradient that reaches each position before and after training. A cell learns the task
only once the gradient from the answer reaches the first token. PyTorch starts the LSTM's forget
gate half open (bias 0), so its cell forgets at first too; Jozefowicz et al. 2015 start it at 1.""",
        vanishing_gradient,
        Knob("length", 20, "tokens per sequence", low=5, high=200),
    ),
]
