"""ONNX Runtime's fused attention in the decoder-step graphs: a rewrite of the exported graph.

The dynamo exporter writes each of the decoders' attention calls (opset 23) as one ONNX ``Attention``
node between the copies that lay the heads out for it:

    x (B, 1, C) -> Reshape (B, 1, H, C/H) -> Transpose (B, H, 1, C/H) -+
    self-attention: past_key_i (B, H, T, C/H) ++ the new key, same copies, Concat on T = present_key_i
    cross-attention: cross_key_i (B, H, S, C/H), src_mask (B, 1, 1, S) boolean
      -> Attention (B, H, 1, C/H) -> Transpose -> Reshape (B, 1, C)

``fuse_attention`` replaces every such group by one ``com.microsoft.MultiHeadAttention`` node, which
takes the queries (and a self-attention's new keys and values) in the (B, 1, C) layout the projection
gives, the cached keys and values in (B, H, T, C/H), appends the new ones to the cache itself
(``present_key_i``, the same output name) and returns (B, 1, C): one kernel instead of up to nine
nodes, and no Transpose, Reshape or Concat left around attention. The boolean source mask becomes
the int32 (B, S) key padding mask the operator takes, converted once per graph.

The maths is unchanged: softmax(q k^T / sqrt(C/H)) v over the same keys, a masked key adding -10000 to
its score instead of -inf, which exp() takes to exactly 0 in float32 either way (a score would have to
exceed 9,900 to tell them apart). The exporter checks the rewritten graphs against PyTorch like any other
(``parity.check_export``). An ``Attention`` node that is not of this shape (another mask, a causal flag,
a softcap) is left as it is, and counted.

The weights stay where they were, so ``src/export/quantize.py`` quantizes the rewritten graph's linear
layers as before.
"""

from dataclasses import dataclass
from typing import Any

from loguru import logger

CONTRIB = "com.microsoft"
# the key padding mask's value for a masked key (MultiHeadAttention's default, written out): see above
MASK_FILTER_VALUE = -10000.0


@dataclass(frozen=True)
class FusionReport:
    """What ``fuse_attention`` did: attention nodes replaced, and those left because their shape did not
    match."""

    fused: int
    left: int


