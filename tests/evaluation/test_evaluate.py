import pytest

from src.evaluation.evaluate import length_budget, score


def test_identical_text_scores_100_and_unrelated_text_near_0():
    refs = ["The room was so small that the door only just cleared the bed.", "No worries!"]
    assert score(refs, refs) == {"bleu": pytest.approx(100.0), "chrf": pytest.approx(100.0)}
    bad = score(["xyzzy plugh", "qwerty"], refs)
    assert bad["bleu"] < 1.0 and bad["chrf"] < 10.0


@pytest.mark.parametrize(("src_len", "cap", "expected"), [(4, 64, 16), (20, 64, 40), (60, 64, 64), (0, 8, 8)])
def test_length_budget_follows_the_source_and_respects_the_cap(src_len, cap, expected):
    assert length_budget(src_len, cap) == expected
