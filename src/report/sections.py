"""One function per report section: ``RunContents`` in, a ``Section`` out, or None when the run has
nothing for it.

A family's missing pieces (no heatmaps when tracking was off, no confusion matrix for a language
model, no registry decision in a failed run) leave their section out instead of showing it empty.
"""

import json
import time
from typing import Any

from src.report.figures import confusion_figure, curve_figures, grad_norm_figure, plot_div
from src.report.html import Section, data_uri, esc, image, json_script, table
from src.report.sources import RunContents

STEPS = ("data_prep", "tokenize", "train", "evaluate", "register")
MAX_FRAMES = 40  # heatmap steps per figure on the page
OPEN_CONFIG = ("model", "training")  # what a reader compares first; the rest folded
HEATMAP_NOTES = {
    "vit": "Where the [CLS] token attends over the image patches, one panel per layer and head; the rollout "
           "combines the layers.",
    "text": "Rows are query tokens, columns key tokens; one panel per layer and head.",
}
BULKY_METRICS = ("labels", "confusion", "per_class")  # shown as their own table or figure


def _when(seconds: Any) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(seconds))) if seconds else "-"


def overview(run: RunContents) -> Section:
    """Identity, status and the step table of ``status.json``."""
    status, steps = run.status, run.status.get("steps", {})
    rows = [("run folder", str(run.run_dir)), ("run id", status.get("run_id", run.run_dir.name)),
            ("family", run.family), ("task", run.config.get("task", "-")),
            ("status", status.get("status", "-")),
            ("created", _when(status.get("created"))),
            ("finished", _when((steps.get("pipeline") or {}).get("time")))]
    if status.get("failed_step"):
        rows.append(("failed step", f"{status['failed_step']}: {status.get('reason', '')}"))
    trained = (steps.get("train") or {}).get("output") or {}
    if trained:
        rows += [("steps trained", trained.get("steps")), ("best valid loss", trained.get("best_valid_loss"))]
    step_rows = [(name, (steps.get(name) or {}).get("status", "not run"),
                  (steps.get(name) or {}).get("task_id", "-"))
                 for name in STEPS]
    body = (table(("", "value"), rows) + "<h3>pipeline steps</h3>"
            + table(("step", "status", "ClearML task"), step_rows, css_id="step-table"))
    return Section("overview", "Overview", body)


def shown(value: Any) -> str:
    """A config value exactly as the file holds it (not rounded for display, as metrics are)."""
    return value if isinstance(value, str) else json.dumps(value)


def config(run: RunContents) -> Section | None:
    """The run's own ``config.json``: a collapsible table per section, and the JSON itself."""
    if not run.config:
        return None
    scalars = [(key, shown(value)) for key, value in run.config.items() if not isinstance(value, dict)]
    parts = [table(("key", "value"), scalars)] if scalars else []
    for key, value in run.config.items():
        if isinstance(value, dict):
            rows = [(k, shown(v)) for k, v in value.items()]
            opened = " open" if key in OPEN_CONFIG else ""
            parts.append(f"<details{opened}><summary>{esc(key)} ({len(rows)} keys)</summary>"
                         f"{table(('key', 'value'), rows)}</details>")
    raw = esc(json.dumps(run.config, indent=2))
    body = ("".join(parts) + f"<details><summary>config.json</summary><pre>{raw}</pre></details>"
            + json_script("run-config", run.config))
    return Section("config", "Config", body)


def curves(run: RunContents) -> Section | None:
    figures = curve_figures(run.history)
    if not figures:
        return None
    divs = "".join(f'<div class="plot">{plot_div(figure, "curve-" + name.replace(" ", "-"))}</div>'
                   for name, figure in figures.items())
    return Section("curves", "Training curves", f'<div class="grid">{divs}</div>'
                   '<p class="note">From train/train_history.jsonl: drag to zoom, double-click to reset.</p>')


def gradients(run: RunContents) -> Section | None:
    if run.grad_norms is None:
        return None
    grad = run.grad_norms
    note = (f"{len(grad.groups)} parameter groups at {len(grad.steps)} steps (every "
            f"{run.config.get('tracking', {}).get('grad_norm_every', '?')} steps), "
            "from the last training checkpoint. "
            "A group far darker or brighter than its neighbours is vanishing or exploding.")
    return Section("gradients", "Gradient norms", plot_div(grad_norm_figure(grad), "grad-norm-heatmap")
                   + f'<p class="note">{esc(note)}</p>')


def evenly_spaced(n: int, limit: int) -> list[int]:
    """At most ``limit`` of the indices 0..n-1, evenly spread, the first and the last always among them."""
    if n <= limit:
        return list(range(n))
    return sorted({round(i * (n - 1) / (limit - 1)) for i in range(limit)})


