"""``runs list`` and ``runs compare``: the run folders as plain-text tables."""

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from src.runs.files import DamagedFileError
from src.runs.folders import RunInfo, list_runs, resolve_run
from src.runs.status import STATUS_FILE
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
    character and perplexity for language modelling, masked-token loss for masked-LM pretraining."""
    if "n_masked" in metrics:
        return f"masked loss {metrics['loss']:.3f} (acc {metrics['accuracy']:.3f})"
    if "bpc" in metrics:
        return f"bpc {metrics['bpc']:.3f} (ppl {metrics['perplexity']:.1f})"
    if "accuracy" in metrics:
        return f"accuracy {metrics['accuracy']:.4f}"
    bleu = metrics.get("beam", {}).get("bleu")
    return f"BLEU {bleu:.2f}" if isinstance(bleu, (int, float)) else "-"


FIGURES = ("test loss", "test perplexity", "bpc", "accuracy", "macro-F1", "BLEU beam", "BLEU greedy",
           "chrF beam",
           "token accuracy")


def family_metrics(metrics: dict) -> dict[str, str]:
    """Every test figure the run's own family reports, by row name: BLEU and chrF for translation,
    accuracy and macro-F1 for classification, bits per character for language modelling."""
    test = metrics.get("test", {})
    rows = {
        "test loss": _number(test.get("loss", metrics.get("loss")), 4),
        "test perplexity": _number(test.get("perplexity", metrics.get("perplexity"))),
        "bpc": _number(metrics.get("bpc"), 4),
        "accuracy": _number(metrics.get("accuracy"), 4),
        "macro-F1": _number(metrics.get("macro_f1"), 4),
        "BLEU beam": _number(metrics.get("beam", {}).get("bleu")),
        "BLEU greedy": _number(metrics.get("greedy", {}).get("bleu")),
        "chrF beam": _number(metrics.get("beam", {}).get("chrf")),
        "token accuracy": _number(test.get("token_accuracy"), 4),
    }
    return {name: value for name, value in rows.items() if value != "-"}


def _readable(read, fallback: dict) -> dict:
    """A run's config or metrics; a damaged file shows as missing here (``runs list`` names it once)."""
    try:
        return read()
    except DamagedFileError:
        return fallback


def status_cell(run: RunInfo) -> str:
    """``completed``, ``failed (data_prep)``, ``running (train)``, ``interrupted (train)``,
    ``damaged (PATH)``."""
    if run.damaged:
        return f"damaged ({run.path / STATUS_FILE})"
    return f"{run.state} ({run.step})" if run.step else run.state


def run_summary(run: RunInfo) -> dict[str, str]:
    """The figures ``runs list`` and ``runs compare`` show for one run."""
    steps = run.status.get("steps", {})
    completed = [s for s in ("data_prep", "tokenize", "train", "evaluate", "register")
                 if steps.get(s, {}).get("status") == "completed"]
    train = steps.get("train", {}).get("output") or {}
    metrics = _readable(lambda: run.metrics, {})
    register = steps.get("register", {}).get("output") or {}
    return {
        "status": status_cell(run),
        "steps done": f"{len(completed)}/5" if not run.damaged else "-",
        "train steps": str(train.get("steps", "-")),
        "best valid loss": _number(train.get("best_valid_loss"), 4),
        "test metric": test_metric(metrics),
        "model": register.get("stage", "-"),
        "created": time.strftime("%Y-%m-%d %H:%M", time.localtime(run.created)),
    }


def hints(runs: Sequence[RunInfo]) -> list[str]:
    """One line per run that needs the user: an interrupted run to resume, a damaged file to look at."""
    lines = []
    for run in runs:
        if run.damaged:
            lines.append(f"{run.run_id}: {run.damaged}; the other runs are unaffected")
        elif run.state == "interrupted":
            lines.append(f"{run.run_id}: its process is gone (interrupted in {run.step or 'the pipeline'}); "
                         f"continue it with: python -m src.main train --resume {run.run_id}")
    return lines


def runs_list(output_dir: str | Path = "runs") -> str:
    runs = list_runs(output_dir)
    if not runs:
        return f"no runs in {output_dir}/ (start one with: python -m src.main train)"
    columns = ("status", "steps done", "train steps", "best valid loss", "test metric", "model", "created")
    rows = [[run.run_id, *(run_summary(run)[c] for c in columns)] for run in runs]
    notes = hints(runs)
    return "\n".join([format_table(["run", *columns], rows), *([""] + notes if notes else [])])


@dataclass(frozen=True)
class Comparison:
    """Runs side by side: the config keys that differ between them and their results, a column per run."""

    runs: list[RunInfo]
    config_rows: list[list[str]]  # [key, its value in each run]
    metric_rows: list[list[str]]  # [figure, its value in each run]

    @property
    def header(self) -> list[str]:
        return ["", *(run.run_id for run in self.runs)]


def compare_runs(refs: Sequence[str], output_dir: str | Path = "runs") -> Comparison:
    """The comparison of ``refs`` (folders, ids, names or 'latest').

    Runs of different families sit side by side: each shows its own family's test figures (bpc for
    a language model, BLEU for translation, accuracy for a classifier), and a row no run has is left out.
    """
    if len(refs) < 2:
        raise ValueError(f"runs compare needs at least two runs, got {len(refs)}")
    runs = [RunInfo.load(resolve_run(ref, output_dir)) for ref in refs]
    configs = [flatten(_readable(lambda run=run: run.config, {})) for run in runs]
    keys = sorted({k for c in configs for k in c if k not in IDENTITY_KEYS})
    differing = [k for k in keys if len({repr(c.get(k)) for c in configs}) > 1]
    config_rows = [[key, *(str(c.get(key, "-")) for c in configs)] for key in differing]
    summaries = [{"task": c.get("task", "-")} | run_summary(run) for c, run in zip(configs, runs)]
    figures = [family_metrics(_readable(lambda run=run: run.metrics, {})) for run in runs]
    names = [*summaries[0], *(name for name in FIGURES if any(name in f for f in figures))]
    metric_rows = [[name, *((s | f).get(name, "-") for s, f in zip(summaries, figures))] for name in names]
    return Comparison(runs, config_rows, metric_rows)


def runs_compare(refs: Sequence[str], output_dir: str | Path = "runs") -> str:
    """Config keys that differ between the runs, then their results, one column per run, as text."""
    comparison = compare_runs(refs, output_dir)
    parts = ["config differences:",
             format_table(comparison.header, comparison.config_rows) if comparison.config_rows
             else "  (none: same config)",
             "", "results:", format_table(comparison.header, comparison.metric_rows),
             *[f"  {line}" for line in hints(comparison.runs)]]
    return "\n".join(parts)
