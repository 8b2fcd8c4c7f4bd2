import math

import pytest

from src.training.schedule import cosine, inverse_sqrt, make_schedule


def test_inverse_sqrt_matches_the_papers_formula():
    """Sec. 5.3: lr = d^-0.5 * min(step^-0.5, step * warmup^-1.5), here normalised to peak 1.0."""
    warmup, d_model = 100, 256
    factor = inverse_sqrt(warmup)
    peak = d_model**-0.5 * warmup**-0.5
    for step in (1, 10, 50, 100, 101, 400, 10_000):
        paper = d_model**-0.5 * min(step**-0.5, step * warmup**-1.5)
        assert factor(step) == pytest.approx(paper / peak, rel=1e-12)
    assert factor(warmup) == pytest.approx(1.0)


def test_cosine_warms_up_then_decays_monotonically_to_the_floor():
    factor = cosine(10, 110, min_factor=0.05)
    assert factor(5) == pytest.approx(0.5)
    values = [factor(s) for s in range(10, 111)]
    assert values[0] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(values, values[1:]))
    assert values[-1] == pytest.approx(0.05)
    assert factor(10_000) == pytest.approx(0.05)


def test_unknown_schedule_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown schedule 'linear'"):
        make_schedule("linear", 10, 100)


def test_warmup_zero_is_safe():
    assert math.isfinite(inverse_sqrt(0)(0))
