"""``runs list`` and ``runs compare``: the run folders as plain-text tables."""

import time
from collections.abc import Sequence
from pathlib import Path

from src.runs.folders import STATUS_FILE, RunInfo, list_runs, read_json, resolve_run
from src.runs.resume import flatten

IDENTITY_KEYS = ("run_id", "run_name", "output_dir")


def format_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Columns padded to their widest cell, a rule under the header."""
    widths = [max(len(str(c)) for c in column) for column in zip(header, *rows)]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip() for row in [header, *rows]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _number(value: object, digits: int = 2) -> str:
    return f"{value:.{digits}f}" if isinstance(value, (int, float)) and not isinstance(value, bool) else "-"


def test_metric(metrics: dict) -> str:
    """The run's headline test figure: beam BLEU for translation, accuracy for classification, bits per
    character and perplexity for language modelling."""
    if "bpc" in metrics:
        return f"bpc {metrics['bpc']:.3f} (ppl {metrics['perplexity']:.1f})"
    if "accuracy" in metrics:
        return f"accuracy {metrics['accuracy']:.4f}"
    bleu = metrics.get("beam", {}).get("bleu")
    return f"BLEU {bleu:.2f}" if isinstance(bleu, (int, float)) else "-"


def run_summary(run: RunInfo) -> dict[str, str]:
    """The figures ``runs list`` and ``runs compare`` show for one run."""
    steps = run.status.get("steps", {})
    completed = [s for s in ("data_prep", "tokenize", "train", "evaluate", "register")
                 if steps.get(s, {}).get("status") == "completed"]
    status = run.status.get("status", "?")
    if status == "failed":
        status = f"failed ({run.status.get('failed_step', '?')})"
    train = steps.get("train", {}).get("output") or {}
    metrics = run.metrics
    register = steps.get("register", {}).get("output") or {}
    return {
        "status": status,
        "steps done": f"{len(completed)}/5",
        "train steps": str(train.get("steps", "-")),
        "best valid loss": _number(train.get("best_valid_loss"), 4),
        "test metric": test_metric(metrics),
        "test loss": _number(metrics.get("test", {}).get("loss", metrics.get("loss")), 4),
        "accuracy": _number(metrics.get("accuracy"), 4),
        "BLEU beam": _number(metrics.get("beam", {}).get("bleu")),
        "BLEU greedy": _number(metrics.get("greedy", {}).get("bleu")),
        "chrF": _number(metrics.get("beam", {}).get("chrf")),
        "model": register.get("stage", "-"),
        "created": time.strftime("%Y-%m-%d %H:%M", time.localtime(run.created)),
    }


def runs_list(output_dir: str | Path = "runs") -> str:
    runs = list_runs(output_dir)
    if not runs:
        return f"no runs in {output_dir}/ (start one with: python -m src.main train)"
    columns = ("status", "steps done", "train steps", "best valid loss", "test metric", "model", "created")
    rows = [[run.run_id, *(run_summary(run)[c] for c in columns)] for run in runs]
    return format_table(["run", *columns], rows)


def runs_compare(refs: Sequence[str], output_dir: str | Path = "runs") -> str:
    """Config keys that differ between the runs, then their metrics, one column per run."""
    if len(refs) < 2:
        raise ValueError(f"runs compare needs at least two runs, got {len(refs)}")
    runs = [RunInfo(p, read_json(p / STATUS_FILE)) for p in (resolve_run(ref, output_dir) for ref in refs)]
    configs = [flatten(run.config) for run in runs]
    keys = sorted({k for c in configs for k in c if k not in IDENTITY_KEYS})
    differing = [k for k in keys if len({repr(c.get(k)) for c in configs}) > 1]
    header = ["", *(run.run_id for run in runs)]
    config_rows = [[key, *(str(c.get(key, "-")) for c in configs)] for key in differing]
    summaries = [run_summary(run) for run in runs]
    metric_rows = [[name, *(s[name] for s in summaries)] for name in summaries[0]]
    parts = ["config differences:", format_table(header, config_rows) if config_rows else "  (none: same config)",
             "", "results:", format_table(header, metric_rows)]
    return "\n".join(parts)

