"""ListOps as LRA generates it: values by hand, parity with LRA's own output, labels, lengths, determinism."""

import pytest

from src.config.data import DataConfig
from src.data.listops import (
    LRA_MAX_ARGS,
    LRA_MAX_DEPTH,
    LRA_MAX_LENGTH,
    LRA_MIN_LENGTH,
    VALUES,
    class_counts,
    evaluate_listops,
    generate_listops,
    longest_listops,
    max_listops_chars,
    read_listops,
)
from src.data.text_classification import prepare_text_classification

TINY = {"min_length": 20, "max_length": 100, "max_depth": 5}

# The first three trees that LRA's own generator (lra_benchmarks/data/listops.py) keeps after
# random.seed(0) with max_depth=3, max_args=3, 5 < length < 30, written by its to_string and valued
# by its to_value.
LRA_SEED_0 = [
    ("( ( ( ( [MED 1 ) ( ( ( [SM 3 ) 2 ) ] ) ) ( ( ( ( [MED 8 ) 7 ) 1 ) ] ) ) ] )", 5),
    ("( ( ( [MIN ( ( ( ( [MAX 7 ) 1 ) 1 ) ] ) ) 0 ) ] )", 0),
    ("( ( ( [MIN 3 ) ( ( ( [MAX 0 ) 1 ) ] ) ) ] )", 1),
]


@pytest.mark.parametrize(("text", "value"), [
    ("[MAX 2 9 [MIN 4 7 ] 0 ]", 9),  # Nangia & Bowman's example
    ("[MIN 4 7 ]", 4),
    ("[MED 3 4 ]", 3),  # even count: mean of the middle two, rounded down (LRA's int(np.median))
    ("[MED 9 1 2 ]", 2),
    ("[MED 1 2 8 9 ]", 5),
    ("[SM 5 7 9 ]", 1),  # 21 mod 10
    ("[SM [MAX 9 9 ] [MIN 8 9 ] ]", 7),
    ("7", 7),
    ("( ( ( [MAX 2 ) 9 ) ] )", 9),  # LRA's parenthesised form of [MAX 2 9 ]
])
def test_values_by_hand(text, value):
    assert evaluate_listops(text) == value


@pytest.mark.parametrize(("text", "message"), [
    ("[MAX 2 9", "1 operator(s) left open"),
    ("[MAX 2 ] ]", "follows the end of the expression"),
    ("] 2", "closes no operator"),
    ("[MAX ]", "closed with no arguments"),
    ("[FOO 1 ]", "token 0 is '[FOO'"),
    ("[SM 12 ]", "token 1 is '12'"),
    ("3 4", "follows the end"),
    ("", "incomplete"),
])
def test_malformed_expressions_are_errors(text, message):
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("(", r"\(").replace(")", r"\)")):
        evaluate_listops(text)


def test_the_same_trees_as_lra_for_the_same_seed():
    examples = generate_listops(3, min_length=6, max_length=29, max_depth=3, max_args=3, seed=0,
                                parentheses=True)
    assert [(e.text, e.label) for e in examples] == LRA_SEED_0


@pytest.mark.parametrize("parentheses", [False, True])
def test_labels_lengths_and_forms_agree(parentheses):
    examples = generate_listops(300, **TINY, seed=1, parentheses=parentheses)
    assert len({e.text for e in examples}) == 300  # distinct, as LRA's set
    for e in examples:
        assert evaluate_listops(e.text) == e.label
        assert TINY["min_length"] <= e.length <= TINY["max_length"]
        tokens = e.text.split()
        assert len([t for t in tokens if t not in "()"]) == e.length
        # one parenthesis pair per argument and per operator: n - 1 pairs for a tree of n tokens
        assert len(tokens) == (3 * e.length - 2 if parentheses else e.length)
        assert len(e.text) <= max_listops_chars(e.length, parentheses)
    other = generate_listops(300, **TINY, seed=1, parentheses=not parentheses)
    assert [e.label for e in other] == [e.label for e in examples]
    assert [e.length for e in other] == [e.length for e in examples]


