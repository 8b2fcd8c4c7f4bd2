"""No export is used unless its graphs give PyTorch's answers (issue 26, "never a wrong answer from export").

The refusals are tested without a full model export: a toy graph whose code branches on the length
(the way sliding-window attention used to), the check against a stand-in ONNX model that gives NaN
for padded rows (what the sliding-window graph did), and export folders the loader must not take.
"""

import json
import subprocess

import pytest
import torch
from torch import nn

from src.export.exporter import ExportError, GraphSpec, export_graph
from src.export.parity import check_export
from src.inference import load_for_inference
from src.inference import loader as loader_module
from src.inference.onnx_backend import MANIFEST
from src.training.checkpoint import CheckpointError
from tests.export.conftest import make_checkpoint


class BranchesOnLength(nn.Module):
    """Right only for sequences of up to 9 tokens: the branch torch.export narrows the length axis on."""

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        if tokens.size(1) <= 9:
            return tokens.float().sum(1, keepdim=True)
        return tokens.float().mean(1, keepdim=True)


def test_a_graph_traced_on_one_side_of_a_length_branch_is_refused_naming_the_range(tmp_path):
    length = torch.export.Dim("length", max=128)
    spec = GraphSpec("toy", BranchesOnLength(), (torch.ones(3, 5, dtype=torch.long),), ("tokens",),
                     ("logits",),
                     {"tokens": {0: torch.export.Dim("batch"), 1: length}})
    with pytest.raises(ExportError, match=r"graph toy: the exporter narrowed axes declared dynamic .*"
                                          r"tokens axis 1 \(0\.\.9, declared 1\.\.128\) "
                                          r"\(model.attention='sliding_window'\)"):
        export_graph(spec, tmp_path / "toy.onnx", "sliding_window")
    assert not (tmp_path / "toy.onnx").exists()


@pytest.fixture(scope="module")
def sliding_classifier(tmp_path_factory):
    """An untrained sliding-window text classifier (window 3) on PyTorch, built in about a second."""
    model = {"attention": "sliding_window", "window": 3, "d_model": 16, "n_encoder_layers": 1}
    checkpoint = make_checkpoint(tmp_path_factory.mktemp("sliding"), "config/imdb_tiny.yaml", ("text",),
                                 labels=["neg", "pos"], model=model)
    return load_for_inference(checkpoint, "cpu")


class NaNForPadding(nn.Module):
    """The PyTorch model, except that every row holding padding gets NaN logits (the old sliding-window
    graph)."""

    def __init__(self, model: nn.Module, pad_id: int) -> None:
        super().__init__()
        self.model, self.pad_id = model, pad_id

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        logits = self.model(tokens)
        return logits.masked_fill((tokens == self.pad_id).any(1, keepdim=True), float("nan"))


def test_the_check_refuses_nan_for_padded_rows_naming_the_case_and_the_rows(sliding_classifier):
    trained = sliding_classifier
    result = check_export(trained, NaNForPadding(trained.model, trained.special_ids["pad"]))
    assert not result["ok"]
    assert result["failure"] == ("lengths [128, 127, 65, 3, 2, 1] padded in one batch: ONNX Runtime gives "
                                 "non-finite outputs (NaN or inf) in rows [1, 2, 3, 4, 5], where PyTorch's "
                                 "are finite")


def test_the_check_refuses_a_difference_beyond_float_rounding_naming_its_size(sliding_classifier):
    trained = sliding_classifier

    class Off(nn.Module):
        def forward(self, tokens):
            out = trained.model(tokens)
            return out + 1e-3 * (tokens.size(1) == 1)  # wrong only at the length-1 case

    result = check_export(trained, Off())
    assert not result["ok"] and result["failure"].startswith("batch 1, length 1: largest |ONNX Runtime - "
                                                             "PyTorch| 0.001 in rows [0]")
    passed = check_export(trained, trained.model)  # the same model passes every case, with the lengths named
    assert passed["ok"] and passed["max_abs_diff"] == 0.0
    assert passed["cases"] == ["lengths [128, 127, 65, 3, 2, 1] padded in one batch", "batch 1, length 128",
                               "batch 1, length 1"]


@pytest.mark.parametrize("old", [{"format": 1}, {"format": 2, "checked": {"cases": [], "max_abs_diff": 0.0}}],
                         ids=["unchecked", "stacked-cache"])
def test_an_export_of_an_older_format_is_not_used(tmp_path, old):
    # format 1 was never checked against PyTorch; format 2 was, but its decoders take one stacked cache
    # tensor that the runtime no longer feeds: both are exported again on demand
    folder = tmp_path / "export"
    folder.mkdir()
    (folder / MANIFEST).write_text(json.dumps({**old, "family": "encoder_classifier", "graphs": {},
                                               "checkpoint": {"sha256": "abc"}}))
    with pytest.raises(ValueError,
                       match=rf"export.json is an export of format {old['format']}, written by an older "
                                         r"version \(expected format 3: .* export again"):
        load_for_inference(folder, backend="onnx")
    assert loader_module._export_digest(folder) is None  # on demand, it is exported (and checked) again


def test_a_refused_on_demand_export_is_one_line_with_the_reason(tmp_path, monkeypatch):
    from src.training.checkpoint import atomic_torch_save

    checkpoint = tmp_path / "model.pt"
    atomic_torch_save({"step": 1, "model": {"w": torch.zeros(2)}}, checkpoint)
    stderr = ("2026-12-07 13:01:16.732 | INFO     | src.export.exporter:export_checkpoint:88 - "
              "export: classifier.onnx written\n"
              "2026-12-07 13:01:17.847 | ERROR    | __main__:main:272 - export: the exported graphs do not "
              "match PyTorch, so the export is refused: batch 1, length 1: "
              "largest |ONNX Runtime - PyTorch| 0.5\n")
    monkeypatch.setattr(subprocess, "run",
                        lambda command, **kwargs: subprocess.CompletedProcess(command, 1, "", stderr))
    with pytest.raises(CheckpointError) as err:
        load_for_inference(checkpoint, backend="onnx")
    assert str(err.value) == (f"exporting {checkpoint} to ONNX failed: the exported graphs do not match "
                              "PyTorch, so the export is refused: batch 1, length 1: "
                              "largest |ONNX Runtime - PyTorch| 0.5")
