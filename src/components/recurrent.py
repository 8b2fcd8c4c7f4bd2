"""The Elman RNN, LSTM and GRU written from their equations, with PyTorch's parameter layout.

Elman RNN (Elman 1990, "Finding Structure in Time"; the recurrence the LSTM was invented to fix):
    (E1) h_t = tanh(W x_t + U h_{t-1} + b)

Its gradient through time is a product of tanh'(.) U factors, one per step, so it shrinks (or
grows) geometrically with distance (Bengio et al. 1994; Hochreiter & Schmidhuber 1997, Sec. 3):
the LSTM's additive cell (L5) and the GRU's interpolation (G4) give it a path that does not.

LSTM (Hochreiter & Schmidhuber 1997, with the forget gate of Gers et al. 2000):
    (L1) f_t = σ(W_f x_t + U_f h_{t-1} + b_f)       forget gate
    (L2) i_t = σ(W_i x_t + U_i h_{t-1} + b_i)       input gate
    (L3) o_t = σ(W_o x_t + U_o h_{t-1} + b_o)       output gate
    (L4) c̃_t = tanh(W_c x_t + U_c h_{t-1} + b_c)    candidate cell
    (L5) c_t = f_t ⊙ c_{t-1} + i_t ⊙ c̃_t
    (L6) h_t = o_t ⊙ tanh(c_t)

GRU (Cho et al. 2014, Sec. 2.3):
    (G1) z_t = σ(W_z x_t + U_z h_{t-1} + b_z)       update gate
    (G2) r_t = σ(W_r x_t + U_r h_{t-1} + b_r)       reset gate
    (G3) h̃_t = tanh(W_h x_t + b_ih + r_t ⊙ (U_h h_{t-1} + b_hh))
    (G4) h_t = (1 - z_t) ⊙ h̃_t + z_t ⊙ h_{t-1}

(G3) places the reset gate where ``torch.nn.GRU`` (its documented equations) and cuDNN
(``CUDNN_GRU``) place it, after U_h h_{t-1}; the paper has U_h (r_t ⊙ h_{t-1}). This placement
lets U h_{t-1} of all three gates be one matmul before r_t is known. The two are different
models: weights trained with one placement do not transfer to the other.

Parameters follow PyTorch so weights copy 1:1: ``weight_ih`` stacks the W of every gate, (4H, I)
in the order i, f, g (= c̃), o for LSTM and (3H, I) in the order r, z, n (= h̃) for GRU, and is
the single (H, I) W of the Elman RNN;
``weight_hh`` stacks the U; each gate's b is ``bias_ih + bias_hh``, two biases as in cuDNN.

Sequences are right-padded and described by ``lengths`` (B,) or by a boolean ``mask`` (B, T),
True = real token (the project's True = may attend convention). A padded step carries the state
unchanged and outputs zeros, so each final state is the state at that sequence's last real token.
The backward direction runs the same rule from t = T-1 down to 0: its state stays at the initial
one through the padding and so starts at each sequence's own last real token.

Letters: B batch, T length, I input size, H hidden size (not heads, here), L layers, D directions.
"""

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

State = tuple[Tensor, ...]  # (h, c) for LSTM, (h,) for GRU and the Elman RNN
Step = Callable[[Tensor, State, Tensor, Tensor], State]
_WEIGHT_NAMES = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")  # + "_l{layer}" [+ "_reverse"] in nn.LSTM


def elman_step(projected: Tensor, h: Tensor, weight_hh: Tensor, bias_hh: Tensor) -> Tensor:
    """One Elman RNN time step, Eq. (E1), given its input half W x_t + b_ih.

    Shape:
        projected: (B, H); h: h_{t-1}, (B, H); weight_hh: U, (H, H). output: h_t, (B, H).
    """
    return (projected + F.linear(h, weight_hh, bias_hh)).tanh()  # (E1), b = b_ih + b_hh


