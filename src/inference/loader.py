"""``load_for_inference(path)``: the model and its tokenizers from one checkpoint file, nothing else.

What a checkpoint holds, and which older ones cannot be used alone, is said in
``src/training/checkpoint_format.py``: besides the weights, the validated experiment config (JSON
text), the tokenizers (``tokenizer.json`` text), the special token ids and the model family, all
strings, ints and tensors, so the file loads with ``torch.load(weights_only=True)``: nothing is
unpickled that could run code. Its tensors are
checked against the SHA-256 the file carries (``src/training/checkpoint.py``): an altered file is
refused, naming it.
"""

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from loguru import logger

from src.experiment import ExperimentConfig, validate_config
from src.training.checkpoint import CheckpointError, load_checkpoint
from src.training.checkpoint_format import inference_state, stored_config


@dataclass
class InferenceModel:
    """A trained model in eval mode, on its device, with what it takes to feed it text."""

    model: torch.nn.Module
    config: ExperimentConfig
    # "src", "tgt" (translation) or "text" -> tokenizers.Tokenizer; none for images
    tokenizers: dict[str, Any]
    special_ids: dict[str, int]
    family: str
    step: int
    path: Path
    labels: list[str] = field(default_factory=list)  # a classifier's class names, in id order
    # an image model's input normalisation, the training split's per-channel pixel mean and std (0-1 scale)
    image_stats: dict[str, list[float]] | None = None

    @property
    def device(self) -> torch.device:
        """Where the model's inputs go: its parameters' device; the CPU for a model without any (ONNX
        Runtime)."""
        first = next(self.model.parameters(), None)
        return first.device if first is not None else torch.device("cpu")


# onnx-int8: the export's graphs with int8 linear layers (``export --quantize int8``, src/export/quantize.py).
# A backend rather than a flag: it is a choice of what runs the model, made where the runtime is chosen,
# and it travels as one value through every command, the serving config and the benches.
BACKENDS = ("torch", "onnx", "onnx-int8")
QUANTIZED = {"onnx-int8": "int8"}  # backend -> the manifest's ``quantized`` entry it runs


def load_for_inference(path: str | Path, device: str | torch.device = "auto",
                       backend: str = "torch") -> InferenceModel:
    """Rebuild the model and tokenizers from checkpoint ``path`` alone, on ``device`` (auto: CUDA if present).

    Args:
        path: a checkpoint; with ``backend="onnx"`` also an export folder (``python -m src.main export``).
        device: "auto", "cpu" or "cuda" for PyTorch; the ONNX backend runs on the CPU.
        backend: "torch", or "onnx": the same model on ONNX Runtime (``src/inference/onnx_backend.py``),
            exported first to ``default_export_dir(path)`` unless an export of this very checkpoint is there;
            "onnx-int8": its int8 graphs (exported with ``--quantize int8`` when missing).
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend != "torch":
        return _load_onnx(Path(path), str(device), QUANTIZED.get(backend))
    return _load_torch(Path(path), device)


def _load_torch(path: Path, device: str | torch.device) -> InferenceModel:
    from tokenizers import Tokenizer

    from src.models.builders import build
    from src.training.distributed import resolve_device
    from src.training.finetune import model_weights

    state = inference_state(path)
    config = validate_config(stored_config(state), source=f"config stored in {path}")
    tokenizers = {side: Tokenizer.from_str(text) for side, text in state["tokenizers"].items()}
    special = {k: int(v) for k, v in state["special_ids"].items()}
    labels = list(state.get("labels") or [])
    model = build(config.model, **model_sizes(state["family"], tokenizers, labels, special["pad"]))
    model.load_state_dict(model_weights(state))  # a LoRA checkpoint's adapters merged into the weights
    model = model.to(resolve_device(str(device))).eval()
    return InferenceModel(model, config, tokenizers, special, state["family"], int(state["step"]), path,
                          labels,
                          state.get("image_stats"))


def default_export_dir(checkpoint: Path) -> Path:
    """Where a checkpoint's export goes by default: ``<run>/export``, else ``<name>.export`` beside the
    file."""
    from src.runs import run_dir_of_checkpoint

    run_dir = run_dir_of_checkpoint(checkpoint)
    return run_dir / "export" if run_dir is not None else checkpoint.with_name(f"{checkpoint.stem}.export")


def _load_onnx(path: Path, device: str, quantized: str | None = None) -> InferenceModel:
    """An ``InferenceModel`` whose ``.model`` runs the exported graphs on ONNX Runtime; ``quantized``
    ("int8"): the manifest's graphs of that quantization instead of the float32 ones."""
    from tokenizers import Tokenizer

    from src.inference.onnx_backend import load_onnx_model, quantized_manifest, read_manifest

    if device == "cuda":
        raise ValueError("--backend onnx runs on the CPU (onnxruntime's CPU build); use --device cpu or auto")
    folder = path if path.is_dir() else _fresh_export(path, quantized)
    manifest = read_manifest(folder)
    if quantized is not None:
        manifest = quantized_manifest(manifest, quantized, folder)
    config = validate_config(json.loads((folder / manifest["config"]).read_text(encoding="utf-8")),
                             source=f"config of the export in {folder}")
    tokenizers = {
        side: Tokenizer.from_file(str(folder / name)) for side, name in manifest["tokenizers"].items()}
    special = {k: int(v) for k, v in manifest["special_ids"].items()}
    model = load_onnx_model(folder, manifest, special["pad"], config.model.max_positions)
    return InferenceModel(model, config, tokenizers, special, manifest["family"],
                          int(manifest["checkpoint"]["step"]),
                          path, list(manifest["labels"]), manifest["image_stats"])


