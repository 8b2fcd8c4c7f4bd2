"""The heads lesson's claims: a previous-token head emerges; an alignment head reads the aligned word; a head
learns to read the rare words when they decide the label."""


def test_a_head_attends_to_the_previous_token(lesson):
    m = lesson("heads")["previous-token heads"].metrics
    assert m["next_token_accuracy"] > 0.9
    assert m["best_previous_token_weight"] > 0.6
    # training made it, not the init
    assert m["best_previous_token_weight"] > 3 * m["untrained_same_head_weight"]
    # the second layer looks elsewhere
    assert m["best_previous_token_weight"] > 3 * m["other_layer_max_weight"]


def test_a_cross_attention_head_aligns_target_and_source(lesson):
    m = lesson("heads")["alignment heads"].metrics
    assert m["best_alignment"] > 0.9
    assert m["best_alignment_entropy"] < 1.0  # well below log(6) = 1.79 of a uniform head


def test_a_head_puts_most_of_its_weight_on_the_rare_words(lesson):
    m = lesson("heads")["rare-word heads"].metrics
    assert m["rare_accuracy"] > 0.95
    # rare in the corpus, a few positions of a text
    assert m["rare_frequency"] < 0.1 and m["rare_share"] < 0.25
    assert m["best_rare_weight"] > 0.8 > 3 * m["rare_share"]
    assert m["best_rare_weight"] > 3 * m["untrained_rare_weight"]  # the same head before training
