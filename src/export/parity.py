"""Does the ONNX export compute what PyTorch does? The check every export passes, and the translation parity command.

``check_export`` runs at the end of every export (``exporter.export_checkpoint``), before the
manifest that makes the folder usable is written: each family's graphs against the PyTorch model on
inputs the graphs were not traced at (batch 1, length 1, the longest length, the past length 0),
with padded rows and mixed lengths in one batch. A graph that differs by more than ``allowed``, or
gives a non-finite output where PyTorch gives a finite one, is refused with that case named.

The command below compares translation decoding on the run's test sentences:

    python -m src.export.parity RUN_OR_CHECKPOINT [--sentences 100] [--beam 4] [--steps 5] [--json]

On the run's test sentences (``src.export.bench.sentences_of_run``), both backends decode with the same
code (``translate`` with ``greedy_decode``, then ``beam_search``), and the tokens are compared
sentence by sentence. The logits are compared along PyTorch's greedy path: both backends take the
same tokens at every step, so a difference is the graphs' arithmetic alone, not a diverging path.
The command exits 1 when any comparison fails (tolerance ``--atol``, default 1e-4).
"""

import argparse
import json
import sys
from pathlib import Path

from loguru import logger

from src.cli_runner import run_module_command


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", metavar="RUN_OR_CHECKPOINT",
                        help="a checkpoint, a run folder, id or name, or 'latest'")
    parser.add_argument("--runs-dir", default="runs",
                        help="where run ids and names are looked up (default: runs)")
    parser.add_argument("--sentences", type=int, default=100, help="test sentences compared (default 100)")
    parser.add_argument("--beam", type=int, default=4, help="beam size of the beam comparison (default 4)")
    parser.add_argument("--steps", type=int, default=5,
                        help="decoding steps whose logits are compared (default 5)")
    parser.add_argument("--atol", type=float, default=1e-4,
                        help="largest allowed logit difference (default 1e-4)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")


def logits_along(model, src, path, bos_id: int):
    """Logits of every step when ``model`` is fed BOS then ``path`` (B, K) token by token.

    Shape:
        src: (B, S); path: (B, K) -> (B, K, V).
    """
    import torch

    memory, src_mask = model.encode(src)
    cache = model.new_cache()
    # (B, K): BOS, then the path
    tokens = torch.cat([torch.full_like(path[:, :1], bos_id), path[:, :-1]], dim=1)
    return torch.stack([model.step_logits(tokens[:, t : t + 1], memory, src_mask, cache)
                        for t in range(tokens.size(1))], dim=1)  # K x (B, V) -> (B, K, V)


# allowed |difference|: CHECK_ATOL + CHECK_RTOL * the case's largest |PyTorch output|
CHECK_ATOL, CHECK_RTOL = 1e-4, 1e-5
# the mixed-length batch's longest row (the longest length itself is checked at batch 1)
MIXED_MAX_LENGTH = 256


def allowed(expected) -> float:
    """The largest |ONNX - PyTorch| accepted for outputs ``expected``: float32 rounding, scaled to their
    size."""
    return CHECK_ATOL + CHECK_RTOL * float(expected.abs().max()) if expected.numel() else CHECK_ATOL


def check_export(trained, onnx_model) -> dict:
    """Every check case of ``trained.family`` on PyTorch (``trained.model``) and on ``onnx_model``.

    Returns:
        ``{"cases": [names], "max_abs_diff", "ok", "failure"}``; ``failure`` is one line naming the
        failing case and the difference (None when ``ok``).
    """
    import torch

    worst, names = 0.0, []
    with torch.no_grad():
        for name, run_torch, run_onnx in check_cases(trained, onnx_model):
            expected, actual = run_torch(), run_onnx()
            names.append(name)
            failure = _compare(name, expected, actual)
            if failure is not None:
                return {"cases": names, "max_abs_diff": None, "ok": False, "failure": failure}
            worst = max(worst, float((expected - actual).abs().max()))
    logger.info("export check: {} case(s) against PyTorch, largest |difference| {:.2e}", len(names), worst)
    return {"cases": names, "max_abs_diff": worst, "ok": True, "failure": None}


def _compare(name: str, expected, actual) -> str | None:
    """None if ``actual`` (ONNX Runtime) matches ``expected`` (PyTorch); else one line saying how it does
    not."""
    import torch

    if actual.shape != expected.shape:
        return f"{name}: ONNX Runtime gives shape {tuple(actual.shape)}, PyTorch {tuple(expected.shape)}"

    def rows(bad) -> list[int]:
        """The batch rows (first axis) where ``bad`` holds, the first ten."""
        return sorted({int(i) for i in bad.nonzero()[:, 0]})[:10]

    finite = torch.isfinite(expected)
    if not finite.all():
        return (f"{name}: PyTorch's own outputs are not finite in rows {rows(~finite)}; "
                "the model itself is broken")
    nonfinite = ~torch.isfinite(actual)
    if nonfinite.any():
        return (f"{name}: ONNX Runtime gives non-finite outputs (NaN or inf) in rows {rows(nonfinite)}, "
                "where PyTorch's are finite")
    diff, limit = (expected - actual).abs(), allowed(expected)
    if diff.max() > limit:
        return (f"{name}: largest |ONNX Runtime - PyTorch| {float(diff.max()):.3g} in rows "
                f"{rows(diff > limit)} (allowed {limit:.1e})")
    return None