def lstm_step(
    projected: Tensor, state: tuple[Tensor, Tensor], weight_hh: Tensor, bias_hh: Tensor
) -> tuple[Tensor, Tensor]:
    """One LSTM time step, Eqs. (L1)-(L6), given the input half W x_t + b_ih of every gate.

    W x_t does not depend on h_{t-1}, so a layer computes it for all t in one matmul before the
    loop over time; only U h_{t-1} is left inside the loop.

    Shape:
        projected: (B, 4H); state: (h_{t-1}, c_{t-1}), (B, H) each; weight_hh: (4H, H).
        output: (h_t, c_t), (B, H) each.
    """
    h, c = state
    gates = projected + F.linear(h, weight_hh, bias_hh)
    i, f, g, o = gates.chunk(4, dim=-1)  # (B, 4H) -> 4 x (B, H), PyTorch's gate order
    forget, input_, output = f.sigmoid(), i.sigmoid(), o.sigmoid()  # (L1), (L2), (L3)
    candidate = g.tanh()  # (L4)
    c = forget * c + input_ * candidate  # (L5)
    return output * c.tanh(), c  # (L6)


def gru_step(projected: Tensor, h: Tensor, weight_hh: Tensor, bias_hh: Tensor) -> Tensor:
    """One GRU time step, Eqs. (G1)-(G4), given the input half W x_t + b_ih of every gate.

    Shape:
        projected: (B, 3H); h: h_{t-1}, (B, H); weight_hh: (3H, H). output: h_t, (B, H).
    """
    x_r, x_z, x_n = projected.chunk(3, dim=-1)  # (B, 3H) -> 3 x (B, H), PyTorch's gate order
    h_r, h_z, h_n = F.linear(h, weight_hh, bias_hh).chunk(3, dim=-1)
    update = (x_z + h_z).sigmoid()  # (G1)
    reset = (x_r + h_r).sigmoid()  # (G2)
    candidate = (x_n + reset * h_n).tanh()  # (G3), reset after U_h h_{t-1} as in PyTorch
    return (1 - update) * candidate + update * h  # (G4)


class RNNCell(nn.Module):
    """One Elman RNN time step, Eq. (E1), with the parameters and init of ``torch.nn.RNNCell`` (tanh).

    Args:
        input_size: I.
        hidden_size: H.

    Shape:
        x: (B, I); h: (B, H) or None for zeros. output: h_t, (B, H).
    """

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__()
        self.input_size, self.hidden_size = input_size, hidden_size
        _add_gate_parameters(self, 1)

    def forward(self, x: Tensor, h: Tensor | None = None) -> Tensor:
        (h,) = _cell_state(self, x, None if h is None else (h,), 1)
        return elman_step(F.linear(x, self.weight_ih, self.bias_ih), h, self.weight_hh, self.bias_hh)


class LSTMCell(nn.Module):
    """One LSTM time step, Eqs. (L1)-(L6), with the parameters and init of ``torch.nn.LSTMCell``.

    Args:
        input_size: I.
        hidden_size: H.

    Shape:
        x: (B, I); state: (h, c), (B, H) each, or None for zeros. output: (h_t, c_t), (B, H) each.
    """

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__()
        self.input_size, self.hidden_size = input_size, hidden_size
        _add_gate_parameters(self, 4)

    def forward(self, x: Tensor, state: tuple[Tensor, Tensor] | None = None) -> tuple[Tensor, Tensor]:
        h, c = _cell_state(self, x, state, 2)
        return lstm_step(F.linear(x, self.weight_ih, self.bias_ih), (h, c), self.weight_hh, self.bias_hh)


class GRUCell(nn.Module):
    """One GRU time step, Eqs. (G1)-(G4), with the parameters and init of ``torch.nn.GRUCell``.

    Args:
        input_size: I.
        hidden_size: H.

    Shape:
        x: (B, I); h: (B, H) or None for zeros. output: h_t, (B, H).
    """

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__()
        self.input_size, self.hidden_size = input_size, hidden_size
        _add_gate_parameters(self, 3)

    def forward(self, x: Tensor, h: Tensor | None = None) -> Tensor:
        (h,) = _cell_state(self, x, None if h is None else (h,), 1)
        return gru_step(F.linear(x, self.weight_ih, self.bias_ih), h, self.weight_hh, self.bias_hh)


def _add_gate_parameters(cell: nn.Module, gates: int) -> None:
    """PyTorch's layout and init: every parameter uniform in ±1/sqrt(H)."""
    size, hidden = cell.input_size, cell.hidden_size
    cell.weight_ih = nn.Parameter(torch.empty(gates * hidden, size))
    cell.weight_hh = nn.Parameter(torch.empty(gates * hidden, hidden))
    cell.bias_ih = nn.Parameter(torch.empty(gates * hidden))
    cell.bias_hh = nn.Parameter(torch.empty(gates * hidden))
    for parameter in cell.parameters():
        nn.init.uniform_(parameter, -1 / math.sqrt(hidden), 1 / math.sqrt(hidden))


