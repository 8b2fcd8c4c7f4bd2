"""What a run folder holds for its report, read into plain Python: nothing here draws or writes HTML.

Every source is optional: a family records what it records (attention heatmaps only with tracking on,
samples as TSV or as a ClearML table), and a run that failed midway has only its first steps.
Where each piece lives:

- ``config.json``, ``status.json`` (the register step's decision is its ``output``);
- ``train/train_history.jsonl``: train rows (step, loss, lr, tokens_per_s), valid rows (``valid_*``);
- the newest ``train/checkpoints/step_*.pt``: per-group gradient norms (``grad_history``, ``grad_steps``);
- ``train/plots/attention*/<series>_step<N>.png``: the probe's heatmaps at each reported step;
- ``evaluate/metrics.json``, ``evaluate/plots/*``, ``evaluate/samples.tsv`` / ``predictions.tsv``;
- the evaluate step's offline ClearML session: the tables it logged (samples, mistakes, continuations).
"""

import csv
import json
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from loguru import logger

from src.runs import CONFIG_FILE
from src.runs import STATUS_FILE, read_json

_STEP_PNG = re.compile(r"^(?P<series>.+)_step(?P<step>\d+)\.png$")
_CHECKPOINT = re.compile(r"^step_(\d+)\.pt$")
MAX_ROWS = 50  # rows of a sample table: a page to read, not the test set
MAX_CELL_CHARS = 400


@dataclass(frozen=True)
class Heatmaps:
    """One probe figure (an attention kind and a probe input) as recorded at several training steps."""

    title: str  # e.g. "attention_cross", the folder name under plots/
    series: str  # e.g. "sentence_0"
    frames: tuple[tuple[int, Path], ...]  # (step, PNG), in step order

    @property
    def label(self) -> str:
        return f"{self.title.replace('_', ' ')} · {self.series.replace('_', ' ')}"


@dataclass(frozen=True)
class Table:
    title: str
    columns: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    note: str = ""


@dataclass(frozen=True)
class GradNorms:
    """Gradient L2 norm per parameter group (rows) at each measured step (columns)."""

    groups: tuple[str, ...]
    steps: tuple[int, ...]
    norms: tuple[tuple[float, ...], ...]  # (G, S)


@dataclass
class RunContents:
    run_dir: Path
    config: dict[str, Any]
    status: dict[str, Any]
    history: list[dict[str, float]] = field(default_factory=list)
    grad_norms: GradNorms | None = None
    heatmaps: list[Heatmaps] = field(default_factory=list)
    # (caption, PNG): evaluation and data figures
    figures: list[tuple[str, Path]] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    metrics: dict[str, Any] = field(default_factory=dict)
    data_card: str | None = None

    @property
    def registration(self) -> dict[str, Any] | None:
        return (self.status.get("steps", {}).get("register") or {}).get("output")

    @property
    def family(self) -> str:
        return str(self.config.get("model", {}).get("family", "unknown"))


def read_history(path: Path) -> list[dict[str, float]]:
    """The rows of ``train_history.jsonl``; a torn last line (a killed run) is skipped."""
    rows = []
    if path.is_file():
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                logger.warning("report: skipping an unreadable line of {}", path)
    return rows


def read_grad_norms(checkpoint_dir: Path) -> GradNorms | None:
    """The gradient-norm history kept in the newest step checkpoint (mmapped: the weights are not read)."""
    from src.training.checkpoint import CheckpointError, load_checkpoint

    files = sorted((p for p in checkpoint_dir.glob("step_*.pt") if _CHECKPOINT.match(p.name)),
                   key=lambda p: int(_CHECKPOINT.match(p.name).group(1)))
    for path in reversed(files):
        try:
            state = load_checkpoint(path, mmap=True)
        except CheckpointError as err:  # a damaged file: the one before may still hold the history
            logger.warning("report: {}", err)
            continue
        history, steps = state.get("grad_history") or {}, list(state.get("grad_steps") or [])
        if not history or not steps:
            return None
        groups = tuple(history)
        return GradNorms(groups, tuple(int(s) for s in steps),
                         tuple(tuple(float(v) for v in history[g]) for g in groups))
    return None


def step_pngs(plots_dir: Path, prefix: str = "") -> list[Heatmaps]:
    """``plots/<title>/<series>_step<N>.png`` grouped by (title, series), titles starting with ``prefix``."""
    groups: dict[tuple[str, str], list[tuple[int, Path]]] = {}
    if not plots_dir.is_dir():
        return []
    for folder in sorted(p for p in plots_dir.iterdir() if p.is_dir() and p.name.startswith(prefix)):
        for png in folder.glob("*.png"):
            match = _STEP_PNG.match(png.name)
            if match:
                groups.setdefault((folder.name, match["series"]), []).append((int(match["step"]), png))
    return [Heatmaps(title, series, tuple(sorted(frames))) for (title, series), frames in sorted(
        groups.items())]


def _cell(value: Any) -> str:
    """A table cell as logged (whitespace kept: a continuation of spaces and newlines is what the model
    wrote), cut."""
    text = str(value)
    return text if len(text) <= MAX_CELL_CHARS else text[: MAX_CELL_CHARS - 1] + "…"


