"""From the records to the answer: log-log slopes, the ratios the issue targets, and a table."""

import math
import statistics

CELL = 20  # characters per "ms / MiB" cell of the table
TARGET_N = 8192  # the length at which the ratios are judged (else the longest one measured)
LONG_N = 16384  # the speed-ups are judged here too (issue 30: >= 8x at 8,192 and >= 12x at 16,384)
SLIDING = ("sliding_window", "longformer")
# name -> (numerator, denominator), each (variant, measured quantity)
RATIOS = {
    **{f"{v}_speedup_vs_full_sdpa": (("full/sdpa", "time_ms"), (v, "time_ms")) for v in SLIDING},
    **{f"{v}_memory_vs_full_sdpa": ((v, "peak_mib"), ("full/sdpa", "peak_mib")) for v in SLIDING},
    "full_math_memory_vs_sliding_window": (("full/math", "peak_mib"), ("sliding_window", "peak_mib")),
}
LONG_RATIOS = tuple(f"{v}_speedup_vs_full_sdpa" for v in SLIDING)  # also taken at LONG_N
FULL = ("full/sdpa", "full/math")
# name -> (lowest, highest) acceptable value; None = unbounded on that side
TARGETS: dict[str, tuple[float | None, float | None]] = {
    **{f"{v}_speedup_vs_full_sdpa": (8.0, None) for v in SLIDING},  # time(full/sdpa) / time(v)
    **{f"{v}_speedup_vs_full_sdpa at {LONG_N}": (12.0, None) for v in SLIDING},
    **{f"{v}_memory_vs_full_sdpa": (None, 1.5) for v in SLIDING},  # peak(v) / peak(full/sdpa)
    "full_math_memory_vs_sliding_window": (10.0, None),  # peak(full/math) / peak(sliding_window)
    **{f"slope {v}": (None, 1.2) for v in SLIDING},  # time ~ n^slope
    **{f"slope {v}": (1.7, 2.3) for v in FULL},  # ~2: quadratic, less what the projections add
}


def log_log_slope(ns: list[int], values: list[float]) -> float | None:
    """Least-squares slope of log(value) against log(n); None with fewer than two points."""
    if len(ns) < 2:
        return None
    return statistics.linear_regression([math.log(n) for n in ns], [math.log(v) for v in values]).slope


def measured(records: list[dict], module: str, variant: str, key: str) -> dict[int, float]:
    """n -> ``key`` of the measured (not skipped) records of one module and variant."""
    return {r["n"]: r[key] for r in records
            if (r["module"], r["variant"]) == (module, variant) and (r.get(key) or 0) > 0}


def slopes(records: list[dict], module: str, variants: list[str], key: str = "time_ms") -> dict:
    """Per variant, the log-log slope of ``key`` against n over every length measured."""
    fitted = {}
    for variant in variants:
        points = sorted(measured(records, module, variant, key).items())
        fitted[variant] = log_log_slope([n for n, _ in points], [value for _, value in points])
    return fitted


def ratios(records: list[dict], module: str) -> dict:
    """The issue's ratios at ``TARGET_N``, or else at the longest length where one can be taken, and the
    speed-ups at ``LONG_N`` as well.

    Each ratio needs its two variants measured at that length; one that is not is None.
    """
    by_length = {}
    for name, ((top, top_key), (bottom, bottom_key)) in RATIOS.items():
        above, below = measured(records, module, top, top_key), measured(records, module, bottom, bottom_key)
        by_length[name] = {n: above[n] / below[n] for n in above.keys() & below.keys()}
    lengths = set().union(*by_length.values())
    n = TARGET_N if TARGET_N in lengths else max(lengths, default=None)
    return {"n": n, **{name: values.get(n) for name, values in by_length.items()},
            **{f"{name} at {LONG_N}": by_length[name].get(LONG_N) for name in LONG_RATIOS}}


def judge(value: float | None, bounds: tuple[float | None, float | None]) -> bool | None:
    """Whether ``value`` lies within ``bounds``; None when it was not measured."""
    if value is None:
        return None
    low, high = bounds
    return (low is None or value >= low) and (high is None or value <= high)


