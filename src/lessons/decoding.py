"""Decoding: greedy against beam search on a tiny trained model, with the beam tree shown.

Runs ``greedy_decode`` and ``beam_search`` of ``src/models/decoding.py`` unchanged; the tree is
read off the real search by watching its calls (the decoder inputs, the next-token distributions
and the beams kept at each step), not by a second implementation.
"""

from dataclasses import dataclass

import torch
from rich.tree import Tree

from src.lessons import toy
from src.lessons.multi_head import LENGTH, N_SYMBOLS, trained
from src.lessons.step import Knob, Step, StepResult
from src.models.decoding import beam_search, greedy_decode
from src.visualization.figure import new_figure

TRAIN_STEPS, N_SOURCES = 170, 16  # an under-trained model: greedy's first choice is not always right


@dataclass
class BeamNode:
    depth: int
    beam: int
    parent: int | None  # beam index at depth - 1
    token: int
    score: float  # cumulative log-probability


def traced_beam_search(model: torch.nn.Module, src: torch.Tensor, beam_size: int) -> tuple[torch.Tensor,
                                                                                           list[list[BeamNode]]]:
    """``beam_search`` on one sentence, and the hypotheses it kept at each depth.

    The decoder inputs of step s+1 are the tokens chosen at step s, ``reorder_beams`` receives the
    parent of each kept hypothesis, and the generator's output gives the log-probabilities: with
    ``length_penalty=0`` the score of a hypothesis is the sum of those along its path. A finished
    hypothesis continues with pad at no cost, as in ``beam_search``.
    """
    inputs, parents, log_probs, max_new_tokens = [], [], [], LENGTH + 3
    decode, new_cache = model.decode, model.new_cache

    def watched_decode(tgt, *args, **kwargs):
        inputs.append(tgt[:, -1].clone())
        return decode(tgt, *args, **kwargs)

    def watched_cache():
        cache = new_cache()
        reorder = cache.reorder_beams
        cache.reorder_beams = lambda index: (parents.append(index.clone()), reorder(index))[1]
        return cache

    hook = model.generator.register_forward_hook(lambda _m, _i, out: log_probs.append(out.log_softmax(-1)))
    model.decode, model.new_cache = watched_decode, watched_cache
    try:
        output = beam_search(model, src, bos_id=toy.BOS, eos_id=toy.EOS, beam_size=beam_size,
                             length_penalty=0.0,
                             max_new_tokens=max_new_tokens)
    finally:
        hook.remove()
        del model.decode, model.new_cache  # back to the class's methods
    tokens = inputs[1:]  # step s's choices are step s+1's inputs
    layers: list[list[BeamNode]] = []
    scores, finished = torch.zeros(beam_size), torch.zeros(beam_size, dtype=torch.bool)
    for depth, parent in enumerate(parents):
        if depth < len(tokens):
            chosen = tokens[depth]
        elif len(parents) < max_new_tokens:  # stopped early: the last step finished every live beam with EOS
            chosen = torch.where(finished[parent], toy.PAD, toy.EOS)
        else:  # stopped at max_new_tokens: the last choices were never fed back, so they are not known here
            break
        step_log_probs = log_probs[depth]  # (K, V)
        gain = torch.where(finished[parent], 0.0, step_log_probs[parent, chosen])
        scores = scores[parent] + gain
        finished = finished[parent] | (chosen == toy.EOS)
        layers.append([BeamNode(depth, b, int(parent[b]) if depth else None, int(chosen[b]), float(scores[b]))
                       for b in range(beam_size)])
    return output, layers


def beam_tree(layers: list[list[BeamNode]], names: list[str]) -> Tree:
    """The kept hypotheses as a rich tree; finished beams stop at </s>."""
    root = Tree("<s>")
    branches = {None: root}
    for depth, layer in enumerate(layers):
        current = {}
        for node in layer:
            if node.token == toy.PAD:
                current[node.beam] = branches[node.parent]
                continue
            parent = branches[node.parent if depth else None]
            current[node.beam] = parent.add(f"{names[node.token]}  [dim]log p = {node.score:.3f}[/dim]")
        branches = current
    return root