def attention(run: RunContents) -> Section | None:
    """The probe's heatmaps with a slider over the training steps at which they were drawn.

    A long run with frequent reports keeps ``MAX_FRAMES`` of them per figure (evenly spaced), so the
    page stays a few megabytes; the note says how many were recorded.
    """
    if not run.heatmaps:
        return None
    figures, thinned = [], []
    for h in run.heatmaps:
        frames = [h.frames[i] for i in evenly_spaced(len(h.frames), MAX_FRAMES)]
        if len(frames) < len(h.frames):
            thinned.append(f"{h.label}: {len(frames)} of {len(h.frames)} recorded steps")
        figures.append({"label": h.label, "steps": [step for step, _ in frames],
                        "images": [data_uri(p) for _, p in frames]})
    shown = f" Shown: {'; '.join(thinned)}." if thinned else ""
    options = "".join(f'<option value="{i}">{esc(f["label"])}</option>' for i, f in enumerate(figures))
    last = len(figures[0]["steps"]) - 1
    body = f"""<div class="viewer-controls">
<label>figure <select id="heatmap-figure">{options}</select></label>
<label>iteration <input type="range" id="heatmap-slider" min="0" max="{last}" step="1" value="{last}"></label>
<span id="heatmap-step"></span>
</div>
<div class="viewer"><img id="heatmap-image" src="{figures[0]['images'][last]}" alt="{esc(figures[0]['label'])}"></div>
<p class="note">The same probe input at every reported step (tracking.heatmap_every =
{esc(run.config.get('tracking', {}).get('heatmap_every', '?'))}). {esc(HEATMAP_NOTES.get(run.family, HEATMAP_NOTES['text']))}
Click the figure for its actual size.{esc(shown)}</p>
{json_script("heatmap-data", figures)}"""
    return Section("attention", "Attention heatmaps", body)


def samples(run: RunContents) -> Section | None:
    if not run.tables:
        return None
    parts = []
    for sample in run.tables:
        note = f'<p class="note">{esc(sample.note)}</p>' if sample.note else ""
        parts.append(
            f"<h3>{esc(sample.title)}</h3>{table(sample.columns, sample.rows, css_class='samples')}{note}")
    titles = {"encoder_decoder": "Sample translations", "decoder_lm": "Sample continuations",
              "encoder_mlm": "Masked-word predictions"}
    title = titles.get(run.family, "Sample predictions")
    return Section("samples", title, "".join(parts))


def _flatten(metrics: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    rows = []
    for key, value in metrics.items():
        if not prefix and key in BULKY_METRICS:
            continue
        if isinstance(value, dict):
            rows += _flatten(value, f"{prefix}{key}.")
        else:
            rows.append((f"{prefix}{key}", value))
    return rows


def metrics(run: RunContents) -> Section | None:
    """``evaluate/metrics.json``: the scalars, per-class precision and recall, the confusion matrix."""
    if not run.metrics:
        return None
    body = table(("metric", "value"), _flatten(run.metrics), css_id="metrics-table")
    per_class = run.metrics.get("per_class")
    if isinstance(per_class, dict) and per_class:
        body += "<h3>per class</h3>" + table(("class", "precision", "recall"),
                                             [(name, v.get("precision"),
                                               v.get("recall")) for name, v in per_class.items()])
    if run.metrics.get("confusion") and run.metrics.get("labels"):
        body += plot_div(confusion_figure(run.metrics["labels"], run.metrics["confusion"]),
                         "confusion-matrix")
    return Section("metrics", "Test metrics", body)


def registry(run: RunContents) -> Section | None:
    """The register step's decision: the stage, why, and the numbers the gate compared."""
    decision = run.registration
    if not decision:
        return None
    stage = str(decision.get("stage", "unknown"))
    rows = [(key, value) for key, value in decision.items() if key not in ("stage", "reason")]
    body = (f'<div class="decision {esc(stage)}" id="registry-stage">{esc(stage)}</div>'
            f'<p id="registry-reason">{esc(decision.get("reason", ""))}</p>' + table(("field", "value"),
                                                                                     rows))
    return Section("registry", "Registry decision", body)


def evaluation_figures(run: RunContents) -> Section | None:
    if not run.figures:
        return None
    return Section("figures", "Evaluation and data figures",
                   "".join(image(path, caption) for caption, path in run.figures))


def data_card(run: RunContents) -> Section | None:
    if not run.data_card:
        return None
    return Section("data", "Data card", f"<details><summary>data_prep/data_card.md</summary>"
                                        f"<pre>{esc(run.data_card)}</pre></details>")


def all_sections(run: RunContents) -> list[Section]:
    """The sections this run has, in reading order."""
    builders = (overview, config, curves, gradients, attention, samples, metrics, registry,
                evaluation_figures, data_card)
    return [section for build in builders if (section := build(run)) is not None]
