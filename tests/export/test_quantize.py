"""``export --quantize int8``: int8 linear layers beside the float32 graphs, for every family that exports.

One int8 export per family per module (about 20 s in all on 2 shared cores); every test reuses them.
What int8 may differ by: a weight is rounded to 1/254 of its tensor's largest |value| and an activation to
1/255 of its range, per matrix product, so the logits move by a few percent of their largest magnitude
(measured here, relative to the largest |logit| of the export check's cases: classifier 5.8 %, ViT 3.7 %,
translation 1.5 %, LM 0.9 %; the rounding is deterministic, so these repeat run to run); the tests allow
10 %, under twice the worst, and demand the same top-1 wherever PyTorch's top-2 margin exceeds twice the
measured error: with every logit within that error, rounding cannot swap the top two there.
"""

import json
import subprocess
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from loguru import logger

from src.data.special_tokens import BOS_ID, EOS_ID, PAD_ID
from src.export import quantize
from src.export.exporter import export_checkpoint
from src.export.parity import logits_along
from src.inference import load_for_inference, loader
from src.inference.onnx_backend import MANIFEST, MANIFEST_FORMAT
from src.main import main
from src.models.decoding import greedy_decode
from src.training.checkpoint import atomic_torch_save
from tests.export.conftest import make_checkpoint

TEST_MAX_RELATIVE_DIFF = 0.10
GRAPHS = {"classifier": ["classifier"], "lm": ["decoder_lm"], "vit": ["vit"],
          "translation": ["encoder", "decoder_step"]}


def _random_head(model: torch.nn.Module) -> None:
    """A ViT's head starts at zero (the paper's fine-tuning head): all logits equal would compare nothing."""
    torch.nn.init.normal_(model.head.weight, std=0.5, generator=torch.Generator().manual_seed(0))


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    """family -> (export folder, PyTorch model, float32 ONNX model, int8 ONNX model); the LM through the
    CLI."""
    root = tmp_path_factory.mktemp("int8")
    checkpoints = {
        "classifier": make_checkpoint(root / "classifier", "config/imdb_tiny.yaml", ("text",),
                                      labels=["neg", "pos"]),
        "lm": make_checkpoint(root / "lm", "config/lm_tiny.yaml", ("text",)),
        "vit": make_checkpoint(root / "vit", "config/vit_tiny.yaml", (), labels=list("abcdefghij"),
                               image_stats={"mean": [0.29], "std": [0.35]}, tune=_random_head),
        "translation": make_checkpoint(root / "translation", "config/tiny.yaml", ("src", "tgt"), seed=3),
    }
    out = {}
    for family, checkpoint in checkpoints.items():
        if family == "lm":
            assert main(["export", str(checkpoint), "--quantize", "int8"]) == 0
            folder = checkpoint.with_name("best.export")
        else:
            folder = export_checkpoint(checkpoint, quantize="int8")
        out[family] = (folder, load_for_inference(checkpoint, "cpu"),
                       load_for_inference(folder, backend="onnx"),
                       load_for_inference(folder, backend="onnx-int8"))
    return out


@pytest.mark.parametrize("family", list(GRAPHS))
def test_int8_graphs_sit_beside_the_float32_ones_with_every_linear_layer_quantized(exports, family):
    folder = exports[family][0]
    manifest = json.loads((folder / MANIFEST).read_text())
    int8 = manifest["quantized"]["int8"]
    assert list(int8["graphs"]) == list(manifest["graphs"]) == GRAPHS[family]
    for name in GRAPHS[family]:
        fp32_file, int8_file = folder / f"{name}.onnx", folder / f"{name}.int8.onnx"
        assert manifest["graphs"][name]["file"] == fp32_file.name
        assert int8["graphs"][name]["file"] == int8_file.name
        assert fp32_file.stat().st_size > int8_file.stat().st_size
        graph = onnx.load(str(int8_file)).graph
        constants = {t.name for t in graph.initializer}
        for node in graph.node:  # in topological order: what is computed from constants alone is a weight too
            if node.input and all(i in constants for i in node.input if i):
                constants.update(node.output)
        float_linear = [n.name for n in graph.node
                        if n.op_type in ("MatMul", "Gemm") and n.input[1] in constants]
        assert not float_linear, f"{name}: linear layers left in float32: {float_linear}"
        weights = int8["graphs"][name]["linear_weights"]
        assert weights["quantized"] == sum(n.op_type == "MatMulInteger" for n in graph.node) > 0
        # one byte per weight instead of four, plus a scale and a zero point per tensor
        assert 3.9 < weights["fp32_bytes"] / weights["int8_bytes"] <= 4.0
    checked = int8["checked"]
    assert checked["max_rel_diff"] <= quantize.INT8_MAX_RELATIVE_DIFF and 0 < checked["max_abs_diff"]
    assert checked["cases"] == manifest["checked"]["cases"]  # the float32 check's cases, rerun


