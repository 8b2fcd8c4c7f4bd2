import math

import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from src.components.recurrent import GRU, LSTM, RNN, GRUCell, LSTMCell, RNNCell

B, T, I, H = 4, 7, 3, 5
LENGTHS = torch.tensor([5, 2, 7, 1])  # unsorted, one full-length, one of a single token
LAYERS = {"lstm": (LSTM, nn.LSTM), "gru": (GRU, nn.GRU), "rnn": (RNN, nn.RNN)}
CELLS = {"lstm": (LSTMCell, nn.LSTMCell), "gru": (GRUCell, nn.GRUCell), "rnn": (RNNCell, nn.RNNCell)}


def _layer(kind: str, **kwargs) -> nn.Module:
    torch.manual_seed(0)
    return LAYERS[kind][0](I, H, **kwargs)


def _states(final) -> tuple[torch.Tensor, ...]:
    return final if isinstance(final, tuple) else (final,)


def _loss(outputs: torch.Tensor, final) -> torch.Tensor:
    """A loss that weighs every output and final-state entry differently, so no gradient cancels."""
    generator = torch.Generator().manual_seed(1)
    total = (outputs * torch.randn(outputs.shape, generator=generator)).sum()
    for s in _states(final):
        total = total + (s * torch.randn(s.shape, generator=generator)).sum()
    return total


def _outputs_and_gradients(module: nn.Module, x: torch.Tensor, run):
    """Forward through ``run``, then gradients of ``_loss`` w.r.t. every parameter and the input."""
    x = x.clone().requires_grad_()
    outputs, final = run(module, x)
    parameters = [p for _, p in sorted(module.named_parameters())]
    grads = torch.autograd.grad(_loss(outputs, final), [*parameters, x])
    return outputs, _states(final), grads


def _torch_packed(rnn: nn.Module, x: torch.Tensor):
    packed = pack_padded_sequence(x, LENGTHS, batch_first=True, enforce_sorted=False)
    outputs, final = rnn(packed)
    return pad_packed_sequence(outputs, batch_first=True, total_length=x.size(1))[0], final


def _assert_all_close(actual, expected) -> None:
    for a, e in zip(actual, expected, strict=True):
        torch.testing.assert_close(a, e, atol=1e-5, rtol=0)


@pytest.mark.parametrize("kind", ["lstm", "gru", "rnn"])
def test_cell_matches_torch_cell(kind):
    ours_cls, theirs_cls = CELLS[kind]
    torch.manual_seed(0)
    ours, theirs = ours_cls(I, H), theirs_cls(I, H)
    theirs.load_state_dict(ours.state_dict())  # same names and shapes: a 1:1 copy
    x = torch.randn(B, I, requires_grad=True)
    state = tuple(torch.randn(B, H) for _ in range(2 if kind == "lstm" else 1))
    hx = state if kind == "lstm" else state[0]
    results = []
    for module in (ours, theirs):
        out = _states(module(x, hx))
        loss = sum((o * torch.arange(o.numel()).view(o.shape).cos()).sum() for o in out)
        results.append((out, torch.autograd.grad(loss, [*module.parameters(), x])))
    for a, e in zip(results[0], results[1], strict=True):
        _assert_all_close(a, e)


@pytest.mark.parametrize("kind", ["lstm", "gru", "rnn"])
def test_cell_init_is_uniform_within_one_over_sqrt_hidden(kind):
    torch.manual_seed(0)
    cell = CELLS[kind][0](16, 64)
    gates = {"lstm": 4, "gru": 3, "rnn": 1}[kind]
    assert cell.weight_ih.shape == (gates * 64, 16) and cell.weight_hh.shape == (gates * 64, 64)
    assert cell.bias_ih.shape == cell.bias_hh.shape == (gates * 64,)
    weights = torch.cat([p.flatten() for p in cell.parameters()])
    assert 0.95 / math.sqrt(64) < weights.abs().max() <= 1 / math.sqrt(64)
    assert weights.std().item() == pytest.approx(1 / math.sqrt(3 * 64), rel=0.05)  # std of U(-a, a)


