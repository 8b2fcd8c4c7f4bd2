"""The masking lesson's claims: padding and causal masks isolate outputs; no causal mask leaks the future."""

import math

from src.lessons import masking


def test_padding_mask_keeps_real_outputs_and_causal_mask_keeps_the_past(lesson):
    results = lesson("masking")
    pad = results["padding mask"].metrics
    assert pad["change_with_mask"] < 1e-5 and pad["change_without_mask"] > 1e-2
    causal = results["causal mask"].metrics
    assert causal["past_change_causal"] == 0.0 and causal["past_change_full"] > 1e-2


def test_removing_the_causal_mask_lowers_the_loss_through_leakage_and_breaks_generation(lesson):
    m = lesson("masking")["future-token leakage"].metrics
    assert m["loss_causal"] > 0.9 * math.log(2)  # the data's own uncertainty: +1 or +2 at random
    assert m["loss_no_mask"] < 0.5 * m["loss_causal"]  # below what the data allows: it reads the answer
    assert m["generation_valid_causal"] > 0.95
    assert m["generation_valid_no_mask"] < m["generation_valid_causal"] - 0.1


def test_no_mask_changes_earlier_outputs_at_every_position():
    assert masking.causal(7).metrics["past_change_full"] > 1e-2
