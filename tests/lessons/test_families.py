"""The model-family lessons' claims: [CLS] finds the deciding word, the LM is causal and cached decoding
agrees, ViT patches are a matmul and rollout finds the shape, the sliding window is exact and cheaper."""

from src.lessons import decoder_only


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


def test_sliding_window_equals_the_dense_band_and_grows_slower(lesson):
    results = lesson("efficient_attention")
    m = results["the band"].metrics
    assert m["band_error"] < 1e-5 and m["weight_outside_band"] == 0.0 and m["difference_from_full"] > 1e-2
    c = results["cost against length"].metrics
    assert c["slope_full"] > c["slope_sliding"] + 0.3  # timings on a shared CPU: a loose margin