def fuse_attention(model: Any) -> FusionReport:
    """Rewrite ``model`` (an ``onnx.ModelProto``, changed in place) as the module docstring says."""
    import onnx
    from onnx import helper, numpy_helper

    graph = model.graph
    constants = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    inputs = {i.name for i in graph.input}
    graph_outputs = {o.name for o in graph.output}
    producer = {out: node for node in graph.node for out in node.output}

    def only_consumer(name: str) -> Any | None:
        """The one node that reads ``name``; None when none or several do."""
        readers = [node for node in graph.node if name in node.input]
        return readers[0] if len(readers) == 1 and name not in graph_outputs else None

    def target_shape(reshape: Any) -> list[int | None] | None:
        """A Reshape's target shape: a constant, or a Concat of one-element pieces (a Shape's piece None)."""
        name = reshape.input[1]
        if name in constants:
            return [int(d) for d in constants[name].reshape(-1)]
        concat = producer.get(name)
        if concat is None or concat.op_type != "Concat":
            return None
        return [int(constants[piece].reshape(-1)[0]) if piece in constants and constants[piece].size == 1
                else None for piece in concat.input]

    def heads_of(name: str) -> tuple[str, int] | None:
        """(x, H) when ``name`` is Transpose(0, 2, 1, 3) of Reshape(x, (B, N, H, C/H)): the decoder steps'
        constant (-1, 1, H, C/H), a ViT's (-1, patches + 1, H, C/H), or the (B, S, H, C/H) read from the
        input's shape in a graph over sequences of any length."""
        transpose = producer.get(name)
        if transpose is None or transpose.op_type != "Transpose" or _ints(transpose, "perm") != [0, 2, 1, 3]:
            return None
        reshape = producer.get(transpose.input[0])
        shape = target_shape(reshape) if reshape is not None and reshape.op_type == "Reshape" else None
        if shape is None or len(shape) != 4 or None in shape[2:] or min(shape[2:]) < 1 or 0 in shape[:2]:
            return None
        return reshape.input[0], shape[2]

    def merged_output(attention: Any) -> Any | None:
        """The Reshape that ends ``attention``'s Transpose(0, 2, 1, 3) -> Reshape((B, N, C)), if it is
        that."""
        transpose = only_consumer(attention.output[0])
        if transpose is None or transpose.op_type != "Transpose" or _ints(transpose, "perm") != [0, 2, 1, 3]:
            return None
        reshape = only_consumer(transpose.output[0])
        shape = target_shape(reshape) if reshape is not None and reshape.op_type == "Reshape" else None
        if shape is None or len(shape) != 3 or 0 in shape[:2] or shape[2] is None:
            return None
        return reshape

    def appended(name: str, past_prefix: str) -> tuple[str, str] | None:
        """(past, new) when ``name`` is Concat(past graph input, new heads) on the length axis."""
        concat = producer.get(name)
        if concat is None or concat.op_type != "Concat" or _int(concat, "axis") != 2 \
                or len(concat.input) != 2:
            return None
        past, new = concat.input
        return (past, new) if past in inputs and past.startswith(past_prefix) else None

    masks: dict[str, str] = {}  # boolean (B, 1, 1, S) mask -> its int32 (B, S) form
    types = {v.name: v.type.tensor_type for v in (*graph.input, *graph.value_info, *graph.output)}

    def key_padding_mask(name: str) -> str | None:
        """The int32 (B, S) key padding mask of the boolean (B, 1, 1, S) mask ``name`` (a graph input, or
        computed in the graph from the padding ids)."""
        tensor = types.get(name)
        if tensor is None or tensor.elem_type != onnx.TensorProto.BOOL or len(tensor.shape.dim) != 4 \
                or any(d.dim_value != 1 for d in tensor.shape.dim[1:3]):
            return None
        if name not in masks:
            masks[name] = f"{name}_key_padding_int32"
            shape = f"{name}_key_padding_shape"
            graph.initializer.append(numpy_helper.from_array(_array([0, -1]), shape))
            cast = helper.make_node("Cast", [name], [f"{name}_int32"], to=onnx.TensorProto.INT32,
                                    name=f"{name}_to_int32")
            flat = helper.make_node("Reshape", [f"{name}_int32", shape], [masks[name]],
                                    name=f"{name}_to_key_padding")
            # right after the mask is computed (first, for a graph input)
            after.setdefault(id(producer[name]) if name in producer else None, []).extend([cast, flat])
        return masks[name]

    after: dict[int | None, list] = {}  # id of a node (None: the start) -> new nodes that follow it
    replaced, dropped, fused, left = {}, set(), 0, 0
    for node in list(graph.node):
        if node.op_type != "Attention" or node.domain not in ("", "ai.onnx"):
            continue
        plain = all(_int(node, a, 0) == 0 for a in ("is_causal", "qk_matmul_output_mode")) and \
            _float(node, "softcap", 0.0) == 0.0 and not any(a.name == "scale" for a in node.attribute)
        query = heads_of(node.input[0])
        end = merged_output(node)
        if not plain or query is None or end is None or len(node.input) > 4 or \
                [o for o in node.output[1:] if o]:
            left += 1
            continue
        x, n_heads = query
        key, value = node.input[1], node.input[2]
        mask = node.input[3] if len(node.input) > 3 and node.input[3] else None
        self_kv = appended(key, "past_"), appended(value, "past_")
        if all(self_kv):  # self-attention: the new key/value heads, appended to past_* by the operator
            new_key, new_value = heads_of(self_kv[0][1]), heads_of(self_kv[1][1])
            if new_key is None or new_value is None or mask is not None or \
                    not {key, value} <= graph_outputs:
                left += 1
                continue
            mha_inputs = [x, new_key[0], new_value[0], "", "", "", self_kv[0][0], self_kv[1][0]]
            mha_outputs = [end.output[0], key, value]
            dropped |= {id(producer[key]), id(producer[value])}  # the Concats: the operator appends
        else:
            padding = key_padding_mask(mask) if mask is not None else ""
            new_key, new_value = heads_of(key), heads_of(value)
            if padding is None:
                left += 1
                continue
            if key in inputs and value in inputs:  # cross-attention on the cached (B, H, S, C/H) keys
                mha_inputs = [x, key, value, "", padding]
            elif new_key is not None and new_value is not None:  # over a whole sequence, no cache
                mha_inputs = [x, new_key[0], new_value[0], "", padding]
            else:
                left += 1
                continue
            mha_outputs = [end.output[0]]
        mha = helper.make_node("MultiHeadAttention", mha_inputs, mha_outputs, name=f"fused_attention_{fused}",
                               domain=CONTRIB, num_heads=n_heads, mask_filter_value=MASK_FILTER_VALUE)
        replaced[id(end)] = mha
        fused += 1
    if fused:
        # the MultiHeadAttention node takes the place of the Reshape that ended its group (everything it
        # reads is computed before that); the rest of the group is dropped as unused below
        ordered = list(after.get(None, []))
        for node in graph.node:
            if id(node) not in dropped:
                ordered += [replaced.get(id(node), node), *after.get(id(node), [])]
        del graph.node[:]
        graph.node.extend(ordered)
        _drop_unused(graph)
        if not any(o.domain == CONTRIB for o in model.opset_import):
            model.opset_import.append(helper.make_opsetid(CONTRIB, 1))
    logger.info("export: {} attention node(s) fused into MultiHeadAttention, {} left as exported", fused,
                left)
    return FusionReport(fused, left)


def _drop_unused(graph: Any) -> None:
    """Remove nodes none of whose outputs is read (by a node or as a graph output), until none is left,
    and the initializers nothing reads any more."""
    while True:
        used = {name for node in graph.node for name in node.input} | {o.name for o in graph.output}
        dead = [node for node in graph.node if not any(out in used for out in node.output if out)]
        if not dead:
            break
        for node in dead:
            graph.node.remove(node)
    used = {name for node in graph.node for name in node.input}
    for tensor in [t for t in graph.initializer if t.name not in used]:
        graph.initializer.remove(tensor)


def _array(values: list[int]):
    import numpy as np

    return np.array(values, dtype=np.int64)


def _attribute(node: Any, name: str):
    from onnx import helper

    return next((helper.get_attribute_value(a) for a in node.attribute if a.name == name), None)


def _ints(node: Any, name: str) -> list[int] | None:
    value = _attribute(node, name)
    return None if value is None else [int(v) for v in value]


def _int(node: Any, name: str, default: int | None = None) -> int | None:
    value = _attribute(node, name)
    return default if value is None else int(value)


def _float(node: Any, name: str, default: float) -> float:
    value = _attribute(node, name)
    return default if value is None else float(value)
