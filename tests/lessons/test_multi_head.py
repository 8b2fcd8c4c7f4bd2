"""The multi-head lesson's claims: heads cost no parameters; a trained head learns the task's permutation."""

from src.lessons import multi_head


def test_splitting_into_heads_keeps_the_parameter_count():
    counts = {h: multi_head.split(h).metrics["n_params"] for h in (1, 4, 8)}
    assert len(set(counts.values())) == 1
    assert multi_head.split(4).metrics["max_head_difference"] > 0.01  # the heads attend differently


def test_a_head_of_the_reverse_model_peaks_at_position_L_minus_1_minus_t(lesson):
    m = lesson("multi_head")["heads that specialise"].metrics
    assert m["final_loss"] < 0.2
    assert m["best_head_pattern"] >= 0.9  # argmax of cross-attention at T-1-t for >= 90% of positions