def check_cases(trained, onnx_model):
    """(name, PyTorch output thunk, ONNX Runtime output thunk) for ``trained.family``."""
    import torch

    family, cfg, model = trained.family, trained.config.model, trained.model
    generator = torch.Generator().manual_seed(0)
    longest = cfg.max_positions
    mixed = min(longest, MIXED_MAX_LENGTH)
    mixed_lengths = sorted({mixed, 1, 2, 3, mixed // 2 + 1, mixed - 1} - {0}, reverse=True)

    def tokens(lengths: list[int], vocab: int, first: int | None = None) -> torch.Tensor:
        """Random ids above the special ones, right-padded: row i holds ``lengths[i]`` tokens."""
        out = torch.full((len(lengths), max(lengths)), trained.special_ids["pad"], dtype=torch.long)
        for row, n in enumerate(lengths):
            out[row, :n] = torch.randint(4, max(vocab, 5), (n,), generator=generator)
            if first is not None:
                out[row, 0] = first
        return out

    if family == "vit":
        for batch in (1, 5):
            images = torch.randn(batch, model.in_channels, model.image_size, model.image_size,
                                 generator=generator)
            yield f"{batch} image(s)", lambda x=images: model(x), lambda x=images: onnx_model(x)
        return
    if family == "decoder_lm":
        vocab = trained.tokenizers["text"].get_vocab_size()
        for lengths in ([min(longest, 48)] * 2, [3]):
            x = tokens(lengths, vocab)
            yield (f"batch {len(lengths)}, {lengths[0]} tokens fed one at a time from an empty cache",
                   lambda x=x: model(x), lambda x=x: onnx_model(x))
        return
    if family == "encoder_decoder":
        vocab = min(trained.tokenizers["src"].get_vocab_size(), trained.tokenizers["tgt"].get_vocab_size())
        bos = trained.special_ids["bos"]
        for lengths, steps in ((mixed_lengths, min(longest, 24)), ([longest], 2), ([1], 3)):
            src, path = tokens(lengths, vocab), tokens([steps] * len(lengths), vocab)
            name = f"source lengths {lengths} padded in one batch, {steps} decoding steps from an empty cache"
            yield (name, lambda s=src, p=path: logits_along(model, s, p, bos),
                   lambda s=src, p=path: logits_along(onnx_model, s, p, bos))
        return
    vocab = trained.tokenizers["text"].get_vocab_size()
    cls = trained.special_ids["bos"]  # a text classifier reads [CLS] (the BOS id) first
    for lengths in (mixed_lengths, [longest], [1]):
        x = tokens(lengths, vocab, first=cls)
        name = (f"lengths {lengths} padded in one batch" if len(lengths) > 1
                else f"batch 1, length {lengths[0]}")
        yield name, lambda x=x: model(x), lambda x=x: onnx_model(x)


def parity(checkpoint: Path, n_sentences: int, beam: int, steps: int, atol: float, batch_size: int) -> dict:
    import torch

    from src.evaluation.evaluate import pad_sources, translate
    from src.export.bench import both_backends
    from src.inference.translate import decoder_for
    from src.models.decoding import greedy_decode

    if min(n_sentences, beam, steps, batch_size) < 1:
        raise ValueError(f"--sentences, --beam, --steps and --batch-size must be >= 1, "
                         f"got {n_sentences}, {beam}, {steps}, {batch_size}")
    models, sources, source, limit = both_backends(checkpoint, n_sentences, "parity compares")
    result = {"checkpoint": str(checkpoint), "sentences": len(sources), "sentence_source": source}
    for name, width in (("greedy", 1), (f"beam{beam}", beam)):
        outputs = {b: translate(m.model, sources, decoder_for(m, width), batch_size, m.device, name, limit)
                   for b, m in models.items()}
        result[name] = sum(t == o for t, o in zip(outputs["torch"], outputs["onnx"]))
        logger.info("parity: {} tokens identical for {}/{} sentences", name, result[name], len(sources))
    bos, eos = models["torch"].special_ids["bos"], models["torch"].special_ids["eos"]
    worst = 0.0
    with torch.no_grad():
        for start in range(0, len(sources), batch_size):
            src = pad_sources(sources[start : start + batch_size])
            path = greedy_decode(models["torch"].model, src, bos_id=bos, eos_id=eos, max_new_tokens=steps)
            expected, actual = (logits_along(m.model, src, path, bos) for m in models.values())
            worst = max(worst, (expected - actual).abs().max().item())
    result |= {"logit_steps": steps, "max_abs_logit_diff": worst, "atol": atol,
               "ok": result["greedy"] == result[f"beam{beam}"] == len(sources) and worst <= atol}
    return result


def text(result: dict) -> str:
    n = result["sentences"]
    beam = next(key for key in result if key.startswith("beam"))
    return "\n".join([
        f"{n} sentences from {result['sentence_source']}",
        f"greedy tokens identical: {result['greedy']}/{n}",
        f"{beam} tokens identical:  {result[beam]}/{n}",
        (f"largest |logit difference| over the first {result['logit_steps']} steps: "
         f"{result['max_abs_logit_diff']:.2e} (allowed {result['atol']:.0e})"),
        "parity: " + ("yes" if result["ok"] else "NO"),
    ])


def command(args: argparse.Namespace) -> tuple[int, str]:
    """Exit status (1 without parity) and output (JSON or text) of ``python -m src.export.parity``."""
    from src.runs import resolve_checkpoint

    result = parity(resolve_checkpoint(args.run, args.runs_dir), args.sentences, args.beam, args.steps,
                    args.atol,
                    args.batch_size)
    return 0 if result["ok"] else 1, json.dumps(result, indent=2) if args.json else text(result)


def main(argv: list[str] | None = None) -> int:
    return run_module_command("python -m src.export.parity", add_arguments, command, argv,
                              __doc__.splitlines()[0])


if __name__ == "__main__":
    sys.exit(main())
