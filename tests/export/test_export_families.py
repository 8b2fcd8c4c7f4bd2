"""The other families on ONNX Runtime: classifier and ViT logits, LM generation through the cache; refusals.

Each family is exported once per module (10-20 s each on 2 shared cores), so the module is slow;
translation's parity (tests/export/test_export_translation.py, tests/pipelines/test_export_run.py)
stays in the default run.
"""

import json

import pytest
import torch

from src.export.exporter import EXAMPLE_BATCH, EXAMPLE_LENGTH, ExportError, export_checkpoint
from src.inference import load_for_inference
from src.inference.onnx_backend import OnnxClassifier, OnnxDecoderLM, load_onnx_model
from src.models.sampling import generate
from src.training.checkpoint import CheckpointError
from tests.export.conftest import check_triton_repository, make_checkpoint

pytestmark = pytest.mark.slow


def _export(tmp_path_factory, name, *args, **kwargs):
    checkpoint = make_checkpoint(tmp_path_factory.mktemp(name), *args, **kwargs)
    folder = export_checkpoint(checkpoint)
    return folder, load_for_inference(checkpoint, "cpu"), load_for_inference(folder, backend="onnx")


@pytest.fixture(scope="module")
def classifier(tmp_path_factory):
    return _export(tmp_path_factory, "classifier", "config/imdb_tiny.yaml", ("text",), labels=["neg", "pos"])


@pytest.fixture(scope="module")
def language_model(tmp_path_factory):
    return _export(tmp_path_factory, "lm", "config/lm_tiny.yaml", ("text",))


@pytest.fixture(scope="module")
def vit(tmp_path_factory):
    return _export(tmp_path_factory, "vit", "config/vit_tiny.yaml", (), labels=list("abcdefghij"),
                   image_stats={"mean": [0.29], "std": [0.35]})


