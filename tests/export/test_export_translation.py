"""Translation on ONNX Runtime: the exported encoder and decoder-step graphs decode as PyTorch does.

One export per module (about 30 s on 2 shared cores); every test reuses it.
"""

import json
import shutil

import numpy as np
import onnxruntime as ort
import pytest
import torch

from src.data.special_tokens import BOS_ID, EOS_ID, PAD_ID
from src.export.exporter import EXAMPLE_BATCH, EXAMPLE_LENGTH, export_checkpoint
from src.inference import load_for_inference
from src.export.parity import logits_along
from src.inference.onnx_backend import OnnxEncoderDecoder, load_onnx_model
from src.inference.translate import translate_texts
from src.models.decoding import beam_search, greedy_decode
from tests.export.conftest import check_triton_repository, make_checkpoint

TEXTS = ["Das ist gut.", "Wir gehen nach Hause und ich habe keine Zeit.", "Er liest ein Buch.", "Ich.",
         "That is good, we go home.", "He reads a book. I have no time.", "Zeit."]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    checkpoint = make_checkpoint(tmp_path_factory.mktemp("translation"), "config/tiny.yaml", ("src", "tgt"),
                                 seed=3)
    folder = export_checkpoint(checkpoint)
    return checkpoint, folder, load_for_inference(checkpoint, "cpu"), load_for_inference(checkpoint,
                                                                                         backend="onnx")


def _sources(n: int, length: int) -> torch.Tensor:
    """(n, length) ids with rows padded to different lengths: shapes unlike the export example's."""
    src = torch.randint(4, 300, (n, length), generator=torch.Generator().manual_seed(n))
    for row in range(1, n):
        src[row, length - row % length:] = PAD_ID
    return src


def test_the_onnx_backend_is_onnx_runtime_on_the_cpu(exported):
    checkpoint, folder, _, onnx = exported
    assert isinstance(onnx.model, OnnxEncoderDecoder) and onnx.device == torch.device("cpu")
    assert not list(onnx.model.parameters()) and onnx.step == 11 and folder == checkpoint.with_name(
        "best.export")


@pytest.mark.parametrize("batch, length", [(1, 3), (7, 13)])
def test_greedy_tokens_equal_pytorch_at_other_batch_sizes_and_lengths(exported, batch, length):
    _, _, torch_model, onnx = exported
    assert (batch, length) != (EXAMPLE_BATCH, EXAMPLE_LENGTH)
    src = _sources(batch, length)
    kwargs = {"bos_id": BOS_ID, "eos_id": EOS_ID, "max_new_tokens": 20}
    expected = greedy_decode(torch_model.model, src, **kwargs)
    assert expected.size(1) > 1  # several steps, through the cache
    assert batch == 1 or len({tuple(row) for row in expected.tolist()}) > 1  # sources decode differently
    assert torch.equal(greedy_decode(onnx.model, src, **kwargs), expected)


def test_beam_search_equals_pytorch(exported):
    _, _, torch_model, onnx = exported
    src = _sources(4, 9)
    kwargs = {"bos_id": BOS_ID, "eos_id": EOS_ID, "beam_size": 3, "length_penalty": 0.6, "max_new_tokens": 16}
    assert torch.equal(beam_search(onnx.model, src, **kwargs), beam_search(torch_model.model, src, **kwargs))


def test_logits_of_the_first_steps_agree_within_1e_4(exported):
    _, _, torch_model, onnx = exported
    src = _sources(5, 11)
    with torch.no_grad():
        memory, src_mask = torch_model.model.encode(src)
        cross_kv, onnx_mask = onnx.model.encode(src)
        assert torch.equal(onnx_mask, src_mask)
        torch_cache, onnx_cache = torch_model.model.new_cache(), onnx.model.new_cache()
        tokens = torch.full((5, 1), BOS_ID)
        for step in range(6):
            expected = torch_model.model.step_logits(tokens, memory, src_mask, torch_cache)
            actual = onnx.model.step_logits(tokens, cross_kv, onnx_mask, onnx_cache)
            assert len(onnx_cache) == step + 1
            torch.testing.assert_close(actual, expected, atol=1e-4, rtol=0)
            tokens = expected.argmax(-1, keepdim=True)


