"""What tracking costs: the same training window with tracking on and off, side by side.

``python -m src.tuning.overhead [--config FILE] [--steps N] [--repeats R] [overrides]``

"On" is what the pipeline does: a ClearML offline session, per-layer gradient norms every
``tracking.grad_norm_every`` steps, update ratios, resource use, and attention heatmaps of the
probe sentences every ``tracking.heatmap_every`` steps. "Off" is ``tracking.enabled=false``:
no ClearML task and none of those diagnostics. Runs alternate (off, on, off, on, ...) from the
same seed so machine noise falls on both; the medians of the wall times of ``fit()`` are compared.
The default window is ``heatmap_every`` steps, so it holds the same share of heatmap reports as a
full run.
"""

import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from loguru import logger


def prepare(cfg, work: Path) -> Path:
    from datasets import load_from_disk

    from src.data.prepare import prepare_corpus
    from src.data.tokenizer import encode_corpus, train_tokenizer

    prepare_corpus(cfg.data, work / "prep")
    dataset = load_from_disk(str(work / "prep" / "dataset"))
    encode_corpus(dataset, train_tokenizer(dataset, cfg.tokenizer, work), cfg.tokenizer, work)
    return work


def timed_fit(cfg, work: Path, run_dir: Path, tracking: bool) -> float:
    from datasets import load_from_disk

    from src.experiment import validate_config
    from src.data.tokenizer import load_tokenizer
    from src.tasks.translation.task import TranslationTask
    from src.tracking import NullTracker, Tracker
    from src.training.trainer import Trainer

    data = cfg.model_dump(mode="json")
    data["tracking"]["enabled"] = tracking
    cfg = validate_config(data)
    encoded = load_from_disk(str(work / "encoded"))
    tok = load_tokenizer(work / "tokenizer.json")
    task = TranslationTask.from_encoded(encoded, {"src": tok, "tgt": tok}, cfg.batching.upsample_primary,
                                        cfg.tracking.probe_sentences)
    tracker = (Tracker.start(project="overhead", task_name="tracking-on", offline=True, output_dir=run_dir)
               if tracking else NullTracker())
    trainer = Trainer(cfg, task, run_dir, tracker)
    start = time.perf_counter()
    trainer.fit()
    seconds = time.perf_counter() - start
    tracker.close()
    return seconds


def measure(cfg, steps: int, repeats: int) -> dict:
    from src.experiment import validate_config

    data = cfg.model_dump(mode="json")
    data["training"].update(max_steps=steps, max_minutes=None, checkpoint_every=steps)
    cfg = validate_config(data)
    times: dict[str, list[float]] = {"off": [], "on": []}
    with tempfile.TemporaryDirectory(prefix="overhead-") as tmp:
        work = prepare(cfg, Path(tmp))
        for repeat in range(repeats):
            for mode in ("off", "on"):
                seconds = timed_fit(cfg, work, Path(tmp) / f"{mode}{repeat}", tracking=mode == "on")
                times[mode].append(seconds)
                logger.info(f"repeat {repeat}: tracking {mode}: {seconds:.1f} s for {steps} steps")
    off, on = statistics.median(times["off"]), statistics.median(times["on"])
    return {"steps": steps, "repeats": repeats, "seconds_off": times["off"], "seconds_on": times["on"],
            "median_off": off, "median_on": on, "overhead": on / off - 1.0}


def main(argv: list[str] | None = None) -> int:
    from src.experiment import load_config

    from src.arguments import POSITIVE_INT, CommandParser

    parser = CommandParser(prog="python -m src.tuning.overhead", description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=None)
    parser.add_argument("--steps", type=POSITIVE_INT, default=None,
                        help="steps per run (default: tracking.heatmap_every)")
    parser.add_argument("--repeats", type=POSITIVE_INT, default=3)
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args(argv)
    cfg = load_config(args.config, args.overrides)
    result = measure(cfg, args.steps or cfg.tracking.heatmap_every, args.repeats)
    logger.info(json.dumps(result, indent=2))
    logger.info(f"tracking overhead: {100 * result['overhead']:+.1f}% "
                f"(median {result['median_on']:.1f} s on vs {result['median_off']:.1f} s off, "
                f"{result['steps']} steps)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