def tree_figure(layers: list[list[BeamNode]], names: list[str], title: str):
    """Depth on x, beam rank on y, an edge from each hypothesis to its parent."""
    figure = new_figure(1.2 * len(layers) + 2.0, 0.7 * len(layers[0]) + 1.5)
    ax = figure.subplots()
    for layer in layers:
        for node in layer:
            if node.token == toy.PAD:
                continue
            if node.depth:
                ax.plot([node.depth - 1, node.depth], [node.parent, node.beam], color="grey", lw=0.8)
            else:
                ax.plot([-1, 0], [0, node.beam], color="grey", lw=0.8)
            colour = "tab:green" if node.beam == 0 else "tab:blue"
            ax.annotate(f"{names[node.token]}\n{node.score:.2f}", (node.depth, node.beam), ha="center",
                        va="center", fontsize=7, color=colour,
                        bbox={"boxstyle": "round", "fc": "white", "ec": colour, "lw": 0.6})
    ax.annotate("<s>", (-1, 0), ha="center", va="center", fontsize=7)
    ax.set_xlim(-1.5, len(layers) - 0.5)
    ax.set_ylim(len(layers[0]) - 0.5, -0.5)
    ax.set_xlabel("step")
    ax.set_ylabel("beam (0 = best)")
    ax.set_title(title, fontsize=9)
    figure.tight_layout()
    return figure


def _text(ids: torch.Tensor, names: list[str]) -> str:
    """The symbols of a (1, L) row, without pad and EOS."""
    return " ".join(names[i] for i in ids[0].tolist() if i not in (toy.PAD, toy.EOS))


def greedy_vs_beam(beam_size: int) -> StepResult:
    """Greedy and beam search on held-out sources: the log-probability each finds, and one beam tree."""
    model, _ = trained("reverse", TRAIN_STEPS)
    names = toy.symbols(N_SYMBOLS)
    sources, _, _ = toy.reverse_batch(N_SOURCES, LENGTH, N_SYMBOLS, "reverse",
                                      torch.Generator().manual_seed(11))
    rows, gains, traced = [], [], []
    for src in sources.split(1):
        greedy = greedy_decode(model, src, bos_id=toy.BOS, eos_id=toy.EOS, max_new_tokens=LENGTH + 3)
        beam, layers = traced_beam_search(model, src, beam_size)
        g, b = toy.sequence_log_prob(model, src, greedy), toy.sequence_log_prob(model, src, beam)
        gains.append(b - g)
        traced.append((src, beam, layers, b))
        rows.append([_text(src, names), _text(greedy, names), g, _text(beam, names), b])
    shown = max(range(len(gains)), key=gains.__getitem__)
    src, beam, layers, best_score = traced[shown]
    tree_best = max(node.score for node in layers[-1])
    correct = sum(r[3] == " ".join(reversed(r[0].split())) for r in rows)
    greedy_correct = sum(r[1] == " ".join(reversed(r[0].split())) for r in rows)
    return StepResult(
        outcome=f"beam {beam_size}: log P(beam) - log P(greedy) >= {min(gains):.2e} on all {len(gains)} "
                f"sources (mean gain {sum(gains) / len(gains):.3f}, largest {max(gains):.3f}); beam reverses "
                f"{correct} of {len(rows)} sources correctly, greedy {greedy_correct}",
        metrics={"min_gain": min(gains), "mean_gain": sum(gains) / len(gains), "max_gain": max(gains),
                 "tree_score_error": abs(tree_best - best_score), "beam_correct": float(correct),
                 "greedy_correct": float(greedy_correct)},
        columns=("source", "greedy", "log P greedy", "beam", "log P beam"), rows=rows,
        figures={"beam_tree": tree_figure(layers, names,
                                          f"beam {beam_size} on '{rows[shown][0]}' (green: best)")},
        extra=[beam_tree(layers, names)])


STEPS = [
    Step("greedy against beam search", """
A decoder produces one token at a time. Greedy decoding takes the most probable token at each
step and never looks back. Beam search keeps the K best partial translations by total
log-probability and extends each of them; a token that looked second-best can lead to a better
whole sentence. With no length penalty, the beam's result is never less probable than greedy's in
practice (greedy's path competes in the beam). The tree shows the hypotheses the real
beam_search kept at each step, on the source where it gained most.""", greedy_vs_beam,
         Knob("beam_size", 4, "hypotheses kept, 1 = greedy", low=1, high=16)),
]
