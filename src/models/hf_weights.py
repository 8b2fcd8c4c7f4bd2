"""Hugging Face weights under this project's parameter names: BERT, GPT-2 and ViT (and Llama, ``llama.py``).

Each ``*_state_dict`` takes a Hugging Face state dict (as ``save_pretrained`` writes it, with or without
the base model's prefix: ``bert.``, ``transformer.``, ``vit.``) and returns the tensors under our names
and the Hugging Face names it used; what it did not use (an MLM head, a ViT pooler) is "ignored" in
``model.init_from``'s table (``src/training/init_from.py``). The parity tests (``tests/models/``) load
the same mappings: one mapping per family.

Layouts: our attention's ``in_proj`` is W^Q, W^K, W^V stacked by rows (``nn.MultiheadAttention``), where
BERT and ViT keep three ``nn.Linear`` and GPT-2 one ``Conv1D`` stored (in, out), transposed.
"""

from pathlib import Path

import torch
from torch import Tensor

Mapped = tuple[dict[str, Tensor], set[str]]  # our name -> tensor, the Hugging Face names used


def read_hf_weights(folder: str | Path) -> dict[str, Tensor]:
    """The tensors of a folder's ``model.safetensors`` (or ``pytorch_model.bin``), old LayerNorm names
    (``gamma``, ``beta``) read as today's (``weight``, ``bias``)."""
    folder = Path(folder)
    if (folder / "model.safetensors").is_file():
        from safetensors.torch import load_file

        state = load_file(str(folder / "model.safetensors"))
    else:
        state = torch.load(folder / "pytorch_model.bin", map_location="cpu", weights_only=True)
    renamed = {".gamma": ".weight", ".beta": ".bias"}
    return {next((name[: -len(old)] + new for old, new in renamed.items() if name.endswith(old)), name): value
            for name, value in state.items()}


def _strip(state: dict[str, Tensor], prefix: str) -> dict[str, Tensor]:
    """Names without the base model's prefix (a ``*For*`` model saves ``bert.embeddings...``, a base model
    ``embeddings...``); the heads (``classifier``, ``lm_head``, ``cls``) keep theirs."""
    return {name.removeprefix(prefix): value for name, value in state.items()}


def _take(state: dict[str, Tensor], used: set[str], name: str) -> Tensor:
    used.add(name)
    return state[name]


def bert_state_dict(hf_state: dict[str, Tensor]) -> Mapped:
    """``BertModel`` / ``BertForSequenceClassification`` / ``BertForMaskedLM`` -> ``EncoderClassifier`` or
    ``EncoderMaskedLM`` (``embedding_norm``, ``type_vocab_size``, post-norm). The pooler is our head's
    ``dense`` (dense + tanh on [CLS]), the classifier its ``out``, the masked-LM transform and bias the
    ``mlm_head``; any may be absent (a base model, or one pretrained without a pooler)."""
    state, used = _strip(hf_state, "bert."), set()
    ours = {"embeddings.src.weight": _take(state, used, "embeddings.word_embeddings.weight"),
            "embeddings.positional.table.weight": _take(state, used, "embeddings.position_embeddings.weight")}
    optional = {"embeddings.token_type_embeddings.weight": "embeddings.token_type.weight",
                "embeddings.LayerNorm.weight": "embeddings.norm.weight",
                "embeddings.LayerNorm.bias": "embeddings.norm.bias",
                "pooler.dense.weight": "head.dense.weight", "pooler.dense.bias": "head.dense.bias",
                "classifier.weight": "head.out.weight", "classifier.bias": "head.out.bias",
                # BertForMaskedLM's head (its decoder is the tied word embedding): our encoder_mlm's mlm_head
                "cls.predictions.transform.dense.weight": "mlm_head.dense.weight",
                "cls.predictions.transform.dense.bias": "mlm_head.dense.bias",
                "cls.predictions.transform.LayerNorm.weight": "mlm_head.norm.weight",
                "cls.predictions.transform.LayerNorm.bias": "mlm_head.norm.bias",
                "cls.predictions.bias": "mlm_head.bias"}
    ours |= {mine: _take(state, used, theirs) for theirs, mine in optional.items() if theirs in state}
    layer_names = {"attention.output.dense": "self_attn.out_proj", "attention.output.LayerNorm": "norm1",
                   "intermediate.dense": "feed_forward.linear1", "output.dense": "feed_forward.linear2",
                   "output.LayerNorm": "norm2"}
    for i in _layer_indices(state, "encoder.layer."):
        hf, mine = f"encoder.layer.{i}.", f"encoder.layers.{i}."
        for kind in ("weight", "bias"):
            ours[f"{mine}self_attn.in_proj.{kind}"] = torch.cat(  # 3 x (C, C) -> (3C, C): rows Q, K, V
                [_take(state, used, f"{hf}attention.self.{n}.{kind}") for n in ("query", "key", "value")])
            for theirs, name in layer_names.items():
                ours[f"{mine}{name}.{kind}"] = _take(state, used, f"{hf}{theirs}.{kind}")
    # position_ids, a buffer of older files, is no weight: neither used nor "ignored"
    return ours, {_original(hf_state, name, "bert.") for name in used | {"embeddings.position_ids"}}


