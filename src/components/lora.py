"""LoRA: Low-Rank Adaptation of a pretrained linear layer (Hu et al. 2021, "LoRA: Low-Rank Adaptation of
Large Language Models", Sec. 4.1).

The pretrained weight W (d_out, d_in) is frozen; its change is learned as the product of two small
matrices, W + dW = W + (alpha / r) B A with A (r, d_in) and B (d_out, r), r << d_in (Eq. 3):

    h = W x + b + (alpha / r) B A x

B starts at zero, so the adapted model starts as the pretrained one; A starts as ``nn.Linear``'s own
weights (kaiming-uniform, as the authors' ``loralib``). Scaling by alpha / r keeps the update's size
from depending on r, so alpha need not be retuned when r changes (Sec. 4.1).

The attention projections here are one fused (C + 2 G D, C) matrix whose rows are W^Q, W^K, W^V
(``src/components/attention.py``), so an adapter covers a block of rows, named by its target: "q", "k"
and "v" are the blocks of ``in_proj``, "o" the whole of ``out_proj`` (the paper adapts W^q and W^v,
Sec. 7.1). ``projection_rows`` is the one place that knows the layout. After training the update is
added into W (``merge_lora_state``): the merged model is an ordinary one, as fast as the pretrained one
(Sec. 4.2, "No Additional Inference Latency").
"""

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

TARGETS = ("q", "k", "v", "o")


def projection_rows(target: str, out_features: int, in_features: int) -> tuple[int, int]:
    """The rows [start, stop) of a projection that ``target`` adapts.

    ``in_proj`` is (C + 2 G D, C): W^Q is its first C rows, then W^K and W^V of G D rows each
    (grouped-query attention, ``MultiHeadAttention``); ``out_proj`` ("o") is adapted whole.
    """
    if target not in TARGETS:
        raise ValueError(f"a LoRA target is one of {TARGETS}, got {target!r}")
    if target == "o":
        return 0, out_features
    kv = (out_features - in_features) // 2
    return {"q": (0, in_features), "k": (in_features, in_features + kv),
            "v": (in_features + kv, out_features)}[target]


class LoRALinear(nn.Linear):
    """A frozen ``nn.Linear`` plus low-rank updates of some of its row blocks: W x + b + (alpha/r) B A x.

    The pretrained ``weight`` and ``bias`` keep their names, so a checkpoint holds them as before and
    the adapters beside them (``lora_A.q``, ``lora_B.q``, ...).

    Args:
        base: the pretrained layer; its parameters are taken over, frozen.
        targets: the row blocks to adapt, names as in ``projection_rows``.
        rank: r, the rank of each update.
        alpha: the update is scaled by alpha / r.
        dropout: dropout on the adapter's input (the authors' ``lora_dropout``); 0 = none.
    """

    def __init__(self, base: nn.Linear, targets: tuple[str, ...], rank: int, alpha: float,
                 dropout: float = 0.0) -> None:
        super().__init__(base.in_features, base.out_features, bias=base.bias is not None, device="meta")
        if rank < 1:
            raise ValueError(f"LoRA rank must be >= 1, got {rank}")
        self.weight, self.bias = base.weight, base.bias
        self.weight.requires_grad_(False)
        if self.bias is not None:
            self.bias.requires_grad_(False)
        self.rank, self.scaling = rank, alpha / rank
        self.blocks = {t: projection_rows(t, self.out_features, self.in_features) for t in targets}
        self.blocks = dict(sorted(self.blocks.items(), key=lambda item: item[1]))
        like = {"device": base.weight.device, "dtype": base.weight.dtype}
        self.lora_A = nn.ParameterDict({t: nn.Parameter(torch.empty(rank, self.in_features, **like))
                                        for t in self.blocks})
        self.lora_B = nn.ParameterDict({t: nn.Parameter(torch.zeros(stop - start, rank, **like))
                                        for t, (start, stop) in self.blocks.items()})
        for a in self.lora_A.values():
            nn.init.kaiming_uniform_(a, a=math.sqrt(5))  # nn.Linear's init, as loralib
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        """Shape: (..., d_in) -> (..., d_out)."""
        return self.rows(x, 0, self.out_features)

    def rows(self, x: Tensor, start: int, stop: int) -> Tensor:
        """Output rows [start, stop) only: cross-attention projects Q and K, V from different inputs.

        Shape: (..., d_in) -> (..., stop - start).
        """
        bias = None if self.bias is None else self.bias[start:stop]
        out = F.linear(x, self.weight[start:stop], bias)  # W x + b
        x = self.dropout(x)
        pieces, row = [], start  # out's columns, cut at the adapted blocks' edges
        for target, (first, last) in self.blocks.items():
            first, last = max(first, start), min(last, stop)
            if first >= last:
                continue
            offset = self.blocks[target][0]
            b = self.lora_B[target][first - offset:last - offset]
            update = F.linear(F.linear(x, self.lora_A[target]), b)  # B (A x): through an r-wide bottleneck
            pieces += [out[..., row - start:first - start], out[..., first - start:last - start]
                       + self.scaling * update]
            row = last
        return torch.cat([*pieces, out[..., row - start:]], dim=-1)


def project_rows(layer: nn.Linear, x: Tensor, start: int, stop: int | None = None) -> Tensor:
    """Rows [start, stop) of ``layer`` applied to ``x``, its adapters included when it has any.

    Shape: (..., d_in) -> (..., stop - start).
    """
    stop = layer.out_features if stop is None else stop
    if isinstance(layer, LoRALinear):
        return layer.rows(x, start, stop)
    return F.linear(x, layer.weight[start:stop], None if layer.bias is None else layer.bias[start:stop])


def merge_lora_state(state: dict[str, Tensor], alpha: float, rank: int) -> dict[str, Tensor]:
    """A LoRA model's state dict with every adapter added into its weight: W + (alpha / r) B A on the
    target's rows (``projection_rows``), and the adapters dropped. The result loads into the plain model.
    """
    merged = {k: v for k, v in state.items() if ".lora_A." not in k and ".lora_B." not in k}
    for key in state:
        if ".lora_A." not in key:
            continue
        prefix, target = key.split(".lora_A.")
        weight = merged[f"{prefix}.weight"].clone()
        start, stop = projection_rows(target, *weight.shape)
        update = state[f"{prefix}.lora_B.{target}"].float() @ state[key].float()
        weight[start:stop] += (alpha / rank * update).to(weight.dtype)
        merged[f"{prefix}.weight"] = weight
    return merged
