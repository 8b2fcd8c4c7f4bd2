"""The model-family lessons' claims: [CLS] finds the deciding word, the LM is causal and cached decoding
agrees, ViT patches are a matmul and rollout finds the shape, the sliding window is exact (on its fused path)
and does linear work."""

import pytest
import torch

from src.components import sliding_window_flash_attention as swa_flash
from src.lessons import decoder_only, efficient_attention


def test_encoder_classifier_learns_the_task_padding_changes_nothing_and_cls_finds_the_marker(lesson):
    m = lesson("encoder_only")["[CLS] and pooling"].metrics
    assert m["accuracy"] > 0.9
    assert m["padding_change"] < 1e-4
    assert m["cls_weight_on_marker"] > 5 * m["cls_weight_on_other"]


def test_decoder_lm_is_causal_its_cache_agrees_and_temperature_breaks_the_pattern(lesson):
    results = lesson("decoder_only")
    m = results["a causal language model"].metrics
    assert m["past_logit_change"] == 0.0 and m["changed_position_logit_change"] > 0.1
    assert m["cache_agrees"] == 1.0
    t = results["sampling temperature"].metrics
    assert t["rule_share_greedy"] > 0.95
    assert t["rule_share_t2"] < t["rule_share_greedy"] - 0.1
    assert decoder_only.temperature(5.0).metrics["rule_share"] < t["rule_share_t2"]


def test_vit_patch_embedding_is_a_matmul_and_rollout_concentrates_on_the_shape(lesson):
    results = lesson("vit")
    p = results["patches"].metrics
    assert p["n_patches"] == 16 and p["conv_matmul_difference"] < 1e-5
    m = results["where the [class] token looks"].metrics
    assert m["accuracy"] > 0.6  # four classes: chance is 0.25
    assert m["rollout_on_shape"] > 2 * m["shape_area"]


def test_sliding_window_equals_the_dense_band_and_does_linear_work(lesson):
    results = lesson("efficient_attention")
    m = results["the band"].metrics
    assert m["band_error"] < 1e-5 and m["difference_from_full"] > 1e-2
    assert m["weight_error"] < 1e-6  # the blocked weights against full attention's softmax under band_mask
    c = results["cost against length"].metrics  # window 32 divides every length: the counts are exact
    assert abs(c["flop_slope_full"] - 2.0) < 1e-9 and abs(c["flop_slope_sliding"] - 1.0) < 1e-9
    assert c["flops_full_longest"] > 20 * c["flops_sliding_longest"]


def test_the_band_outputs_come_from_the_fused_blocked_kernel(monkeypatch):
    """The exactness claim is about the path training runs, not the math path that returns weights."""
    calls = []
    original = swa_flash._BandFlashAttention.apply

    def spy(*args):
        calls.append(args[0].shape)
        return original(*args)

    monkeypatch.setattr(swa_flash._BandFlashAttention, "apply", spy)
    assert efficient_attention.band(4).metrics["band_error"] < 1e-5
    assert calls == [torch.Size([2, efficient_attention.HEADS, 48, efficient_attention.D_MODEL // 2])]


def test_attention_flops_are_the_formulas():
    """Two matmuls of 2 n m d FLOPs per head: m = n keys for full attention, 3 w for each blocked query."""
    heads, d_head = efficient_attention.HEADS, efficient_attention.D_MODEL // efficient_attention.HEADS
    assert efficient_attention.attention_flops(64, None) == 4 * heads * 64 * 64 * d_head
    assert efficient_attention.attention_flops(64, 8) == 4 * heads * 64 * 3 * 8 * d_head


@pytest.mark.slow
def test_wall_clock_grows_faster_for_full_attention():
    """About 6 s; wall-clock timings on a shared CPU, so only in the slow run and with a loose margin."""
    m = efficient_attention.cost(32).metrics
    assert m["time_slope_full"] > m["time_slope_sliding"] + 0.3
