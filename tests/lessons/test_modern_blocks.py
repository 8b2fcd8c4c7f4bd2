"""The modern_blocks lesson's claims: RoPE scores see only the offset; ALiBi extrapolates where learned
positions fail; grouped-query attention divides the cache by H/G; the Llama-shaped toy LM learns the
relative rule faster;
the plain RNN's gradient vanishes fastest, and the cell that learns is the one whose gradient reaches back."""


def test_rope_scores_depend_on_the_offset_alone(lesson):
    m = lesson("modern_blocks")["rotary positions see only the offset"].metrics
    assert m["rope_offset_spread"] < 1e-5 and m["rope_norm_error"] < 1e-5
    assert m["added_offset_spread"] > 1.0  # an added table: the same offset scores differently at each place


def test_alibi_extrapolates_and_learned_positions_do_not(lesson):
    m = lesson("modern_blocks")["ALiBi extrapolates, learned positions do not"].metrics
    for kind in ("learned", "rope", "alibi"):
        assert m[f"within_{kind}"] < 0.1  # every model learned the rule at the training length
    assert m["beyond_learned"] > 2.0  # untrained rows of the table: the rule is lost
    assert m["beyond_alibi"] < 0.5 and m["beyond_alibi"] < m["beyond_rope"] < m["beyond_learned"]


def test_grouped_query_attention_divides_the_cache(lesson):
    m = lesson("modern_blocks")["grouped-query attention shrinks the cache"].metrics
    # 2 layers x (keys + values) x G heads x 8 wide x 4 bytes
    assert (m["bytes_per_token_MHA"], m["bytes_per_token_GQA"], m["bytes_per_token_MQA"]) == (1024, 256, 128)
    assert m["cache_matches_formula"] == 1.0 and m["cached_equals_uncached"] == 1.0


def test_each_block_trains_and_the_llama_shape_learns_the_relative_rule_fastest(lesson):
    m = lesson("modern_blocks")["each block on a short run"].metrics
    assert m["loss_llama"] < 0.7 * m["loss_gpt2"]
    assert m["loss + RoPE"] < m["loss_gpt2"]  # relative positions for a relative rule
    assert m["parameters + SwiGLU"] - m["parameters GPT-2 (learned, LayerNorm, GELU, MHA)"] < 0.02 * 19616
    assert m["parameters + GQA (1 key/value head)"] < m["parameters GPT-2 (learned, LayerNorm, GELU, MHA)"]


def test_the_plain_rnn_gradient_vanishes_fastest_and_only_a_cell_it_reaches_learns(lesson):
    m = lesson("modern_blocks")["the vanishing gradient of the plain RNN"].metrics
    assert m["per_step_rnn"] < 0.5 < m["per_step_lstm"] and m["per_step_gru"] > 0.5
    assert m["initial_ratio_rnn"] < m["initial_ratio_lstm"] / 100
    assert (
        m["accuracy_gru"] > 0.95 and m["trained_ratio_gru"] > 0.1
    )  # learned: the gradient now reaches t = 0
    assert m["accuracy_rnn"] < 0.9 and m["trained_ratio_rnn"] < 1e-3