@pytest.mark.parametrize("batch, length", [(1, 4), (6, 17)])
def test_classifier_logits_equal_pytorch_within_1e_4(classifier, batch, length):
    _, torch_model, onnx = classifier
    assert isinstance(onnx.model, OnnxClassifier) and onnx.labels == ["neg", "pos"]
    assert (batch, length) != (EXAMPLE_BATCH, EXAMPLE_LENGTH)
    tokens = torch.randint(4, 300, (batch, length), generator=torch.Generator().manual_seed(length))
    tokens[-1, length // 2:] = torch_model.special_ids["pad"]  # a padded row as well
    with torch.no_grad():
        expected = torch_model.model(tokens)
    torch.testing.assert_close(onnx.model(tokens), expected, atol=1e-4, rtol=0)


def test_one_graph_families_run_on_ort_fused_attention(classifier, vit):
    # the classifier's padding mask becomes MultiHeadAttention's key padding mask; the ViT has none
    for (folder, torch_model, _), name in ((classifier, "classifier"), (vit, "vit")):
        graph = json.loads((folder / "export.json").read_text())["graphs"][name]
        layers = len(torch_model.model.encoder.layers)
        assert graph["opset"] == 23 and graph["fused_attention"] == layers, name


@pytest.mark.parametrize("batch", [1, 5])
def test_vit_logits_equal_pytorch_within_1e_4(vit, batch):
    _, torch_model, onnx = vit
    assert onnx.image_stats == {"mean": [0.29], "std": [0.35]} and len(onnx.labels) == 10
    images = torch.randn(batch, 1, 28, 28, generator=torch.Generator().manual_seed(batch))
    with torch.no_grad():
        expected = torch_model.model(images)
    torch.testing.assert_close(onnx.model(images), expected, atol=1e-4, rtol=0)


@pytest.mark.parametrize("batch, length", [(1, 3), (4, 9)])
def test_lm_logits_through_the_cache_equal_pytorch_within_1e_4(language_model, batch, length):
    _, torch_model, onnx = language_model
    assert isinstance(onnx.model, OnnxDecoderLM)
    tokens = torch.randint(4, 30, (batch, length), generator=torch.Generator().manual_seed(length))
    with torch.no_grad():
        expected = torch_model.model(tokens)  # one pass over the whole sequence, no cache
        cache = onnx.model.new_cache()
        prompt = onnx.model(tokens[:, :-2], cache)  # from an empty cache
        rest = onnx.model(tokens[:, -2:], cache)  # continuing it
    assert len(cache) == length
    torch.testing.assert_close(torch.cat([prompt, rest], dim=1), expected, atol=1e-4, rtol=0)


def test_lm_graph_runs_on_ort_fused_attention(language_model):
    import onnx

    folder, torch_model, _ = language_model
    ops = [node.op_type for node in onnx.load(str(folder / "decoder_lm.onnx")).graph.node]
    n_layers = len(torch_model.model.decoder.layers)
    assert ops.count("MultiHeadAttention") == n_layers and not {"Attention", "Concat"} & set(ops)
    manifest = json.loads((folder / "export.json").read_text())
    assert manifest["graphs"]["decoder_lm"]["fused_attention"] == n_layers


def test_lm_cached_greedy_generation_equals_pytorch(language_model):
    _, torch_model, onnx = language_model
    prompts = torch.tensor([[1, 5, 6, 7], [1, 9, 8, 4]])
    expected = generate(torch_model.model, prompts, 40, temperature=0.0)
    assert torch.equal(generate(onnx.model, prompts, 40, temperature=0.0), expected)
    # past max_positions=64 the context is cropped and the cache rebuilt, on either backend
    assert torch.equal(generate(onnx.model, prompts[:1], 70, temperature=0.0),
                       generate(torch_model.model, prompts[:1], 70, temperature=0.0))


def test_lm_io_bound_generation_equals_the_plain_loop(language_model):
    # the language model's cache through I/O binding (OrtValues between steps) gives the default loop's
    # answers
    folder, _, onnx = language_model
    manifest = json.loads((folder / "export.json").read_text())
    bound = load_onnx_model(folder, manifest, onnx.model.pad_id, onnx.model.max_positions, io_binding=True)
    prompts = torch.tensor([[1, 5, 6, 7], [1, 9, 8, 4]])
    with torch.no_grad():
        torch.testing.assert_close(bound(prompts), onnx.model(prompts), rtol=0, atol=0)
    assert torch.equal(generate(bound, prompts, 20, temperature=0.0),
                       generate(onnx.model, prompts, 20, temperature=0.0))


def test_triton_repositories_match_their_graphs(classifier, language_model, vit):
    for folder, _, _ in (classifier, language_model, vit):
        assert check_triton_repository(folder) == 1
    manifest = json.loads((language_model[0] / "export.json").read_text())
    # one key and one value tensor per layer (lm_tiny.yaml: 2 layers), in and out (issue 30)
    graph = manifest["graphs"]["decoder_lm"]
    assert list(graph["inputs"]) == ["tokens", "past_key_0", "past_value_0", "past_key_1", "past_value_1"]
    assert list(graph["outputs"]) == ["logits", "present_key_0", "present_value_0", "present_key_1",
                                      "present_value_1"]


@pytest.mark.parametrize("config", ["config/imdb_lstm.yaml", "config/imdb_gru.yaml", "config/imdb_rnn.yaml"])
def test_recurrent_classifiers_are_refused_with_the_reason(tmp_path, config):
    checkpoint = make_checkpoint(tmp_path, config, ("text",), labels=["neg", "pos"], model={"d_model": 16})
    with pytest.raises(ExportError,
                       match="does not export to ONNX with a dynamic length: .* Python loop over the time "
                             "steps"):
        export_checkpoint(checkpoint, tmp_path / "out")
    assert not (tmp_path / "out" / "export.json").exists()


def test_a_path_that_is_not_a_checkpoint_is_a_clear_error(tmp_path):
    text = tmp_path / "notes.pt"
    text.write_text("not a checkpoint")
    with pytest.raises(CheckpointError, match=r"not a checkpoint \(or damaged\): .*notes.pt"):
        export_checkpoint(text, tmp_path / "out")
    with pytest.raises(CheckpointError, match=r"not a checkpoint \(or damaged\): .*notes.pt"):
        load_for_inference(text, backend="onnx")
    with pytest.raises(FileNotFoundError, match="is not an export folder: export.json is missing"):
        load_for_inference(tmp_path, backend="onnx")
    with pytest.raises(ValueError,
                       match=r"backend must be one of \('torch', 'onnx', 'onnx-int8'\), got 'tensorrt'"):
        load_for_inference(text, backend="tensorrt")


def test_the_export_command_reports_a_missing_run_in_one_line(tmp_path):
    from src.main import main

    assert main(["export", "no-such-run", "--runs-dir", str(tmp_path)]) == 1


@pytest.mark.slow
def test_the_onnx_backend_exports_a_checkpoint_without_an_export_and_redoes_a_stale_one(tmp_path):
    """About 40 s: two exports in a subprocess (``python -m src.main export``)."""
    first = make_checkpoint(tmp_path / "a", "config/imdb_tiny.yaml", ("text",), labels=["neg", "pos"], seed=1)
    loaded = load_for_inference(first, backend="onnx")
    folder = first.with_name("best.export")
    assert isinstance(loaded.model, OnnxClassifier) and (folder / "export.json").is_file()
    tokens = torch.randint(4, 300, (2, 7), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(loaded.model(tokens), load_for_inference(first, "cpu").model(tokens),
                                   atol=1e-4, rtol=0)
    second = make_checkpoint(tmp_path / "b", "config/imdb_tiny.yaml", ("text",), labels=["neg", "pos"],
                             seed=2)
    first.write_bytes(second.read_bytes())  # another model under the same name: the cached export is stale
    reloaded = load_for_inference(first, backend="onnx")
    with torch.no_grad():
        torch.testing.assert_close(reloaded.model(tokens), load_for_inference(second, "cpu").model(tokens),
                                   atol=1e-4,
                                   rtol=0)


@pytest.mark.slow
@pytest.mark.parametrize("attention", ["sliding_window", "longformer"])
def test_banded_attention_exports_and_gives_pytorch_logits_for_padded_rows(tmp_path, attention):
    """About 20 s each. Windows far shorter than the texts: most padded positions see only padding."""
    model = {"attention": attention, "window": 3, "d_model": 16, "n_encoder_layers": 1}
    checkpoint = make_checkpoint(tmp_path, "config/imdb_tiny.yaml", ("text",), labels=["neg", "pos"],
                                 model=model)
    folder = export_checkpoint(checkpoint, tmp_path / "out")
    manifest = json.loads((folder / "export.json").read_text())
    assert manifest["checked"]["max_abs_diff"] < 1e-4
    # the band's (B, 1, T, T) mask is no key padding mask: the attention stays unfused, so the graph is
    # exported again at opset 20 (ORT's opset-23 Attention would refuse the padding masks of the other
    # layers' shape), decomposed as before
    assert manifest["graphs"]["classifier"]["opset"] == 20 and "fused_attention" not in manifest["graphs"][
        "classifier"]
    onnx, reference = load_for_inference(folder, backend="onnx"), load_for_inference(checkpoint, "cpu")
    tokens = torch.randint(4, 300, (4, 60), generator=torch.Generator().manual_seed(1))
    for row, length in enumerate([60, 1, 9, 33]):
        tokens[row, length:] = reference.special_ids["pad"]
    with torch.no_grad():
        expected = reference.model(tokens)
    actual = onnx.model(tokens)
    assert torch.isfinite(actual).all()
    torch.testing.assert_close(actual, expected, atol=1e-4, rtol=0)


def test_the_bench_times_lm_generation_on_both_backends(language_model):
    from src.export.bench import bench, table

    folder, torch_model, _ = language_model
    result = bench(torch_model.path, 3, repeats=1, batch_sizes=[1, 3], new_tokens=5)
    assert result["family"] == "decoder_lm" and result["unit"] == "tokens"
    assert result["identical_greedy_outputs"] == {1: "3/3", 3: "3/3"}
    rows = {(r["backend"], r["batch_size"]): r for r in result["rows"]}
    assert set(rows) == {(b, n) for b in ("torch", "onnx") for n in (1, 3)}
    # 3 prompts x 5 new tokens in each pass
    assert all(abs(r["tokens_per_s"] * r["median_s"] / 15 - 1) < 0.02 for r in rows.values())  # rounding
    assert "greedy generation, 3 prompts of 8 tokens, 5 new tokens each" in table(result)