def _closeness(expected: torch.Tensor, actual: torch.Tensor) -> None:
    """int8 logits within TEST_MAX_RELATIVE_DIFF of PyTorch's largest |logit|, and the same top-1 wherever
    PyTorch's top-2 margin is more than twice the error (there rounding cannot reorder them)."""
    error = (expected - actual).abs().max()
    assert 0 < error <= TEST_MAX_RELATIVE_DIFF * expected.abs().max(), float(error)
    top2 = expected.topk(2, dim=-1).values
    clear = (top2[..., 0] - top2[..., 1]) > 2 * error
    assert clear.any()  # else the comparison below would compare nothing
    assert torch.equal(expected.argmax(-1)[clear], actual.argmax(-1)[clear])


@pytest.mark.parametrize("family", ["classifier", "vit", "lm"])
def test_int8_logits_are_close_to_pytorch_on_new_inputs(exports, family):
    _, torch_model, fp32, int8 = exports[family]
    generator = torch.Generator().manual_seed(5)
    if family == "vit":
        inputs = torch.randn(7, 1, 28, 28, generator=generator)
    else:
        inputs = torch.randint(4, 300 if family == "classifier" else 30, (6, 19), generator=generator)
        if family == "classifier":
            inputs[:, 0], inputs[-1, 9:] = BOS_ID, PAD_ID
    with torch.no_grad():
        expected = torch_model.model(inputs)
        _closeness(expected, int8.model(inputs))
        # the float32 graphs are the reference's 1e-4: the difference above is quantization's, not the
        # export's
        torch.testing.assert_close(fp32.model(inputs), expected, atol=1e-4, rtol=0)


def test_int8_translation_decodes_and_its_logits_are_close_to_pytorch(exports):
    _, torch_model, _, int8 = exports["translation"]
    src = torch.randint(4, 300, (5, 11), generator=torch.Generator().manual_seed(2))
    src[1:, 8:] = PAD_ID
    with torch.no_grad():
        path = greedy_decode(torch_model.model, src, bos_id=BOS_ID, eos_id=EOS_ID, max_new_tokens=12)
        _closeness(logits_along(torch_model.model, src, path, BOS_ID),
                   logits_along(int8.model, src, path, BOS_ID))
    decoded = greedy_decode(int8.model, src, bos_id=BOS_ID, eos_id=EOS_ID, max_new_tokens=12)
    assert decoded.shape[0] == 5 and decoded.shape[1] > 1


def test_the_commands_take_the_int8_backend(exports, tmp_path, capsys):
    checkpoint = exports["lm"][1].path  # its export, with int8 graphs, is up to date: used as it is
    assert main(["generate", str(checkpoint), "--backend", "onnx-int8", "--max-new-tokens", "8",
                 "--temperature", "0", "Das ist"]) == 0
    assert capsys.readouterr().out.strip()
    text = tmp_path / "doc.txt"
    text.write_text("Das ist gut. Wir gehen nach Hause.\n\nEr liest ein Buch.\n", encoding="utf-8")
    metrics = {}
    for backend in ("onnx", "onnx-int8"):
        out = tmp_path / f"{backend}.json"
        assert main(["evaluate", str(checkpoint), "--backend", backend, "--split", str(text),
                     "--output", str(out)]) == 0
        metrics[backend] = json.loads(out.read_text())
    assert metrics["onnx-int8"]["backend"] == "onnx-int8"
    assert metrics["onnx-int8"]["bpc"] != metrics["onnx"]["bpc"]  # the int8 graphs ran, not the float32
    assert metrics["onnx-int8"]["bpc"] == pytest.approx(metrics["onnx"]["bpc"], rel=0.02)


def test_an_export_without_int8_graphs_says_how_to_write_them(exports, tmp_path):
    folder = tmp_path / "fp32"
    folder.mkdir()
    manifest = json.loads((exports["classifier"][0] / MANIFEST).read_text())
    del manifest["quantized"]
    for name in (MANIFEST, "config.json", "tokenizer_text.json", "classifier.onnx"):
        (folder / name).write_bytes((exports["classifier"][0] / name).read_bytes())
    (folder / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match=r"has no int8 graphs \(it has float32 only\); write them with: "
                                         r"python -m src.main export RUN_OR_CHECKPOINT --quantize int8"):
        load_for_inference(folder, backend="onnx-int8")


