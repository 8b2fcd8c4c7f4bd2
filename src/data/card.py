"""The data card saved beside the dataset: counts, drops by reason, length histograms, examples."""

import json
from pathlib import Path

import numpy as np

MAX_BINNED_WORDS = 40
HISTOGRAM_BINS = [*range(1, MAX_BINNED_WORDS + 1), 1_000_000]  # one bin per word count, then 40+
N_EXAMPLES = 5


def length_summary(texts: list[str]) -> dict:
    """Whitespace-word lengths: histogram over ``HISTOGRAM_BINS`` (left-closed bins) and quantiles."""
    words = np.fromiter((len(t.split()) for t in texts), dtype=np.int64, count=len(texts))
    counts, _ = np.histogram(words, bins=HISTOGRAM_BINS)
    if len(words) == 0:
        return {
            "bin_edges": HISTOGRAM_BINS,
            "counts": counts.tolist(),
            "mean": 0.0,
            "p50": 0,
            "p95": 0,
            "max": 0,
        }
    return {
        "bin_edges": HISTOGRAM_BINS,
        "counts": counts.tolist(),
        "mean": round(float(words.mean()), 2),
        "p50": int(np.percentile(words, 50)),
        "p95": int(np.percentile(words, 95)),
        "max": int(words.max()),
    }


def examples(src: list[str], tgt: list[str], n: int = N_EXAMPLES, seed: int = 0) -> list[dict[str, str]]:
    """``n`` pairs drawn with a fixed seed, in corpus order."""
    if not src:
        return []
    picks = np.sort(np.random.default_rng(seed).choice(len(src), size=min(n, len(src)), replace=False))
    return [{"src": src[i], "tgt": tgt[i]} for i in picks]


def save_histogram_png(histograms: dict[str, dict[str, dict]], path: Path) -> None:
    """One panel per side (src, tgt), one line per split, share of pairs per length bin."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    for ax, side in zip(axes, ("src", "tgt")):
        for split, sides in histograms.items():
            counts = np.asarray(sides[side]["counts"], dtype=float)
            if counts.sum() > 0:
                ax.plot(
                    range(len(counts)),
                    counts / counts.sum(),
                    marker=".",
                    label=f"{split} (n={int(counts.sum())})",
                )
        ticks = [0, *range(4, MAX_BINNED_WORDS - 1, 5), MAX_BINNED_WORDS - 1]  # words 1, 5, 10, ..., 40+
        ax.set_xticks(ticks, [str(HISTOGRAM_BINS[i]) for i in ticks[:-1]] + [f"{MAX_BINNED_WORDS}+"])
        ax.set_xlabel("words")
        ax.set_title(side)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("share of pairs")
    axes[0].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def card_markdown(card: dict) -> str:
    """A short human-readable rendering of the card."""
    lines = [f"# Data card: {card['source']['description']}", ""]
    lines += [
        f"- input rows: {card['input_rows']}",
        f"- kept: {card['kept_rows']}",
        f"- dropped: {card['dropped_rows']}",
        "",
    ]
    lines += [
        "| split | pairs | src words mean / p95 / max | tgt words mean / p95 / max |",
        "|---|---:|---:|---:|",
    ]
    for split, n in card["counts"].items():
        h = card["length_histograms"][split]
        lines.append(
            f"| {split} | {n} | {h['src']['mean']} / {h['src']['p95']} / {h['src']['max']} "
            f"| {h['tgt']['mean']} / {h['tgt']['p95']} / {h['tgt']['max']} |"
        )
    lines += ["", "| drop reason | rows |", "|---|---:|"]
    lines += [f"| {reason} | {n} |" for reason, n in card["dropped"].items()]
    if card.get("train_extra_phrases"):
        lines += ["", f"Extra training phrase pairs: {json.dumps(card['train_extra_phrases'])}"]
    if card["source"].get("sentence_rule"):
        lines += ["", f"Sentence rule: {card['source']['sentence_rule']}"]
    lines += ["", "![length histogram](length_histogram.png)", "", "## Examples"]
    for split, rows in card["examples"].items():
        lines += ["", f"### {split}", ""] + [f"- {r['src']}  ->  {r['tgt']}" for r in rows]
    return "\n".join(lines) + "\n"


def save_card(card: dict, out_dir: Path) -> None:
    """``data_card.json``, ``data_card.md`` and ``length_histogram.png`` in ``out_dir``."""
    (out_dir / "data_card.json").write_text(json.dumps(card, indent=2, ensure_ascii=False), encoding="utf-8")
    (out_dir / "data_card.md").write_text(card_markdown(card), encoding="utf-8")
    save_histogram_png(card["length_histograms"], out_dir / "length_histogram.png")
