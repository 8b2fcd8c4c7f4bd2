from src.evaluation.gate import quality_gate


def test_below_threshold_is_candidate():
    decision = quality_gate(8.0, 10.0, None)
    assert decision.stage == "candidate" and "below the threshold" in decision.reason


def test_must_beat_the_published_champion():
    assert quality_gate(12.0, 10.0, 12.5).stage == "candidate"
    assert quality_gate(12.5, 10.0, 12.5).stage == "candidate"  # a tie does not replace the champion
    decision = quality_gate(13.0, 10.0, 12.5)
    assert decision.promote and "beats the champion's 12.50" in decision.reason


def test_no_champion_threshold_decides():
    decision = quality_gate(10.5, 10.0, None)
    assert decision.promote and "no published champion" in decision.reason


def test_lower_is_better_for_bits_per_character():
    above = quality_gate(2.6, 2.5, None, metric="bpc", higher_is_better=False)
    assert above.stage == "candidate" and "bpc 2.600 is above the threshold 2.500" in above.reason
    assert quality_gate(2.0, 2.5, 1.9, metric="bpc", higher_is_better=False).stage == "candidate"
    # a tie keeps it
    assert quality_gate(1.9, 2.5, 1.9, metric="bpc", higher_is_better=False).stage == "candidate"
    better = quality_gate(1.8, 2.5, 1.9, metric="bpc", higher_is_better=False)
    assert better.promote and "beats the champion's 1.900" in better.reason
    assert quality_gate(2.4, 2.5, None, metric="bpc", higher_is_better=False).promote