@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("num_layers", [1, 2])
@pytest.mark.parametrize("kind", ["lstm", "gru", "rnn"])
def test_equations_match_torch_on_packed_sequences(kind, num_layers, bidirectional):
    ours = _layer(kind, num_layers=num_layers, bidirectional=bidirectional)
    theirs = LAYERS[kind][1](I, H, num_layers, batch_first=True, bidirectional=bidirectional)
    theirs.load_state_dict(ours.rnn.state_dict())
    x = torch.randn(B, T, I)
    expected = _outputs_and_gradients(theirs, x, _torch_packed)
    actual = _outputs_and_gradients(ours, x, lambda m, x: m(x, LENGTHS))
    assert actual[0].shape == (B, T, (1 + bidirectional) * H)
    for a, e in zip(actual, expected, strict=True):
        _assert_all_close(a if isinstance(a, tuple) else [a], e if isinstance(e, tuple) else [e])


def test_elman_layer_is_equation_e1_written_out():
    """h_t = tanh(W x_t + U h_{t-1} + b) step by step; padded rows keep h and output zeros."""
    rnn = _layer("rnn")
    w, u = rnn.rnn.weight_ih_l0, rnn.rnn.weight_hh_l0
    b = rnn.rnn.bias_ih_l0 + rnn.rnn.bias_hh_l0
    x = torch.randn(B, T, I)
    outputs, final = rnn(x, LENGTHS)
    for row, length in enumerate(LENGTHS.tolist()):
        h = torch.zeros(H)
        for t in range(length):
            h = torch.tanh(w @ x[row, t] + u @ h + b)
            torch.testing.assert_close(outputs[row, t], h, atol=1e-6, rtol=0)
        torch.testing.assert_close(final[0, row], h, atol=1e-6, rtol=0)
    real = torch.arange(T) < LENGTHS[:, None]  # (B, T)
    assert outputs[~real].abs().max() == 0


@pytest.mark.parametrize("kind", ["lstm", "gru", "rnn"])
def test_initial_state_matches_torch(kind):
    ours = _layer(kind, num_layers=2, bidirectional=True)
    theirs = LAYERS[kind][1](I, H, 2, batch_first=True, bidirectional=True)
    theirs.load_state_dict(ours.rnn.state_dict())
    x, states = torch.randn(B, T, I), tuple(torch.randn(4, B, H) for _ in range(2))
    state = states if kind == "lstm" else states[0]
    outputs, final = ours(x, LENGTHS, state=state)
    packed = pack_padded_sequence(x, LENGTHS, batch_first=True, enforce_sorted=False)
    expected, expected_final = theirs(packed, state)
    torch.testing.assert_close(outputs, pad_packed_sequence(expected, True, total_length=T)[0])
    _assert_all_close(_states(final), _states(expected_final))


@pytest.mark.parametrize("kind", ["lstm", "gru", "rnn"])
def test_extra_padding_changes_nothing_and_padded_outputs_are_zero(kind):
    model = _layer(kind, num_layers=2, bidirectional=True)
    x = torch.randn(B, T, I)
    longer = torch.cat([x, torch.randn(B, 4, I)], dim=1)  # garbage, not zeros, in the new padding
    real = torch.arange(T) < LENGTHS[:, None]  # (B, T)
    outputs, final = model(x, LENGTHS)
    longer_outputs, longer_final = model(longer, LENGTHS)
    torch.testing.assert_close(longer_outputs[:, :T], outputs, atol=1e-6, rtol=0)
    _assert_all_close(_states(longer_final), _states(final))
    assert outputs[~real].abs().max() == 0 and longer_outputs[:, T:].abs().max() == 0


@pytest.mark.parametrize("kind", ["lstm", "gru", "rnn"])
def test_each_sequence_of_a_batch_equals_running_it_alone(kind):
    """The backward direction starts at each sequence's own last real token, not at T-1."""
    model = _layer(kind, bidirectional=True)
    x = torch.randn(B, T, I)
    outputs, final = model(x, LENGTHS)
    for b, length in enumerate(LENGTHS.tolist()):
        alone, alone_final = model(x[b : b + 1, :length])
        torch.testing.assert_close(outputs[b, :length], alone[0], atol=1e-6, rtol=0)
        _assert_all_close([s[:, b] for s in _states(final)], [s[:, 0] for s in _states(alone_final)])


