"""Self-contained checkpoints of every family from untrained tiny models (the tests/inference/test_loader.py
pattern)."""

import json
from collections.abc import Callable
from pathlib import Path

import torch
from datasets import Dataset

from src.config import config_to_dict
from src.data.special_tokens import PAD_ID
from src.data.tokenizer import TokenizerConfig, load_tokenizer, train_one
from src.experiment import load_config, validate_config
from src.inference import inference_fields
from src.inference.loader import model_sizes
from src.models.builders import build
from src.training.checkpoint import atomic_torch_save

SENTENCES = ["Ich habe keine Zeit.", "Das ist gut.", "Wir gehen nach Hause.", "Er liest ein Buch.",
             "I have no time.", "That is good.", "We go home.", "He reads a book."] * 4


def make_checkpoint(root: Path, config_file: str, sides: tuple[str, ...], model: dict | None = None,
                    labels: list[str] | None = None, image_stats: dict | None = None, seed: int = 0,
                    tune: Callable[[torch.nn.Module], None] | None = None) -> Path:
    """Write ``root/run/best.pt`` for ``config_file`` (with ``model`` overrides); tokenizers trained on
    SENTENCES. ``tune``: changes the built model's weights in place before they are saved."""
    root.mkdir(parents=True, exist_ok=True)
    raw = config_to_dict(load_config(config_file))
    raw["model"] |= model or {}
    cfg = validate_config(raw, source=config_file)
    tokenizers = {}
    if sides:
        path = train_one(Dataset.from_dict({"text": SENTENCES}), ["text"],
                         TokenizerConfig(vocab_size=300, min_frequency=1), root / "tokenizer.json")
        tokenizers = {side: load_tokenizer(path) for side in sides}
    family = cfg.model.family
    torch.manual_seed(seed)
    net = build(cfg.model, **model_sizes(family, tokenizers, labels or [], PAD_ID)).eval()
    if family == "encoder_decoder":
        teach_to_copy(net)
    if tune is not None:
        tune(net)
    state = {"step": 11, "model": net.state_dict(), "config": json.dumps(config_to_dict(cfg)),
             **inference_fields(tokenizers, family), "labels": labels or [],
             **({"image_stats": image_stats} if image_stats else {})}
    atomic_torch_save(state, root / "run" / "best.pt")
    return root / "run" / "best.pt"


def teach_to_copy(model: torch.nn.Module, steps: int = 60) -> None:
    """A few Adam steps on copying random token strings (~2 s): an untrained model repeats one token
    whatever the source, which would make token-for-token parity a weak check."""
    from src.data.special_tokens import BOS_ID, EOS_ID

    generator = torch.Generator().manual_seed(0)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(steps):
        src = torch.randint(4, 40, (32, 6), generator=generator)
        tgt = torch.cat([torch.full((32, 1), BOS_ID), src, torch.full((32, 1), EOS_ID)], dim=1)
        logits = model(src, tgt[:, :-1])
        loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), tgt[:, 1:].flatten())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()


def read_pbtxt(path: Path) -> dict:
    """The parts of a Triton ``config.pbtxt`` this project writes: platform, max_batch_size, inputs and
    outputs."""
    import re

    text = path.read_text(encoding="utf-8")
    config = {"name": re.search(r'^name: "([^"]+)"', text, re.MULTILINE).group(1),
              "platform": re.search(r'^platform: "([^"]+)"', text, re.MULTILINE).group(1),
              "max_batch_size": int(re.search(r"^max_batch_size: (\d+)", text, re.MULTILINE).group(1))}
    for side in ("input", "output"):
        block = re.search(rf"^{side} \[\n(.*?)\n\]", text, re.MULTILINE | re.DOTALL).group(1)
        config[side] = {name: (dtype, [int(d) for d in dims.split(",") if d.strip()])
                        for name, dtype, dims in re.findall(r'name: "([^"]+)"\s+data_type: (\w+)\s+dims: '
                                                            r'\[([^\]]*)\]', block)}
    return config


def check_triton_repository(export_dir: Path) -> int:
    """Assert every Triton model's config matches its graph (names, dtypes, ranks, fixed dims); return the
    model count."""
    import onnx

    triton_types = {onnx.TensorProto.INT64: "TYPE_INT64", onnx.TensorProto.FLOAT: "TYPE_FP32",
                    onnx.TensorProto.BOOL: "TYPE_BOOL"}
    models = sorted(p for p in (export_dir / "triton").iterdir() if p.is_dir())
    for folder in models:
        config = read_pbtxt(folder / "config.pbtxt")
        graph = onnx.load(str(folder / "1" / "model.onnx"))
        assert config["name"] == folder.name and config["platform"] == "onnxruntime_onnx" \
            and config["max_batch_size"] > 0
        for side, values in (("input", graph.graph.input), ("output", graph.graph.output)):
            assert list(config[side]) == [v.name for v in values], (folder.name, side)
            for value in values:
                dtype, dims = config[side][value.name]
                shape = value.type.tensor_type.shape.dim
                assert dtype == triton_types[value.type.tensor_type.elem_type], (value.name, dtype)
                assert shape[0].dim_param, \
                    f"{value.name}: the batch axis Triton adds must be dynamic in the graph"
                assert len(dims) == len(shape) - 1, (value.name, dims)  # batch axis implicit
                for d, g in zip(dims, shape[1:]):
                    assert d == (g.dim_value if g.HasField("dim_value") else -1), (value.name, dims)
    return len(models)
