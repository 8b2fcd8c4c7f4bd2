"""The attention lesson's claims: the head is Eq. 1, the unscaled softmax saturates, temperature sharpens."""

import math

from src.lessons import attention


def test_the_head_computes_eq1_as_written_by_hand(lesson):
    """softmax(Q K^T / sqrt(d_k)) and out_proj(weights V) from the layer's own projections."""
    m = lesson("attention")["queries, keys and values"].metrics
    assert m["eq1_weight_error"] < 1e-6 and m["eq1_output_error"] < 1e-6


def test_unscaled_softmax_is_measurably_more_saturated(lesson):
    m = lesson("attention")["why divide by sqrt(d_k)"].metrics  # d_k = 64
    assert m["max_weight_unscaled"] > 3 * m["max_weight_scaled"]
    assert m["entropy_unscaled"] < 0.3 * m["entropy_scaled"]
    assert 0.8 < m["score_var_scaled"] < 1.25 and 0.6 * 64 < m["score_var_unscaled"] < 1.4 * 64


def test_saturation_grows_with_d_k_only_without_scaling():
    small, large = attention.scaling(4).metrics, attention.scaling(1024).metrics
    assert large["entropy_unscaled"] < small["entropy_unscaled"] - 1.0
    assert abs(large["entropy_scaled"] - small["entropy_scaled"]) < 0.2
    assert large["entropy_scaled"] < math.log(32)


def test_temperature_orders_the_entropy():
    entropies = [attention.temperature(t).metrics["mean_entropy"] for t in (0.1, 1.0, 10.0)]
    assert entropies[0] < entropies[1] < entropies[2] < math.log(len(attention.SENTENCE))