def test_the_decoder_step_graph_starts_from_an_empty_cache(exported):
    _, folder, torch_model, _ = exported
    encoder = ort.InferenceSession(str(folder / "encoder.onnx"))
    step = ort.InferenceSession(str(folder / "decoder_step.onnx"))
    # tiny.yaml: 1 decoder layer
    src_mask, cross_key, cross_value = encoder.run(None, {"src": _sources(2, 6).numpy()})
    past = np.zeros((*cross_key.shape[:2], 0, cross_key.shape[3]), dtype=np.float32)  # (B, H, T = 0, D/H)
    feed = {"tokens": np.full((2, 1), BOS_ID), "src_mask": src_mask, "cross_key_0": cross_key,
            "cross_value_0": cross_value, "past_key_0": past, "past_value_0": past}
    logits, key, value = step.run(None, feed)
    assert logits.shape == (2, 300) and key.shape == value.shape == (*past.shape[:2], 1, past.shape[3])
    _, key2, value2 = step.run(None, feed | {"tokens": logits.argmax(-1)[:, None], "past_key_0": key,
                                             "past_value_0": value})
    assert key2.shape[2] == 2 and np.array_equal(key2[:, :, :1], key) and np.array_equal(value2[:, :, :1],
                                                                                         value)


def test_the_graphs_run_on_ort_fused_attention(exported):
    # every attention of the step graph is one com.microsoft.MultiHeadAttention node (src/export/fusion.py):
    # no opset-23 Attention, no cache Concat, no head Transposes; the parity tests above ran on this graph
    import onnx

    _, folder, torch_model, _ = exported
    graph = onnx.load(str(folder / "decoder_step.onnx"))
    ops = [(node.domain, node.op_type) for node in graph.graph.node]
    n_attention = 2 * len(torch_model.model.decoder.layers)  # self and cross per layer
    assert ops.count(("com.microsoft", "MultiHeadAttention")) == n_attention
    assert not {"Attention", "Concat", "Transpose"} & {op for _, op in ops}
    manifest = json.loads((folder / "export.json").read_text())
    assert manifest["graphs"]["decoder_step"]["fused_attention"] == n_attention
    # the encoder's self-attention too, with the source padding as MultiHeadAttention's key padding mask
    n_encoder = len(torch_model.model.encoder.layers)
    assert manifest["graphs"]["encoder"]["fused_attention"] == n_encoder
    assert manifest["graphs"]["encoder"]["opset"] == 23


def test_the_io_bound_loop_keeps_the_cache_in_ort_and_equals_the_plain_loop(exported):
    # I/O binding hands each step's present_* OrtValues to the next step without a copy; the plain
    # loop (InferenceSession.run with numpy, the default) must give the very same tokens and logits
    _, folder, _, onnx = exported
    manifest = json.loads((folder / "export.json").read_text())
    plain = onnx.model
    bound = load_onnx_model(folder, manifest, PAD_ID, plain.max_positions, io_binding=True)
    src = _sources(6, 10)
    with torch.no_grad():
        memory, src_mask = bound.encode(src)
        cache = bound.new_cache()
        first = bound.step_logits(torch.full((6, 1), BOS_ID), memory, src_mask, cache)
        assert all(isinstance(v, ort.OrtValue) for v in cache.values + memory.values) and len(cache) == 1
        path = greedy_decode(bound, src, bos_id=BOS_ID, eos_id=EOS_ID, max_new_tokens=8)
        expected = logits_along(plain, src, path, BOS_ID)
        torch.testing.assert_close(logits_along(bound, src, path, BOS_ID), expected, rtol=0, atol=0)
        torch.testing.assert_close(first, expected[:, 0], rtol=0, atol=0)
    kwargs = {"bos_id": BOS_ID, "eos_id": EOS_ID, "max_new_tokens": 12}
    assert torch.equal(greedy_decode(bound, src, **kwargs), greedy_decode(plain, src, **kwargs))
    assert torch.equal(beam_search(bound, src, beam_size=3, length_penalty=0.6, **kwargs),
                       beam_search(plain, src, beam_size=3, length_penalty=0.6, **kwargs))


