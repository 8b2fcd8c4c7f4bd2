"""Does the ONNX export decode as PyTorch does? Greedy and beam tokens, and the first steps' logits.

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


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", metavar="RUN_OR_CHECKPOINT", help="a checkpoint, a run folder, id or name, or 'latest'")
    parser.add_argument("--runs-dir", default="runs", help="where run ids and names are looked up (default: runs)")
    parser.add_argument("--sentences", type=int, default=100, help="test sentences compared (default 100)")
    parser.add_argument("--beam", type=int, default=4, help="beam size of the beam comparison (default 4)")
    parser.add_argument("--steps", type=int, default=5, help="decoding steps whose logits are compared (default 5)")
    parser.add_argument("--atol", type=float, default=1e-4, help="largest allowed logit difference (default 1e-4)")
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
    tokens = torch.cat([torch.full_like(path[:, :1], bos_id), path[:, :-1]], dim=1)  # (B, K): BOS, then the path
    return torch.stack([model.step_logits(tokens[:, t : t + 1], memory, src_mask, cache)
                        for t in range(tokens.size(1))], dim=1)  # K x (B, V) -> (B, K, V)


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
        (f"largest |logit difference| over the first {result['logit_steps']} steps: {result['max_abs_logit_diff']:.2e} "
         f"(allowed {result['atol']:.0e})"),
        "parity: " + ("yes" if result["ok"] else "NO"),
    ])


def command(args: argparse.Namespace) -> tuple[int, str]:
    """Exit status (1 without parity) and output (JSON or text) of ``python -m src.export.parity``."""
    from src.runs import resolve_checkpoint

    result = parity(resolve_checkpoint(args.run, args.runs_dir), args.sentences, args.beam, args.steps, args.atol,
                    args.batch_size)
    return 0 if result["ok"] else 1, json.dumps(result, indent=2) if args.json else text(result)


def main(argv: list[str] | None = None) -> int:
    from src.main import run_module_command

    return run_module_command("python -m src.export.parity", add_arguments, command, argv, __doc__.splitlines()[0])


if __name__ == "__main__":
    sys.exit(main())
