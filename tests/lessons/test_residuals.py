"""The residuals lesson's claim: pre-norm keeps gradient norms flatter across depth than post-norm."""


def test_pre_norm_gradient_norms_are_flatter_across_depth(lesson):
    m = lesson("residuals")["post-norm against pre-norm"].metrics
    assert m["spread_pre_norm"] < 0.5 * m["spread_post_norm"]
    assert m["decoder_spread_post_norm"] > 4.0  # post-norm: the top decoder layers get most of the gradient
    assert m["decoder_spread_pre_norm"] < 2.0
