"""The training-dynamics lesson's claims: warm-up rescues a high learning rate; smoothing raises the loss floor."""


def test_without_warmup_a_high_learning_rate_trains_worse(lesson):
    m = lesson("training_dynamics")["learning-rate warm-up"].metrics
    assert m["loss_no_warmup"] > 1.5 * m["loss_warmup"]


def test_label_smoothing_raises_the_loss_floor_and_lowers_confidence(lesson):
    m = lesson("training_dynamics")["label smoothing"].metrics
    assert m["loss_eps_0.1"] > m["loss_eps_0"]
    assert m["loss_eps_0.1"] >= m["floor_eps_0.1"] > 0.4
    assert m["confidence_eps_0.1"] < m["confidence_eps_0"]
