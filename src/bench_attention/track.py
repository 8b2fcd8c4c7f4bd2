"""A bench run as a ClearML task: time and memory against n as scalars (iteration = n), a log-log
figure, the summary numbers and the JSON, through ``src.tracking`` (offline without a server)."""

import json
from pathlib import Path
from typing import TYPE_CHECKING

from src.bench_attention.summary import table
from src.visualization.figure import new_figure

if TYPE_CHECKING:
    from matplotlib.figure import Figure

PANELS = (("time_ms", "median time (ms)"), ("peak_mib", "peak memory added (MiB)"))


def plot_scaling(result: dict, module: str) -> "Figure":
    """Time and peak memory against n on log-log axes, one line per variant, its slope in the legend."""
    figure = new_figure(10.0, 4.0)
    axes = figure.subplots(1, 2)
    fits = result["by_module"][module]
    for ax, (key, label) in zip(axes, PANELS, strict=True):
        for variant in result["settings"]["variants"]:
            points = sorted((r["n"], r[key]) for r in result["results"]
                            if (r["module"], r["variant"]) == (module, variant) and (r.get(key) or 0) > 0)
            if not points:
                continue
            slope = fits["slopes" if key == "time_ms" else "peak_slopes"][variant]
            ax.plot(*zip(*points, strict=True), marker="o",
                    label=variant if slope is None else f"{variant} (slope {slope:.2f})")
        ax.set_xscale("log", base=2)
        lengths = result["settings"]["lengths"]
        ax.set_xticks(lengths, [str(n) for n in lengths])
        ax.minorticks_off()
        ax.set_yscale("log")
        ax.set_xlabel("sequence length n")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8)
    figure.suptitle(f"{module}: forward + backward, batch 1", fontsize=10)
    figure.tight_layout()
    return figure


def track(
    result: dict, *, project: str, task_name: str, output_dir: Path, offline: bool | None
) -> Path | None:
    """Record ``result`` as one task; returns the offline session zip (None online)."""
    from src.tracking import Tracker

    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / "results.json").write_text(json.dumps(result, indent=2), encoding="utf-8")
    with Tracker.start(project=project, task_name=task_name, task_type="testing", offline=offline,
                       tags=("bench", "attention"), output_dir=output_dir) as tracker:  # fmt: skip
        tracker.connect_config(result["settings"], name="bench")
        for r in result["results"]:
            for key, _ in PANELS:
                if r.get(key) is not None:  # title: module and quantity; series: variant; iteration: n
                    tracker.log_scalar(f"{r['module']}/{key}", r["variant"], r[key], r["n"])
        for module, summary in result["by_module"].items():
            for variant, slope in summary["slopes"].items():
                if slope is not None:
                    tracker.log_single_value(f"{module} slope {variant}", slope)
            for name, value in summary["ratios"].items():
                if value is not None and name != "n":
                    tracker.log_single_value(f"{module} {name} (n={summary['ratios']['n']})", value)
            tracker.log_figure("scaling", module, plot_scaling(result, module), step=0)
        tracker.upload_artifact("bench-attention", result)
        tracker.log_text(table(result), console=False)
    return tracker.close()
