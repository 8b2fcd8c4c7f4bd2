"""The attention rewrite (src/export/fusion.py) on small hand-built graphs of the exporter's shape: the fused
graph gives the exported graph's outputs, and a group of another shape is left alone.

The rewrite on real exports is checked in tests/export/test_export_translation.py (decoder step) and
tests/export/test_export_families.py (language model), where the graphs then decode as PyTorch does.
"""

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from src.export.fusion import fuse_attention

B, H, DH, T, S = 3, 2, 4, 5, 6
C = H * DH


def _step_graph(causal: int = 0) -> onnx.ModelProto:
    """One self-attention on a past cache and one cross-attention on cached keys with a boolean source
    mask, as the dynamo exporter writes a decoder step (opset 23)."""
    nodes, inits = [], [numpy_helper.from_array(np.array([-1, 1, H, DH], np.int64), "heads"),
                        numpy_helper.from_array(np.array([-1, 1, C], np.int64), "merged")]

    def heads(x: str, name: str) -> str:
        nodes.append(helper.make_node("Reshape", [x, "heads"], [f"{name}_4d"], allowzero=1))
        nodes.append(helper.make_node("Transpose", [f"{name}_4d"], [f"{name}_t"], perm=[0, 2, 1, 3]))
        return f"{name}_t"

    def merge(x: str, name: str) -> str:
        nodes.append(helper.make_node("Transpose", [x], [f"{name}_t"], perm=[0, 2, 1, 3]))
        nodes.append(helper.make_node("Reshape", [f"{name}_t", "merged"], [name], allowzero=1))
        return name

    nodes.append(helper.make_node("Split", ["x", "thirds"], ["q", "k", "v"], axis=2))
    inits.append(numpy_helper.from_array(np.array([C, C, C], np.int64), "thirds"))
    nodes.append(helper.make_node("Concat", ["past_key_0", heads("k", "k")], ["present_key_0"], axis=2))
    nodes.append(helper.make_node("Concat", ["past_value_0", heads("v", "v")], ["present_value_0"], axis=2))
    nodes.append(helper.make_node("Attention", [heads("q", "q"), "present_key_0", "present_value_0"],
                                  ["self_out"], is_causal=causal))
    self_out = merge("self_out", "self_merged")
    nodes.append(helper.make_node("Attention", [heads(self_out, "q2"), "cross_key_0", "cross_value_0",
                                                "src_mask"], ["cross_out"]))
    nodes.append(helper.make_node("Add", [merge("cross_out", "cross_merged"), self_out], ["out"]))
    cache = ["B", H, "T", DH]
    graph = helper.make_graph(
        nodes, "step",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["B", 1, 3 * C]),
         helper.make_tensor_value_info("src_mask", TensorProto.BOOL, ["B", 1, 1, "S"]),
         helper.make_tensor_value_info("cross_key_0", TensorProto.FLOAT, ["B", H, "S", DH]),
         helper.make_tensor_value_info("cross_value_0", TensorProto.FLOAT, ["B", H, "S", DH]),
         helper.make_tensor_value_info("past_key_0", TensorProto.FLOAT, cache),
         helper.make_tensor_value_info("past_value_0", TensorProto.FLOAT, cache)],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["B", 1, C]),
         helper.make_tensor_value_info("present_key_0", TensorProto.FLOAT, ["B", H, "T1", DH]),
         helper.make_tensor_value_info("present_value_0", TensorProto.FLOAT, ["B", H, "T1", DH])],
        inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 23)])


def _run(model: onnx.ModelProto, past: int) -> list[np.ndarray]:
    rng = np.random.default_rng(past)
    mask = np.ones((B, 1, 1, S), bool)
    mask[1, ..., 2:] = False  # a padded source row: its masked keys must get no weight
    feed = {"x": rng.standard_normal((B, 1, 3 * C), np.float32), "src_mask": mask,
            **{f"cross_{s}_0": rng.standard_normal((B, H, S, DH), np.float32) for s in ("key", "value")},
            **{f"past_{s}_0": rng.standard_normal((B, H, past, DH), np.float32) for s in ("key", "value")}}
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, feed)


@pytest.mark.parametrize("past", [0, 7])
def test_the_fused_graph_gives_the_exported_graphs_outputs_and_appends_to_the_cache(past):
    exported = _step_graph()
    fused = _step_graph()
    report = fuse_attention(fused)
    assert (report.fused, report.left) == (2, 0)
    ops = [n.op_type for n in fused.graph.node]
    # one kernel per attention: no Attention, no cache Concat, no head Transpose left
    assert ops.count("MultiHeadAttention") == 2 and not {"Attention", "Concat", "Transpose"} & set(ops)
    expected, actual = _run(exported, past), _run(fused, past)
    assert actual[1].shape == (B, H, past + 1, DH)  # present = past + the new position
    for e, a in zip(expected, actual, strict=True):
        np.testing.assert_allclose(a, e, rtol=0, atol=1e-5)


def test_an_attention_of_another_shape_is_left_as_exported():
    # a causal flag is no plain attention over the cache: that node stays, the cross-attention is fused
    graph = _step_graph(causal=1)
    report = fuse_attention(graph)
    assert (report.fused, report.left) == (1, 1)
    ops = [n.op_type for n in graph.graph.node]
    assert ops.count("Attention") == 1 and ops.count("Concat") == 2
    np.testing.assert_allclose(_run(graph, 4)[0], _run(_step_graph(causal=1), 4)[0], rtol=0, atol=1e-5)
