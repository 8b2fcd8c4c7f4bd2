import itertools

import pytest
import torch

from src.models.decoding import beam_search, gnmt_length_penalty, greedy_decode
from src.models.transformer import build_model

PAD, BOS, EOS = 0, 1, 12


@pytest.fixture
def model(tiny_config):
    """A random model whose outputs vary along the sequence, so sentences end at different steps.

    A freshly initialised tied model repeats one token forever; strong learned positions and an
    untied, large generator break that symmetry without training.
    """
    torch.manual_seed(0)
    cfg = tiny_config.model_copy(update={"positional_encoding": "learned", "tie_output": False})
    model = build_model(cfg, 13, 13, pad_id=PAD).eval()
    with torch.no_grad():
        model.embeddings.positional.table.weight.normal_(0.0, 1.0)
        model.generator.weight.normal_(0.0, 1.0)
    return model


@pytest.fixture
def src():
    g = torch.Generator().manual_seed(3)
    src = torch.randint(3, 13, (6, 8), generator=g)
    src[1, 5:], src[4, 2:] = PAD, PAD
    return src


def _check_output_convention(tokens: torch.Tensor, max_new_tokens: int) -> None:
    assert tokens.dtype == torch.long and tokens.size(1) <= max_new_tokens
    for row in tokens.tolist():
        if EOS in row:
            assert all(t == PAD for t in row[row.index(EOS) + 1 :])


def test_cached_and_uncached_greedy_decoding_agree(model, src):
    cached = greedy_decode(model, src, bos_id=BOS, eos_id=EOS, max_new_tokens=16)
    uncached = greedy_decode(model, src, bos_id=BOS, eos_id=EOS, max_new_tokens=16, use_cache=False)
    assert torch.equal(cached, uncached)
    _check_output_convention(cached, 16)
    ends = [row.index(EOS) for row in cached.tolist() if EOS in row]
    assert len(set(ends)) > 1  # sentences stop at different steps, so the padding path is exercised


def test_greedy_drops_ended_sentences_from_the_batch_and_decodes_each_as_if_alone(model, src, monkeypatch):
    sizes = []
    step_logits = model.step_logits

    def counted(tgt, memory, src_mask, cache):
        assert tgt.size(0) == memory.size(0) == src_mask.size(0)  # every per-row input shrinks together
        sizes.append(tgt.size(0))
        return step_logits(tgt, memory, src_mask, cache)

    monkeypatch.setattr(model, "step_logits", counted)
    batched = greedy_decode(model, src, bos_id=BOS, eos_id=EOS, max_new_tokens=16)
    ends = sorted(row.index(EOS) + 1 for row in batched.tolist() if EOS in row)
    # step s runs the sentences that have not ended before it: the batch costs their summed lengths
    assert sizes == [sum(1 for end in ends if end > s) + (src.size(0) - len(ends)) for s in range(len(sizes))]
    assert sizes[0] == src.size(0) and sizes[-1] < src.size(0)
    monkeypatch.undo()
    for i in range(src.size(0)):
        alone = greedy_decode(model, src[i : i + 1], bos_id=BOS, eos_id=EOS, max_new_tokens=16)
        assert torch.equal(alone[0], batched[i, : alone.size(1)])
        assert (batched[i, alone.size(1) :] == PAD).all()


def test_greedy_takes_the_argmax_of_the_full_forward_pass(model, src):
    tokens = greedy_decode(model, src, bos_id=BOS, eos_id=EOS, max_new_tokens=5)
    inputs = torch.cat([torch.full((src.size(0), 1), BOS), tokens[:, :-1]], dim=1)
    alive = torch.cat(
        [torch.ones(src.size(0), 1, dtype=torch.bool), (tokens[:, :-1] != EOS).cumprod(1).bool()], 1
    )
    assert torch.equal(model(src, inputs).argmax(-1)[alive], tokens[alive])


def test_beam_size_one_equals_greedy(model, src):
    greedy = greedy_decode(model, src, bos_id=BOS, eos_id=EOS, max_new_tokens=12)
    beam = beam_search(model, src, bos_id=BOS, eos_id=EOS, beam_size=1, length_penalty=0.6, max_new_tokens=12)
    assert torch.equal(beam, greedy)


def test_beam_search_is_independent_of_the_other_sentences_in_the_batch(model, src):
    batched = beam_search(
        model, src, bos_id=BOS, eos_id=EOS, beam_size=3, length_penalty=0.6, max_new_tokens=10
    )
    _check_output_convention(batched, 10)
    for i in range(src.size(0)):
        single = beam_search(
            model, src[i : i + 1], bos_id=BOS, eos_id=EOS, beam_size=3, length_penalty=0.6, max_new_tokens=10
        )
        assert batched[i, : single.size(1)].tolist() == single[0].tolist()
        assert (batched[i, single.size(1) :] == PAD).all()