def gpt2_state_dict(hf_state: dict[str, Tensor]) -> Mapped:
    """``GPT2Model`` / ``GPT2LMHeadModel`` -> ``DecoderLM`` (learned positions, the folder's GELU: real
    GPT-2's "gelu_new" is our "gelu_tanh", ``hf_config.py``). Conv1D weights are (in, out), ``nn.Linear``'s
    (out, in): every matrix is transposed. A tied head (GPT-2's) is the token table."""
    state, used = _strip(hf_state, "transformer."), set()
    ours = {"token_embedding.weight": _take(state, used, "wte.weight"),
            "positional.table.weight": _take(state, used, "wpe.weight"),
            "norm.weight": _take(state, used, "ln_f.weight"), "norm.bias": _take(state, used, "ln_f.bias")}
    ours["lm_head.weight"] = (_take(state, used, "lm_head.weight") if "lm_head.weight" in state
                              else ours["token_embedding.weight"])
    layer_names = {"ln_1": ("norm1", False), "ln_2": ("norm2", False),
                   "attn.c_attn": ("self_attn.in_proj", True),
                   "attn.c_proj": ("self_attn.out_proj", True), "mlp.c_fc": ("feed_forward.linear1", True),
                   "mlp.c_proj": ("feed_forward.linear2", True)}
    for i in _layer_indices(state, "h."):
        for theirs, (mine, conv1d) in layer_names.items():
            weight = _take(state, used, f"h.{i}.{theirs}.weight")
            ours[f"decoder.layers.{i}.{mine}.weight"] = weight.T if conv1d else weight  # (C, 3C) -> (3C, C)
            ours[f"decoder.layers.{i}.{mine}.bias"] = _take(state, used, f"h.{i}.{theirs}.bias")
    # the attention's causal-mask buffers of older files are not weights: neither used nor "ignored"
    return ours, {_original(hf_state, name, "transformer.") for name in used} | {
        name for name in hf_state if name.endswith((".attn.bias", ".attn.masked_bias"))}


# transformers' ViT layer names (5.x first, then 4.x) -> ours
VIT_LAYER_NAMES = {"layernorm_before": "norm1", "layernorm_after": "norm2",
                   "attention.o_proj": "self_attn.out_proj", "attention.output.dense": "self_attn.out_proj",
                   "mlp.fc1": "feed_forward.linear1", "intermediate.dense": "feed_forward.linear1",
                   "mlp.fc2": "feed_forward.linear2", "output.dense": "feed_forward.linear2"}
VIT_QKV_NAMES = (("attention.q_proj", "attention.k_proj", "attention.v_proj"),
                 ("attention.attention.query", "attention.attention.key", "attention.attention.value"))


def vit_state_dict(hf_state: dict[str, Tensor]) -> Mapped:
    """``ViTModel`` / ``ViTForImageClassification`` -> ``VisionTransformer`` (pre-norm, exact GELU); the
    final ``layernorm`` is our encoder's norm (Eq. 4's LN), the ``classifier`` our head; the pooler of a
    ``ViTModel`` is not used by image classification."""
    state, used = _strip(hf_state, "vit."), set()
    names = {"embeddings.patch_embeddings.projection.weight": "embeddings.patch_embedding.projection.weight",
             "embeddings.patch_embeddings.projection.bias": "embeddings.patch_embedding.projection.bias",
             "embeddings.cls_token": "embeddings.cls_token",
             "embeddings.position_embeddings": "embeddings.position_embedding",
             "layernorm.weight": "encoder.norm.weight", "layernorm.bias": "encoder.norm.bias",
             "classifier.weight": "head.weight", "classifier.bias": "head.bias"}
    ours = {mine: _take(state, used, theirs) for theirs, mine in names.items() if theirs in state}
    indices = _layer_indices(state, "layers.") or _layer_indices(state, "encoder.layer.")
    for i in indices:
        prefix = next(p for p in (f"layers.{i}.", f"encoder.layer.{i}.")
                      if p + "layernorm_before.weight" in state)
        qkv = next(names for names in VIT_QKV_NAMES if prefix + names[0] + ".weight" in state)
        for kind in ("weight", "bias"):
            ours[f"encoder.layers.{i}.self_attn.in_proj.{kind}"] = torch.cat(
                [_take(state, used, f"{prefix}{n}.{kind}") for n in qkv])
            for theirs, mine in VIT_LAYER_NAMES.items():
                if f"{prefix}{theirs}.{kind}" in state:
                    ours[f"encoder.layers.{i}.{mine}.{kind}"] = _take(state, used, f"{prefix}{theirs}.{kind}")
    return ours, {_original(hf_state, name, "vit.") for name in used}


HF_MAPPINGS = {"bert": bert_state_dict, "gpt2": gpt2_state_dict, "vit": vit_state_dict}


def _layer_indices(state: dict[str, Tensor], prefix: str) -> list[int]:
    return sorted({int(name[len(prefix):].split(".")[0]) for name in state if name.startswith(prefix)})


def _original(hf_state: dict[str, Tensor], name: str, prefix: str) -> str:
    """The Hugging Face name a stripped ``name`` came from."""
    return prefix + name if prefix + name in hf_state else name