EXPORT_TIMEOUT_S = 600.0  # an on-demand export of any model here takes well under this (10-30 s per graph)


def _fresh_export(checkpoint: Path, quantized: str | None = None,
                  timeout_s: float = EXPORT_TIMEOUT_S) -> Path:
    """The export folder of ``checkpoint``, exporting it first (in a subprocess) if missing, of another
    file, or without the ``quantized`` graphs asked for.

    The export runs as ``python -m src.main export``: the exporter (``src/export``) is built on this
    package, so importing it here would make the two packages import each other. It writes into a
    temporary sibling folder that is renamed into place once complete, so two servers starting on
    one checkpoint never write into the same folder: the one that renames second finds the
    winner's export and uses it.
    """
    import shutil
    import subprocess
    import sys
    import tempfile

    # a clear CheckpointError for a file that is not a checkpoint, before exporting
    load_checkpoint(checkpoint)
    folder = default_export_dir(checkpoint)
    digest = file_sha256(checkpoint)
    if _export_digest(folder, quantized) == digest:
        return folder
    logger.info("backend onnx: exporting {} to {} (about 10-30 s per graph)", checkpoint, folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.partial-", dir=folder.parent))
    try:
        command = [sys.executable, "-m", "src.main", "export", str(checkpoint), "--out", str(staging),
                   *(["--quantize", quantized] if quantized else [])]
        try:
            done = subprocess.run(command, cwd=Path(__file__).resolve().parents[2], capture_output=True,
                                  text=True,
                                  timeout=timeout_s, check=False)
        except subprocess.TimeoutExpired:
            raise CheckpointError(f"exporting {checkpoint} to ONNX did not finish within {timeout_s:g} s and "
                                  f"was stopped; run `python -m src.main export {checkpoint}` to see where "
                                  "it stalls, or serve with --backend torch") from None
        if done.returncode != 0:
            refusal = _logged_error(done.stderr)
            # the export command's own one-line error: the reason, as the user would see it
            if refusal is not None:
                raise CheckpointError(f"exporting {checkpoint} to ONNX failed: {refusal}")
            tail = "\n".join(done.stderr.strip().splitlines()[-5:])
            raise CheckpointError(f"exporting {checkpoint} to ONNX failed (exit code "
                                  f"{done.returncode}):\n{tail}")
        _move_into_place(staging, folder, digest, quantized)
    finally:
        shutil.rmtree(staging, ignore_errors=True)  # gone already once renamed
    return folder


def _export_digest(folder: Path, quantized: str | None = None) -> str | None:
    """The SHA-256 of the checkpoint that ``folder`` is a complete, checked export of (with ``quantized``
    graphs, when given); None if it is none.

    An export made before exports were checked against PyTorch (manifest format 1) counts as none, so
    it is exported again, and checked, before it is used.
    """
    from src.inference.onnx_backend import MANIFEST, is_checked

    try:
        manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
        complete = is_checked(manifest) and (quantized is None or quantized in manifest.get("quantized", {}))
        return manifest["checkpoint"]["sha256"] if complete else None
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _logged_error(stderr: str) -> str | None:
    """The message of the last ERROR line loguru wrote to ``stderr`` (``... | ERROR | where - message``), if
    any."""
    import re

    errors = re.findall(r"^\S+ \S+ \| ERROR\s+\| \S+ - (.+)$", stderr, re.MULTILINE)
    return errors[-1].removeprefix("export: ") if errors else None


def _move_into_place(staging: Path, folder: Path, digest: str, quantized: str | None = None) -> None:
    """Rename the complete export ``staging`` to ``folder`` (one atomic rename); keep an export of ``digest``
    already there."""
    import shutil
    import uuid

    if _export_digest(folder, quantized) == digest:  # another process exported the same checkpoint first
        return
    stale = None
    if folder.exists():  # an export of another file, or a half-written one: set aside, removed afterwards
        stale = folder.with_name(f".{folder.name}.stale-{uuid.uuid4().hex[:8]}")
        try:
            folder.rename(stale)
        except FileNotFoundError:  # another process moved it meanwhile
            stale = None
    try:
        staging.rename(folder)
    except OSError:  # another process put its export in place between the check and the rename
        if _export_digest(folder, quantized) != digest:
            raise
    if stale is not None:
        shutil.rmtree(stale, ignore_errors=True)


def file_sha256(path: Path) -> str:
    """SHA-256 of a file (``export.json`` records the checkpoint's, to tell a stale export)."""
    import hashlib

    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def model_sizes(family: str, tokenizers: dict[str, Any], labels: list[str], pad_id: int) -> dict[str, int]:
    """What ``build`` needs besides the model config, from what the checkpoint carries
    (``task.model_sizes()`` at training)."""
    if family == "vit":  # images: no tokenizer, the classes only
        return {"n_classes": len(labels)}
    if family in ("decoder_lm", "encoder_mlm"):
        return {"vocab_size": tokenizers["text"].get_vocab_size(), "pad_id": pad_id}
    if "text" in tokenizers:  # a text classifier: one tokenizer, and its classes
        return {"vocab_size": tokenizers["text"].get_vocab_size(), "n_classes": len(labels), "pad_id": pad_id}
    return {"src_vocab_size": tokenizers["src"].get_vocab_size(),
            "tgt_vocab_size": tokenizers["tgt"].get_vocab_size(),
            "pad_id": pad_id}