def _cell_state(cell: nn.Module, x: Tensor, state: State | None, count: int) -> State:
    name = type(cell).__name__
    if x.dim() != 2 or x.size(1) != cell.input_size:
        raise ValueError(f"{name} expects x of shape (B, I={cell.input_size}), got {tuple(x.shape)}")
    expected = (x.size(0), cell.hidden_size)
    if state is None:
        return tuple(x.new_zeros(expected) for _ in range(count))
    for s in state:
        if tuple(s.shape) != expected:
            raise ValueError(f"{name} state must have shape (B, H) = {expected}, got {tuple(s.shape)}")
    return state


class LSTM(nn.Module):
    """A stack of LSTM layers over padded batches, Eqs. (L1)-(L6), with ``torch.nn.LSTM``'s weights.

    The weights live in one ``torch.nn.LSTM``, ``self.rnn`` (batch_first), so its parameter names,
    layout and init are PyTorch's and a torch checkpoint loads with ``self.rnn.load_state_dict``.
    ``fast`` only chooses the kernel over those same weights:

    - ``fast=False`` (default) runs the equations in ``lstm_step``, one Python iteration per time
      step and direction. It is the readable reference, and slow: T small matmuls in sequence,
      each with Python and autograd overhead, and a backward pass of the same length.
    - ``fast=True`` packs the batch (``pack_padded_sequence``) and calls ``self.rnn``: PyTorch's
      kernel, cuDNN on GPU. Results agree to float rounding. On CPU (torch 2.13, B=32, T=256,
      I=H=128, forward + backward) the LSTM kernel measured 6-9x faster than the equations;
      the GRU kernel was no faster than the equations there.

    Between layers, dropout is applied to the outputs of every layer but the last, as in PyTorch.

    Args:
        input_size: I.
        hidden_size: H.
        num_layers: L, layers stacked; layer l > 0 reads the (B, T, D*H) output of layer l-1.
        bidirectional: add a backward direction (D = 2) whose outputs are concatenated.
        dropout: dropout probability between layers (training only).
        fast: use PyTorch's kernel instead of the equations.
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bidirectional: bool = False,
        dropout: float = 0.0,
        fast: bool = False,
    ) -> None:
        super().__init__()
        self.input_size, self.hidden_size, self.fast = input_size, hidden_size, fast
        self.rnn = nn.LSTM(
            input_size,
            hidden_size,
            num_layers,
            batch_first=True,
            dropout=dropout,
            bidirectional=bidirectional,
        )

    def forward(
        self,
        x: Tensor,
        lengths: Tensor | None = None,
        *,
        mask: Tensor | None = None,
        state: tuple[Tensor, Tensor] | None = None,
    ) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        """Run every layer and direction over right-padded sequences.

        Args:
            x: input sequences, batch first.
            lengths: number of real tokens of each sequence, 1 <= lengths[b] <= T; None = all T.
            mask: alternative to ``lengths``: boolean, True = real token, right-padded.
            state: initial (h_0, c_0); None for zeros.

        Shape:
            x: (B, T, I); lengths: (B,); mask: (B, T); state: (L*D, B, H) each.
            output: (B, T, D*H), zero at padded positions; final (h, c): (L*D, B, H) each.
        """
        lengths = _check_lengths(self, x, lengths, mask)
        h_0, c_0 = _initial_state(self.rnn, x, state, 2)
        if self.fast:
            return _packed_forward(self.rnn, x, lengths, (h_0, c_0))
        outputs, (h, c) = _stacked_scan(self.rnn, lstm_step, x, lengths, (h_0, c_0), self.training)
        return outputs, (h, c)


def _gru_step(projected: Tensor, state: State, weight_hh: Tensor, bias_hh: Tensor) -> State:
    return (gru_step(projected, state[0], weight_hh, bias_hh),)


class GRU(nn.Module):
    """A stack of GRU layers over padded batches, Eqs. (G1)-(G4), with ``torch.nn.GRU``'s weights.

    Built like ``LSTM`` (see its docstring for ``fast`` and the weights in ``self.rnn``), with one
    state h instead of (h, c).

    Args:
        input_size: I.
        hidden_size: H.
        num_layers: L, layers stacked; layer l > 0 reads the (B, T, D*H) output of layer l-1.
        bidirectional: add a backward direction (D = 2) whose outputs are concatenated.
        dropout: dropout probability between layers (training only).
        fast: use PyTorch's kernel instead of the equations.
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bidirectional: bool = False,
        dropout: float = 0.0,
        fast: bool = False,
    ) -> None:
        super().__init__()
        self.input_size, self.hidden_size, self.fast = input_size, hidden_size, fast
        self.rnn = nn.GRU(
            input_size,
            hidden_size,
            num_layers,
            batch_first=True,
            dropout=dropout,
            bidirectional=bidirectional,
        )

    def forward(
        self, x: Tensor, lengths: Tensor | None = None, *, mask: Tensor | None = None,
                state: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        """See ``one_state_forward``."""
        return one_state_forward(self, _gru_step, x, lengths, mask, state)


def _elman_step(projected: Tensor, state: State, weight_hh: Tensor, bias_hh: Tensor) -> State:
    return (elman_step(projected, state[0], weight_hh, bias_hh),)


class RNN(nn.Module):
    """A stack of Elman RNN layers over padded batches, Eq. (E1), with ``torch.nn.RNN``'s weights (tanh).

    Built like ``LSTM`` (see its docstring for ``fast`` and the weights in ``self.rnn``), with one
    state h and no gates.

    Args:
        input_size: I.
        hidden_size: H.
        num_layers: L, layers stacked; layer l > 0 reads the (B, T, D*H) output of layer l-1.
        bidirectional: add a backward direction (D = 2) whose outputs are concatenated.
        dropout: dropout probability between layers (training only).
        fast: use PyTorch's kernel instead of the equation.
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bidirectional: bool = False,
        dropout: float = 0.0,
        fast: bool = False,
    ) -> None:
        super().__init__()
        self.input_size, self.hidden_size, self.fast = input_size, hidden_size, fast
        self.rnn = nn.RNN(
            input_size,
            hidden_size,
            num_layers,
            nonlinearity="tanh",
            batch_first=True,
            dropout=dropout,
            bidirectional=bidirectional,
        )

    def forward(
        self, x: Tensor, lengths: Tensor | None = None, *, mask: Tensor | None = None,
                state: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        """See ``one_state_forward``."""
        return one_state_forward(self, _elman_step, x, lengths, mask, state)


def one_state_forward(
    stack: "GRU | RNN", step: Step, x: Tensor, lengths: Tensor | None, mask: Tensor | None,
                      state: Tensor | None
) -> tuple[Tensor, Tensor]:
    """``GRU.forward`` and ``RNN.forward``: every layer and direction over right-padded sequences.

    Args:
        stack: the module, whose weights are ``stack.rnn``'s.
        step: one time step of its equations on the input projection and the state (h,).
        x: input sequences, batch first.
        lengths: number of real tokens of each sequence, 1 <= lengths[b] <= T; None = all T.
        mask: alternative to ``lengths``: boolean, True = real token, right-padded.
        state: initial h_0; None for zeros.

    Shape:
        x: (B, T, I); lengths: (B,); mask: (B, T); state: (L*D, B, H).
        output: (B, T, D*H), zero at padded positions; final h: (L*D, B, H).
    """
    lengths = _check_lengths(stack, x, lengths, mask)
    (h_0,) = _initial_state(stack.rnn, x, None if state is None else (state,), 1)
    if stack.fast:
        return _packed_forward(stack.rnn, x, lengths, h_0)
    outputs, (h,) = _stacked_scan(stack.rnn, step, x, lengths, (h_0,), stack.training)
    return outputs, h


def _stacked_scan(
    rnn: nn.RNNBase, step: Step, x: Tensor, lengths: Tensor, state: State, training: bool
) -> tuple[Tensor, State]:
    """The equations path: every layer and direction, reading the weights of ``rnn`` by name."""
    directions = 2 if rnn.bidirectional else 1
    real = torch.arange(x.size(1), device=x.device) < lengths.to(x.device)[:, None]  # (B, T)
    finals: list[State] = []
    for layer in range(rnn.num_layers):
        if layer > 0:
            x = F.dropout(x, rnn.dropout, training)
        outputs = []
        for direction in range(directions):
            suffix = f"_l{layer}" + ("_reverse" if direction == 1 else "")
            w_ih, w_hh, b_ih, b_hh = (getattr(rnn, name + suffix) for name in _WEIGHT_NAMES)
            initial = tuple(s[layer * directions + direction] for s in state)  # (L*D, B, H) -> (B, H)
            out, final = _scan(step, F.linear(x, w_ih, b_ih), initial, real, w_hh, b_hh, direction == 1)
            outputs.append(out)
            finals.append(final)
        x = torch.cat(outputs, dim=-1)  # D x (B, T, H) -> (B, T, D*H)
    return x, tuple(torch.stack(s) for s in zip(*finals, strict=True))  # L*D x (B, H) -> (L*D, B, H)


def _scan(
    step: Step,
    projected: Tensor,
    state: State,
    real: Tensor,
    weight_hh: Tensor,
    bias_hh: Tensor,
    reverse: bool,
) -> tuple[Tensor, State]:
    """One direction of one layer over time; padded steps keep the state and output zeros.

    Shape:
        projected: (B, T, G*H), W x_t + b_ih for every t; state: (B, H) each; real: (B, T).
        output: (B, T, H); final state: (B, H) each.
    """
    times = range(projected.size(1))
    outputs = []
    for t in reversed(times) if reverse else times:
        keep = real[:, t, None]  # (B,) -> (B, 1)
        new = step(projected[:, t], state, weight_hh, bias_hh)
        state = tuple(torch.where(keep, n, s) for n, s in zip(new, state, strict=True))
        outputs.append(new[0].masked_fill(~keep, 0.0))
    if reverse:
        outputs.reverse()
    return torch.stack(outputs, dim=1), state  # T x (B, H) -> (B, T, H)


def _packed_forward(
    rnn: nn.RNNBase, x: Tensor, lengths: Tensor, state: Tensor | State
) -> tuple[Tensor, Tensor | State]:
    """The fast path: PyTorch's kernel on the packed batch; outputs re-padded with zeros to T."""
    packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
    outputs, final = rnn(packed, state)
    outputs, _ = pad_packed_sequence(outputs, batch_first=True, total_length=x.size(1))
    return outputs, final


def _check_lengths(layer: nn.Module, x: Tensor, lengths: Tensor | None, mask: Tensor | None) -> Tensor:
    """Validate the input and return the lengths (B,), from ``lengths``, ``mask`` or T."""
    name = type(layer).__name__
    if x.dim() != 3 or x.size(-1) != layer.input_size:
        raise ValueError(f"{name} expects x of shape (B, T, I={layer.input_size}), got {tuple(x.shape)}")
    batch, time = x.shape[:2]
    if mask is not None:
        if lengths is not None:
            raise ValueError(f"{name} takes lengths or mask, not both")
        lengths = _mask_lengths(mask, batch, time)
    if lengths is None:
        return torch.full((batch,), time, dtype=torch.long)
    if tuple(lengths.shape) != (batch,) or lengths.dtype.is_floating_point or lengths.dtype == torch.bool:
        raise ValueError(
            f"lengths must be an integer tensor of shape (B,) = ({batch},), "
            f"got shape {tuple(lengths.shape)} and dtype {lengths.dtype}"
        )
    if batch > 0 and (lengths.min() < 1 or lengths.max() > time):
        raise ValueError(
            f"lengths must lie in [1, T={time}], got min {int(lengths.min())} and max {int(lengths.max())}"
        )
    return lengths


def _mask_lengths(mask: Tensor, batch: int, time: int) -> Tensor:
    if mask.dtype != torch.bool or tuple(mask.shape) != (batch, time):
        raise ValueError(
            f"mask must be torch.bool of shape (B, T) = {(batch, time)}, "
            f"got dtype {mask.dtype} and shape {tuple(mask.shape)}"
        )
    lengths = mask.sum(dim=1)
    prefix = torch.arange(time, device=mask.device) < lengths[:, None]  # (B, T)
    if not torch.equal(mask, prefix):
        rows = (mask != prefix).any(dim=1).nonzero().flatten().tolist()
        raise ValueError(f"mask must be right-padded (True, then only False), rows {rows} are not")
    return lengths


def _initial_state(rnn: nn.RNNBase, x: Tensor, state: State | None, count: int) -> State:
    directions = 2 if rnn.bidirectional else 1
    expected = (rnn.num_layers * directions, x.size(0), rnn.hidden_size)
    if state is None:
        return tuple(x.new_zeros(expected) for _ in range(count))
    for s in state:
        if tuple(s.shape) != expected:
            raise ValueError(f"initial state must have shape (L*D, B, H) = {expected}, got {tuple(s.shape)}")
    return state