def meets_targets(module_ratios: dict, module_slopes: dict) -> dict[str, bool | None]:
    """A verdict per target, and ``all`` (None while any target could not be judged)."""
    values = module_ratios | {f"slope {v}": s for v, s in module_slopes.items()}
    verdicts = {name: judge(values.get(name), bounds) for name, bounds in TARGETS.items()}
    known = [v for v in verdicts.values() if v is not None]
    return verdicts | {"all": all(known) if len(known) == len(verdicts) else None}


def summarise(settings: dict, records: list[dict]) -> dict:
    """The JSON object: the records, per-module slopes and ratios, the attention layer's at top level."""
    by_module = {}
    for module in settings["modules"]:
        module_slopes, module_ratios = slopes(records, module, settings["variants"]), ratios(records, module)
        by_module[module] = {
            "slopes": module_slopes,
            "peak_slopes": slopes(records, module, settings["variants"], "peak_mib"),
            "ratios": module_ratios,
            "meets_targets": meets_targets(module_ratios, module_slopes),
        }
    top = by_module[headline_module(settings)]
    return {
        "settings": settings,
        "results": records,
        "slopes": top["slopes"],
        "ratios": top["ratios"],
        "meets_targets": top["meets_targets"],
        "targets": {name: {"min": low, "max": high} for name, (low, high) in TARGETS.items()},
        "by_module": by_module,
    }


def headline_module(settings: dict) -> str:
    """The module whose slopes and ratios the JSON's top level holds: the attention layer if measured."""
    return "attention" if "attention" in settings["modules"] else settings["modules"][0]


def table(result: dict) -> str:
    """For a reader: per module, variants x lengths as ms / MiB, slopes, and the ratios against targets."""
    s, skipped = result["settings"], []
    lines = [
        f"Attention scaling bench: batch 1, d_model {s['d_model']}, {s['n_heads']} heads, "
        f"window {s['window']}, forward + backward, {s['device']}, {s['threads']} threads, "
        f"torch {s['torch']}",
        f"cells: median of {s['repeats']} ms / peak MiB added by forward + backward "
        f"({s['memory_measure']}); each point in its own process",
    ]
    records = {(r["module"], r["variant"], r["n"]): r for r in result["results"]}
    for module, summary in result["by_module"].items():
        columns = "".join(f"{n:>{CELL}}" for n in s["lengths"])
        header = f"{'variant':<16}{columns}{'slope':>8}{'mem slope':>10}"
        lines += ["", f"{module}: ms / MiB", header]
        for variant in s["variants"]:
            cells = ""
            for n in s["lengths"]:
                record = records[(module, variant, n)]
                if "skipped" in record:
                    skipped.append(f"{module} {variant} n={n}: {record['skipped']}")
                    cells += f"{f'skipped ({len(skipped)})':>{CELL}}"
                else:
                    cells += f"{record['time_ms']:>{CELL - 9}.1f} /{record['peak_mib']:>7.1f}"
            slope, peak_slope = summary["slopes"][variant], summary["peak_slopes"][variant]
            lines.append(f"{variant:<16}{cells}{_number(slope):>8}{_number(peak_slope):>10}")
        lines += _target_lines(summary)
    lines += ["", "skipped:", *(f"  ({i}) {line}" for i, line in enumerate(skipped, 1))] if skipped else []
    verdict = {True: "yes", False: "no", None: "unknown"}[result["meets_targets"]["all"]]
    lines += ["", f"{headline_module(s)} meets all targets: {verdict}"]
    return "\n".join(lines)


def _target_lines(summary: dict) -> list[str]:
    ratios_, verdicts = summary["ratios"], summary["meets_targets"]
    title = f"targets (ratios at n={ratios_['n']})"
    lines = [f"  {title:<40}{'value':>8}{'target':>11}{'met':>6}"]
    values = ratios_ | {f"slope {v}": s for v, s in summary["slopes"].items()}
    for name, bounds in TARGETS.items():
        met = {True: "yes", False: "no", None: "-"}[verdicts[name]]
        lines.append(f"  {name:<40}{_number(values.get(name)):>8}{_bounds(bounds):>11}{met:>6}")
    return lines


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _bounds(bounds: tuple[float | None, float | None]) -> str:
    low, high = bounds
    return f">= {low:g}" if high is None else f"<= {high:g}" if low is None else f"{low:g}..{high:g}"
