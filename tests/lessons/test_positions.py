"""The positions lesson's claims: the table is the paper's formula, dot products see only the offset,
attention without positions is permutation-equivariant."""

from src.lessons import positions


def test_table_matches_the_formula_and_dot_products_decay_with_distance(lesson):
    results = lesson("positions")
    assert results["the sinusoid matrix"].metrics["formula_error"] < 1e-6
    m = results["dot products between positions"].metrics
    assert m["dot_offset_0"] > m["dot_offset_1"] > m["dot_offset_2"] > m["dot_offset_4"] > m["dot_offset_16"]
    assert m["offset_spread"] < 1e-4  # the same offset gives the same dot product at every position


def test_without_positions_permuting_inputs_permutes_outputs_exactly(lesson):
    assert lesson("positions")["attention without positions"].metrics["equivariance_error"] < 1e-5
    assert positions.permutation(True).metrics["equivariance_error"] > 1e-2