def test_lra_sized_expressions_stay_within_lra_bounds():
    examples = generate_listops(60, seed=3)
    assert all(LRA_MIN_LENGTH <= e.length <= LRA_MAX_LENGTH == 1999 for e in examples)
    assert all(len(e.text.split()) == e.length and evaluate_listops(e.text) == e.label for e in examples)
    assert max(e.length for e in examples) > 1000  # the long tail is there, not only the shortest trees


def test_deterministic_given_the_seed_and_every_class_appears():
    first, again = generate_listops(2000, **TINY, seed=7), generate_listops(2000, **TINY, seed=7)
    assert first == again
    assert [e.text for e in generate_listops(50, **TINY, seed=8)] != [e.text for e in first[:50]]
    counts = class_counts(first)
    assert sorted(counts) == list(range(len(VALUES))) and min(counts.values()) >= 50, counts


def test_impossible_or_too_rare_lengths_are_errors():
    assert longest_listops(3, 3) == 2 + 3 * (2 + 3 * 1) == 17
    with pytest.raises(ValueError, match="at most 17 tokens long"):
        generate_listops(5, min_length=18, max_length=40, max_depth=3, max_args=3)
    with pytest.raises(ValueError, match="max_args >= 2"):
        generate_listops(5, max_args=1)
    with pytest.raises(ValueError, match="min_length <= max_length"):
        generate_listops(5, min_length=50, max_length=40)
    with pytest.raises(RuntimeError, match="too rare"):  # only the one full tree reaches 17
        generate_listops(5, min_length=17, max_length=17, max_depth=3, max_args=3, max_draws_per_example=20)


def test_data_config_defaults_and_rules_are_the_generators():
    cfg = DataConfig(source="listops", max_chars=max_listops_chars(LRA_MAX_LENGTH, False))
    assert (cfg.listops_min_length, cfg.listops_max_length, cfg.listops_max_depth, cfg.listops_max_args) \
        == (LRA_MIN_LENGTH, LRA_MAX_LENGTH, LRA_MAX_DEPTH, LRA_MAX_ARGS)
    for depth, args, parentheses in [(3, 3, False), (5, 10, True), (10, 10, False), (4, 2, True)]:
        longest = longest_listops(depth, args)
        fits = {"listops_max_depth": depth, "listops_max_args": args, "listops_parentheses": parentheses,
                "listops_min_length": 1, "listops_max_length": longest}
        DataConfig(source="listops", max_chars=max_listops_chars(longest, parentheses), **fits)
        with pytest.raises(ValueError, match="max_chars"):
            DataConfig(source="listops", max_chars=max_listops_chars(longest, parentheses) - 1, **fits)
        with pytest.raises(ValueError, match=f"at most {longest} tokens long"):
            DataConfig(source="listops", max_chars=10**9, **{**fits, "listops_min_length": longest + 1,
                                                             "listops_max_length": longest + 1})


def test_data_config_checks_the_generator_knobs_and_max_chars():
    with pytest.raises(ValueError,
                       match="max_chars=300 would drop ListOps expressions as too_long.*max_chars >= 9994"):
        DataConfig(source="listops")
    with pytest.raises(ValueError, match=r"expected max_chars >= 17986"):
        DataConfig(source="listops", max_chars=9994, listops_parentheses=True)
    with pytest.raises(ValueError, match="listops_min_length <= listops_max_length"):
        DataConfig(source="listops", max_chars=10000, listops_min_length=3000)
    with pytest.raises(ValueError, match="max_rows is for sources that are read"):
        DataConfig(source="listops", max_chars=10000, max_rows=10)


def test_generated_rows_pass_the_classification_data_prep_whole(tmp_path):
    cfg = DataConfig(source="listops", listops_rows=400, listops_min_length=20, listops_max_length=100,
                     listops_max_depth=5, max_chars=max_listops_chars(100, False), listops_seed=2)
    card = prepare_text_classification(read_listops(cfg), tmp_path, valid_size=0.1, test_size=0.1,
                                       max_chars=cfg.max_chars)
    assert card["input_rows"] == card["kept_rows"] == 400 and card["dropped_rows"] == 0
    assert card["labels"] == {str(v): v for v in range(len(VALUES))}  # class id == value
    assert "ListOps" in card["source"]["description"] and sum(card["counts"].values()) == 400