def read_session_tables(step_dir: Path) -> list[Table]:
    """The tables a step logged to its offline ClearML session (the newest iteration of each), as the UI
    shows them.

    ClearML stores a table as a plotly ``table`` trace in ``metrics.jsonl``: header values are one
    list per column, cell values one list per column.
    """
    tables: dict[tuple[str, str], tuple[int, Table]] = {}
    for session in sorted((step_dir / "clearml_offline").glob("*.zip")):
        try:
            with zipfile.ZipFile(session) as zf:
                names = zf.namelist()
                lines = (zf.read("metrics.jsonl").decode("utf-8").splitlines() if "metrics.jsonl" in names
                         else [])
        except (OSError, zipfile.BadZipFile) as err:
            logger.warning("report: cannot read the session {} ({})", session, err)
            continue
        for line in filter(str.strip, lines):
            batch = json.loads(line)
            for event in batch if isinstance(batch, list) else [batch]:
                table = _table_of(event)
                key = (event.get("metric", ""), event.get("variant", ""))
                if table is not None and int(event.get("iter", 0)) >= tables.get(key, (-1, None))[0]:
                    tables[key] = (int(event.get("iter", 0)), table)
    return [table for _, table in tables.values()]


def _table_of(event: dict[str, Any]) -> Table | None:
    if event.get("type") != "plot" or "plot_str" not in event:
        return None
    traces = json.loads(event["plot_str"]).get("data") or []
    if len(traces) != 1 or traces[0].get("type") != "table":
        return None
    header = [
        value[0] if isinstance(value, list) and value else value for value in traces[0]["header"]["values"]]
    columns = traces[0]["cells"]["values"]
    n_rows = max((len(col) for col in columns), default=0)
    rows = tuple(
        tuple(_cell(col[i]) if i < len(col) else "" for col in columns) for i in range(min(n_rows, MAX_ROWS)))
    note = f"first {MAX_ROWS} of {n_rows} rows" if n_rows > MAX_ROWS else ""
    return Table(f"{event.get('metric', '')} · {event.get('variant', '')}", tuple(map(str, header)), rows,
                 note)


def read_tsv(path: Path, title: str, max_rows: int | None = MAX_ROWS) -> Table | None:
    """The first ``max_rows`` rows (None: all) of a sample or prediction TSV written by the evaluate step."""
    if not path.is_file():
        return None
    with path.open(encoding="utf-8", newline="") as f:
        reader = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        header = next(reader, None)
        rows = [tuple(_cell(value) for value in row) for row in reader]
    if header is None:
        return None
    if max_rows is not None and len(rows) > max_rows:
        return Table(title, tuple(header), tuple(rows[:max_rows]),
                     f"first {max_rows} of {len(rows)} rows of {path.name}")
    return Table(title, tuple(header), tuple(rows), f"from {path.name}")


def newest_figures(plots_dir: Path, caption: str) -> list[tuple[str, Path]]:
    """One (caption, PNG) per figure of ``plots_dir``: the newest step of each."""
    return [(f"{caption} · {h.label}", h.frames[-1][1]) for h in step_pngs(plots_dir)]


def read_mistakes(path: Path, n: int = 20) -> Table | None:
    """The ``n`` most confident wrong rows of a classifier's ``predictions.tsv`` (label, predicted,
    confidence)."""
    table = read_tsv(path, "", max_rows=None)
    if table is None or not {"label", "predicted", "confidence"} <= set(table.columns):
        return table
    label, predicted, confidence = (table.columns.index(c) for c in ("label", "predicted", "confidence"))
    wrong = sorted((row for row in table.rows if row[label] != row[predicted]),
                   key=lambda row: -float(row[confidence]))
    return Table("most confident mistakes", table.columns, tuple(wrong[:n]),
                 f"{len(wrong)} wrong of {len(table.rows)} in {path.name}")


def read_run(run_dir: Path) -> RunContents:
    """Everything the report shows, from the run folder ``run_dir`` (missing pieces stay empty)."""
    run_dir = Path(run_dir)
    status = read_json(run_dir / STATUS_FILE)
    if not status:
        raise FileNotFoundError(f"{run_dir} is not a run folder: expected {run_dir / STATUS_FILE}")
    train, evaluate, data = run_dir / "train", run_dir / "evaluate", run_dir / "data_prep"
    # A translation's samples.tsv holds every scored sentence (its ClearML table only the first few); the
    # classifiers' and the LM's sessions hold the tables a researcher reads (worst mistakes, continuations).
    samples = read_tsv(evaluate / "samples.tsv", "test translations")
    tables = [samples] if samples is not None else read_session_tables(evaluate)
    if not tables:  # tracking off, or a server run: the step's own prediction file
        tables = [t for t in (read_mistakes(evaluate / "predictions.tsv"),) if t is not None]
    card = data / "data_card.md"
    figures = newest_figures(evaluate / "plots", "evaluate (best checkpoint, test inputs)")
    figures += [(f"data · {png.stem.replace('_', ' ')}", png) for png in sorted(data.glob("*.png"))]
    return RunContents(
        run_dir=run_dir, config=read_json(run_dir / CONFIG_FILE), status=status,
        history=read_history(train / "train_history.jsonl"),
                       grad_norms=read_grad_norms(train / "checkpoints"),
        heatmaps=step_pngs(train / "plots", prefix="attention"), figures=figures, tables=tables,
        metrics=read_json(evaluate / "metrics.json"),
        data_card=card.read_text(encoding="utf-8") if card.is_file() else None,
    )