def test_translate_texts_gives_the_same_text_on_both_backends(exported):
    _, _, torch_model, onnx = exported
    for beam in (1, 2):
        assert translate_texts(onnx, TEXTS, beam=beam, max_len=12) == translate_texts(torch_model, TEXTS,
                                                                                      beam=beam,
                                                                                       max_len=12)


def test_the_manifest_describes_the_graphs_and_the_folder_works_alone(exported, tmp_path):
    checkpoint, folder, torch_model, _ = exported
    manifest = json.loads((folder / "export.json").read_text())
    assert manifest["family"] == "encoder_decoder" and manifest["opset"] >= 17
    assert manifest["checkpoint"]["step"] == 11 and manifest["checkpoint"]["path"] == str(
        checkpoint.resolve())
    step = manifest["graphs"]["decoder_step"]
    # one tensor per decoder layer and side (tiny.yaml: 1 layer), not one stacked cache (issue 30)
    assert manifest["format"] == 3 and list(manifest["graphs"]["encoder"]["outputs"]) == [
        "src_mask", "cross_key_0", "cross_value_0"]
    assert list(step["inputs"]) == ["tokens", "src_mask", "cross_key_0", "cross_value_0", "past_key_0",
                                    "past_value_0"]
    assert list(step["outputs"]) == ["logits", "present_key_0", "present_value_0"]
    batch, heads, past, head_dim = step["inputs"]["past_key_0"]["shape"]
    assert isinstance(batch, str) and isinstance(past, str) and (heads, head_dim) == (2, 16)
    assert step["outputs"]["present_value_0"]["shape"][2] == f"{past} + 1"
    alone = shutil.copytree(folder, tmp_path / "moved")  # no checkpoint beside it
    moved = load_for_inference(alone, backend="onnx")
    assert moved.special_ids == torch_model.special_ids and moved.config == torch_model.config
    assert translate_texts(moved, TEXTS[:3], max_len=8) == translate_texts(torch_model, TEXTS[:3], max_len=8)


def test_the_triton_repository_matches_the_graphs(exported):
    _, folder, _, _ = exported
    assert check_triton_repository(folder) == 2


def test_the_parity_command_compares_tokens_and_the_logits_along_one_path(exported):
    from src.export.parity import logits_along, parity

    checkpoint, _, torch_model, onnx = exported
    result = parity(checkpoint, 9, beam=2, steps=4, atol=1e-4, batch_size=4)
    assert result["ok"] and result["greedy"] == result["beam2"] == 9 and result["max_abs_logit_diff"] <= 1e-4
    src, path = _sources(3, 7), torch.randint(4, 300, (3, 4), generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        expected = logits_along(torch_model.model, src, path, BOS_ID)
        assert expected.shape == (3, 4, 300)
        # step t's logits depend on the path before t: a changed token changes them from the next step on
        changed = path.clone()
        changed[:, 1] = (changed[:, 1] + 1) % 300
        moved = (logits_along(torch_model.model, src, changed, BOS_ID) - expected).abs().amax(dim=(0, 2))
        assert moved[:2].max() == 0 and moved[2:].min() > 0


def test_the_bench_times_both_backends_on_the_same_sentences_with_equal_threads(exported):
    # the bench's ratio is the figure: both backends decode the same sentences, ORT with as many
    # threads as PyTorch, and their tokens are compared sentence by sentence
    from src.export.bench import bench, table

    checkpoint, _, _, _ = exported
    result = bench(checkpoint, 5, repeats=1, batch_sizes=[1, 4])
    assert result["family"] == "encoder_decoder" and result["sentences"] == 5
    assert result["ort_threads"] == result["torch_threads"] == torch.get_num_threads()
    assert result["identical_greedy_outputs"] == {1: "5/5", 4: "5/5"}
    assert [(r["backend"], r["batch_size"]) for r in result["rows"]] == [
        ("torch", 1), ("onnx", 1), ("torch", 4), ("onnx", 4)]
    for b in (1, 4):
        seconds = {r["backend"]: r["median_s"] for r in result["rows"] if r["batch_size"] == b}
        assert result["speedup_onnx_over_torch"][b] == round(seconds["torch"] / seconds["onnx"], 2)
    assert "batch 4: onnx" in table(result) and "sentences/s" in table(result)