@pytest.mark.parametrize("kind", ["lstm", "gru", "rnn"])
def test_fast_path_equals_equations_path_on_the_same_parameters(kind):
    model = _layer(kind, num_layers=2, bidirectional=True)
    assert {n for n, _ in model.named_parameters()} == {f"rnn.{n}" for n, _ in model.rnn.named_parameters()}
    x = torch.randn(B, T, I)

    def run(fast: bool):
        model.fast = fast
        return lambda m, x: m(x, LENGTHS)

    slow, fast = _outputs_and_gradients(model, x, run(False)), _outputs_and_gradients(model, x, run(True))
    for a, e in zip(slow, fast, strict=True):
        _assert_all_close(a if isinstance(a, tuple) else [a], e if isinstance(e, tuple) else [e])


@pytest.mark.parametrize("fast", [False, True], ids=["equations", "fast"])
@pytest.mark.parametrize("kind", ["lstm", "gru", "rnn"])
def test_mask_is_the_same_as_lengths(kind, fast):
    model = _layer(kind, bidirectional=True, fast=fast)
    x = torch.randn(B, T, I)
    mask = torch.arange(T) < LENGTHS[:, None]  # (B, T), True = real token
    by_lengths, by_mask = model(x, LENGTHS), model(x, mask=mask)
    torch.testing.assert_close(by_mask[0], by_lengths[0])
    _assert_all_close(_states(by_mask[1]), _states(by_lengths[1]))


@pytest.mark.parametrize(
    ("x_shape", "kwargs", "message"),
    [
        ((T, I), {}, r"\(B, T, I=3\), got \(7, 3\)"),
        ((B, T, I + 1), {}, r"\(B, T, I=3\), got \(4, 7, 4\)"),
        ((B, T, I), {"lengths": torch.tensor([1, 2, 3])}, r"shape \(B,\) = \(4,\), got shape \(3,\)"),
        ((B, T, I), {"lengths": torch.ones(B, 1, dtype=torch.long)}, r"got shape \(4, 1\)"),
        ((B, T, I), {"lengths": torch.full((B,), 2.0)}, r"integer tensor .* dtype torch.float32"),
        ((B, T, I), {"lengths": torch.tensor([3, 0, 1, 2])}, r"\[1, T=7\], got min 0 and max 3"),
        ((B, T, I), {"lengths": torch.tensor([3, 8, 1, 2])}, r"\[1, T=7\], got min 1 and max 8"),
        ((B, T, I), {"mask": torch.ones(B, T + 1, dtype=torch.bool)}, r"\(B, T\) = \(4, 7\), .*\(4, 8\)"),
        ((B, T, I), {"mask": torch.ones(B, T)}, r"torch.bool .* got dtype torch.float32"),
        ((B, T, I), {"mask": torch.tensor([[True, False, True] + [False] * 4] * B)}, r"right-padded"),
        ((B, T, I), {"mask": torch.zeros(B, T, dtype=torch.bool)}, r"got min 0"),
        ((B, T, I), {"lengths": LENGTHS, "mask": torch.ones(B, T, dtype=torch.bool)}, "not both"),
        ((B, T, I), {"state": torch.zeros(1, B + 1, H)}, r"\(L\*D, B, H\) = \(2, 4, 5\), got \(1, 5, 5\)"),
    ],
)
@pytest.mark.parametrize("kind", ["lstm", "gru", "rnn"])
def test_bad_inputs_raise_value_errors_with_expected_and_actual(kind, x_shape, kwargs, message):
    model = _layer(kind, bidirectional=True)
    if "state" in kwargs and kind == "lstm":
        kwargs = {"state": (kwargs["state"], kwargs["state"])}
    with pytest.raises(ValueError, match=message):
        model(torch.randn(x_shape), **kwargs)


@pytest.mark.parametrize("kind", ["lstm", "gru", "rnn"])
def test_bad_cell_inputs_raise_value_errors(kind):
    cell = CELLS[kind][0](I, H)
    with pytest.raises(ValueError, match=r"\(B, I=3\), got \(4, 7, 3\)"):
        cell(torch.randn(B, T, I))
    with pytest.raises(ValueError, match=r"\(B, H\) = \(4, 5\), got \(4, 6\)"):
        bad = torch.zeros(B, H + 1)
        cell(torch.randn(B, I), (bad, bad) if kind == "lstm" else bad)
