"""The heads lesson's claims: a previous-token head emerges; an alignment head reads the aligned word."""


def test_a_head_attends_to_the_previous_token(lesson):
    m = lesson("heads")["previous-token heads"].metrics
    assert m["next_token_accuracy"] > 0.9
    assert m["best_previous_token_weight"] > 0.6 > 3 * m["uniform_previous_token_weight"]


def test_a_cross_attention_head_aligns_target_and_source(lesson):
    m = lesson("heads")["alignment heads"].metrics
    assert m["best_alignment"] > 0.9
    assert m["best_alignment_entropy"] < 1.0  # well below log(6) = 1.79 of a uniform head
