"""``export`` on a full disk says "disk full" naming the graph's file, not that the model's axes are at fault
(issue 26: the exporter's OSError was reported as "does not export with dynamic axes")."""

import builtins
import errno
import os
import re

import pytest
import torch
from torch import nn

from src.export.exporter import GraphSpec, export_graph
from src.storage import StorageError


def test_a_full_disk_while_writing_a_graph_is_disk_full_not_a_dynamic_axis_error(tmp_path, monkeypatch):
    path = tmp_path / "classifier.onnx"
    real_open = builtins.open

    def open_on_a_full_disk(file, mode="r", *args, **kwargs):
        if str(file) == str(path) and "w" in mode:  # this one file: the disk fills as it is written
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(file))
        return real_open(file, mode, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", open_on_a_full_disk)
    batch = torch.export.Dim("batch", min=1, max=64)
    spec = GraphSpec("classifier", nn.Linear(4, 2), (torch.zeros(3, 4),), ("x",), ("logits",),
                     {"x": {0: batch}})
    with pytest.raises(StorageError,
                       match=re.escape(f"disk full: cannot write ONNX graph {path} (")) as caught:
        export_graph(spec, path, "full")
    assert "dynamic axes" not in str(caught.value)
