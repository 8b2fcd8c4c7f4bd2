"""The decoding lesson's claims: beam search is never less probable than greedy; the tree is the real
search."""


def test_beam_log_probability_is_at_least_greedys(lesson):
    result = lesson("decoding")["greedy against beam search"]
    m = result.metrics
    assert m["min_gain"] >= -1e-4
    assert m["max_gain"] > 0.01  # on some source the beam found a more probable output
    assert m["tree_score_error"] < 1e-4  # the traced tree's best score is the returned sequence's log P
    assert result.extra and "log p" in str(result.extra[0].children[0].label)