def _normalised_scores(model, src_row, hypotheses, alpha):
    """log P(Y | X) / lp(Y) of each hypothesis (Y counted up to and including EOS), in one forward pass."""
    width = max(map(len, hypotheses))
    labels = torch.tensor([[*h] + [PAD] * (width - len(h)) for h in hypotheses])  # (N, L)
    inputs = torch.cat([torch.full((len(hypotheses), 1), BOS), labels[:, :-1]], dim=1)
    log_probs = model(src_row.expand(len(hypotheses), -1), inputs).log_softmax(-1)  # (N, L, V)
    lengths = torch.tensor([len(h) for h in hypotheses])
    real = torch.arange(width) < lengths[:, None]
    total = (log_probs.gather(2, labels[..., None])[..., 0] * real).sum(1)
    return total / gnmt_length_penalty(lengths.float(), alpha)


@pytest.mark.parametrize("alpha", [0.0, 1.0])
def test_a_beam_wide_enough_to_keep_everything_finds_the_best_normalised_hypothesis(model, src, alpha):
    vocab, steps = 13, 2
    hypotheses = [(EOS,)] + [
        tuple(seq) for seq in itertools.product(range(vocab), repeat=steps) if seq[0] != EOS
    ]
    for row in src[:2]:
        with torch.no_grad():
            best = hypotheses[_normalised_scores(model, row, hypotheses, alpha).argmax()]
        found = beam_search(
            model,
            row[None],
            bos_id=BOS,
            eos_id=EOS,
            beam_size=vocab**steps,
            length_penalty=alpha,
            max_new_tokens=steps,
        )
        assert tuple(found[0, : len(best)].tolist()) == best


def test_too_many_new_tokens_for_the_positions_is_rejected(model, src):
    with pytest.raises(ValueError, match=r"max_new_tokens=65 exceeds the model's max_positions=64"):
        greedy_decode(model, src, bos_id=BOS, eos_id=EOS, max_new_tokens=65)
    with pytest.raises(ValueError, match=r"beam_size must be >= 1, got 0"):
        beam_search(model, src, bos_id=BOS, eos_id=EOS, beam_size=0, length_penalty=0.6, max_new_tokens=4)


@pytest.mark.parametrize(
    "bad_src, actual",
    [
        (torch.arange(3, 10), r"got shape \(7,\) dtype torch\.int64"),
        (torch.ones(2, 7), r"got shape \(2, 7\) dtype torch\.float32"),
        ([[3, 4, 5]], r"got list"),
    ],
    ids=["1-D", "float", "list"],
)
@pytest.mark.parametrize("decoder", ["greedy", "beam"])
def test_decoders_name_a_malformed_src(model, decoder, bad_src, actual):
    run = {
        "greedy": lambda s: greedy_decode(model, s, bos_id=BOS, eos_id=EOS, max_new_tokens=4),
        "beam": lambda s: beam_search(
            model, s, bos_id=BOS, eos_id=EOS, beam_size=2, length_penalty=0.6, max_new_tokens=4
        ),
    }[decoder]
    expected = r"^src must be a 2-D \(batch, length\) tensor of integer token ids"
    with pytest.raises(ValueError, match=rf"{expected}.*{actual}$"):
        run(bad_src)


def _reference_beam_search(model, src_row, beam_size, alpha, max_new_tokens):
    """Textbook beam search over Python tuples: no cache, every step re-runs the whole prefix.

    A finished hypothesis (ending in EOS) is carried over unchanged and competes on
    log P(Y | X) / lp(Y), lp(Y) = ((5 + |Y|) / 6)^alpha (GNMT, Eq. 14), |Y| counting EOS.
    Returns the best hypothesis and the lengths of the finished hypotheses in the final beam.
    """
    beams = [((), 0.0)]  # (tokens after BOS, log P)
    for _ in range(max_new_tokens):
        live = [(h, s) for h, s in beams if EOS not in h]
        if not live:
            break
        candidates = [(h, s) for h, s in beams if EOS in h]
        prefixes = torch.tensor([[BOS, *h] for h, _ in live])  # (N, 1+t)
        with torch.no_grad():
            log_probs = model(src_row.expand(len(live), -1), prefixes)[:, -1].log_softmax(-1)  # (N, V)
        for (h, s), row in zip(live, log_probs.tolist()):
            candidates += [(h + (t,), s + lp) for t, lp in enumerate(row)]
        beams = sorted(candidates, key=lambda b: b[1] / ((5 + len(b[0])) / 6) ** alpha, reverse=True)
        beams = beams[:beam_size]
    return beams[0][0], {len(h) for h, _ in beams if EOS in h}


@pytest.mark.parametrize("alpha", [0.0, 2.0])
def test_cached_beam_search_equals_an_uncached_reference(model, src, alpha):
    """Fails if the cache is not reordered with the surviving beams (their prefixes would mix),
    or if the length penalty sees lengths that do not belong to each candidate."""
    found = beam_search(
        model, src, bos_id=BOS, eos_id=EOS, beam_size=4, length_penalty=alpha, max_new_tokens=8
    )
    finished_lengths = set()
    for i, row in enumerate(src):
        best, lengths = _reference_beam_search(model, row[None], beam_size=4, alpha=alpha, max_new_tokens=8)
        finished_lengths |= lengths
        assert found[i, : len(best)].tolist() == list(best)
        assert (found[i, len(best) :] == PAD).all()
    assert len(finished_lengths) > 1  # hypotheses end at different lengths, so the penalty matters