def test_int8_graphs_too_far_from_pytorch_are_refused_and_the_float32_export_stands(tmp_path, monkeypatch):
    checkpoint = make_checkpoint(tmp_path, "config/lm_tiny.yaml", ("text",))
    monkeypatch.setattr(quantize, "INT8_MAX_RELATIVE_DIFF", 1e-6)  # no int8 graph is that close
    with pytest.raises(quantize.QuantizationError,
                       match=r"the int8 graphs are refused: largest \|int8 - PyTorch\| is .*% of the largest "
                             r"\|logit\| \(allowed 0%\); the float32 export in .* stands "
                             r"\(use --backend onnx\)"):
        export_checkpoint(checkpoint, tmp_path / "out", quantize="int8")
    assert not (tmp_path / "out" / "decoder_lm.int8.onnx").exists()
    assert "quantized" not in json.loads((tmp_path / "out" / MANIFEST).read_text())
    assert isinstance(load_for_inference(tmp_path / "out", backend="onnx").model, torch.nn.Module)


def test_a_recurrent_classifier_with_quantize_is_refused_in_one_line(tmp_path):
    checkpoint = make_checkpoint(tmp_path, "config/imdb_lstm.yaml", ("text",), labels=["neg", "pos"],
                                 model={"d_model": 16})
    errors = []
    sink = logger.add(errors.append, level="ERROR", format="{message}")
    try:
        assert main(["export", str(checkpoint), "--quantize", "int8", "--out", str(tmp_path / "out")]) == 1
    finally:
        logger.remove(sink)
    assert len(errors) == 1 and errors[0].count("\n") == 1, errors  # one line, no traceback
    assert errors[0].startswith("export: lstm_classifier does not export to ONNX with a dynamic length")


def test_the_int8_backend_exports_on_demand_with_quantize_when_the_export_has_no_int8_graphs(tmp_path,
                                                                                           monkeypatch):
    checkpoint = tmp_path / "model.pt"
    atomic_torch_save({"step": 1, "model": {"w": torch.zeros(2)}}, checkpoint)
    commands = []

    def fake_export(command, **kwargs):
        """Writes the manifest ``python -m src.main export`` would, int8 graphs only with --quantize int8."""
        commands.append(command)
        out = Path(command[command.index("--out") + 1])
        manifest = {"format": MANIFEST_FORMAT, "checked": {"cases": [], "max_abs_diff": 0.0},
                    "checkpoint": {"sha256": loader.file_sha256(checkpoint)}}
        if "--quantize" in command:
            manifest["quantized"] = {command[command.index("--quantize") + 1]: {"graphs": {}}}
        (out / MANIFEST).write_text(json.dumps(manifest))
        return subprocess.CompletedProcess(command, 0, "", "")

    monkeypatch.setattr(subprocess, "run", fake_export)
    folder = loader._fresh_export(checkpoint)  # float32 only
    assert loader._fresh_export(checkpoint) == folder and len(commands) == 1  # up to date for onnx
    assert loader._fresh_export(checkpoint, "int8") == folder and commands[-1][-2:] == ["--quantize", "int8"]
    # now up to date for both
    assert loader._fresh_export(checkpoint, "int8") == folder and len(commands) == 2
    assert np.array_equal(sorted(json.loads((folder / MANIFEST).read_text())["quantized"]), ["int8"])


@pytest.mark.parametrize("family", list(GRAPHS))
def test_the_int8_bench_times_both_backends_on_the_same_work_for_every_family(exports, family):
    from src.export.bench_int8 import bench

    checkpoint = exports[family][1].path
    result = bench(checkpoint, repeats=1, batch_sizes=[2], items=2, new_tokens=3, threads=1, quality=False,
                   max_items=None)
    units = {"classifier": "texts", "lm": "tokens", "vit": "images", "translation": "sentences"}
    assert [r["backend"] for r in result["rows"]] == ["onnx", "onnx-int8"] and result["unit"] == units[family]
    fp32, int8 = (r["median_s"] for r in result["rows"])
    assert result["speedup_int8_over_fp32"] == {2: round(fp32 / int8, 2)}
    manifest = json.loads((exports[family][0] / MANIFEST).read_text())
    assert result["int8_export_check"] == manifest["quantized"]["int8"]["checked"]
