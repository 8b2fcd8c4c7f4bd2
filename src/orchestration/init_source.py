"""``model.init_from`` resolved at ``train``'s start, before any step: to a Hugging Face folder (whose sizes
then replace the config's) or a checkpoint file, or refused in one line.

What the source may be, in the order it is tried:

1. a local Hugging Face folder (``config.json`` + weights): BERT, GPT-2 or ViT. Its ``config.json`` sets
   the model's sizes and switches (``src/models/hf_config.py``: the folder's sizes win over the YAML's,
   and the keys it changed are logged); its ``tokenizer.json`` replaces the trained tokenizer;
2. a checkpoint file of this project (``.pt``), or a run folder: its best checkpoint, whose sizes win as a
   folder's do;
3. ``NAME:TAG`` or a 32-character ClearML model id: the registry's model, downloaded (needs a server);
4. a run id, a run name or ``latest`` under ``output_dir``: that run's best checkpoint.

The training loop then loads it (``src/training/init_from.py``); a resume never does.

``train --queue`` resolves every source but the registry's on the enqueuing machine (``fetch=False``): a
``NAME:TAG`` or model id stays in the queued config, and the steps that read it (tokenize, train) resolve
it where they run (``source_here``, ``resolve_in_step``), on the agent, as a clone of the step in the web
UI does. A path stays a path: an agent that shares the filesystem reads it; one that lacks it fails
before training, in one line that says to register the model and name it by ``NAME:TAG`` or its id.

``training.distill_from`` (the teacher of a distillation, ``src/training/distillation.py``) takes the same
sources, located the same way (``resolve_distill_from``): the student gets the teacher's sizes and half its
layers, and the tokenize step the teacher's tokenizer.
"""

import json
import re
import socket
from pathlib import Path

from loguru import logger

from src.config.base import config_to_dict
from src.experiment import ExperimentConfig, validate_config
from src.models.hf_config import InitSourceError, hf_model_keys, hf_vocab_size, is_hf_folder, read_hf_config

MODEL_ID = re.compile(r"[0-9a-f]{32}")
# the keys that make a checkpoint's model what it is (its tensor shapes and its arithmetic): the checkpoint's
# win over the config's; dropout, pooling and the attention pattern stay the config's
SIZE_KEYS = ("d_model", "n_heads", "n_kv_heads", "n_encoder_layers", "n_decoder_layers", "d_ff",
             "max_positions", "type_vocab_size", "embedding_norm", "norm", "bias", "activation",
             "positional_encoding", "norm_first", "final_norm", "layer_norm_eps", "rope_base", "tie_output",
             "share_embeddings", "image_size", "patch_size", "in_channels")


def resolve_init_from(cfg: ExperimentConfig, fetch: bool = True) -> ExperimentConfig:
    """``cfg`` with ``model.init_from`` as a path that exists and the source's sizes, checked for the family
    and the vocabulary; unchanged without ``init_from``, or (``fetch=False``, ``train --queue``) when it
    names a registry model, which the steps on the agent fetch."""
    source = cfg.model.init_from
    if source is None or (not fetch and is_registry_reference(source)):
        return cfg
    path, hf_folder = locate(source, cfg.output_dir)
    return _from_hf_folder(cfg, path) if hf_folder else _from_checkpoint(cfg, path)


def locate(source: str, output_dir: str) -> tuple[Path, bool]:
    """The Hugging Face folder or checkpoint file ``source`` names, and whether it is a folder (the order
    of the module docstring); refused in one line when there is none."""
    path = Path(source).expanduser()
    if is_hf_folder(path):
        return path, True
    from src.runs import RunNotFoundError, resolve_checkpoint

    if path.is_file() or path.is_dir():
        try:
            return resolve_checkpoint(path, output_dir), False
        except RunNotFoundError as err:
            raise InitSourceError(f"model.init_from={source}: {err}") from None
    if is_registry_reference(source):
        return _registry_checkpoint(source), False
    if "/" in source or path.suffix == ".pt":
        raise InitSourceError(f"model.init_from={source}: no such file or folder (expected a Hugging Face "
                              "folder with config.json, a checkpoint .pt, a run, or a registry NAME:TAG)")
    try:
        return resolve_checkpoint(source, output_dir), False
    except RunNotFoundError as err:
        raise InitSourceError(f"model.init_from={source} is no folder, file or registry NAME:TAG, and no "
                              f"run: {err}") from None


def is_registry_reference(source: str) -> bool:
    """``NAME:TAG`` or a 32-hex-digit ClearML model id, where no file or folder has that name (``locate``'s
    order: a path here wins)."""
    path = Path(source).expanduser()
    return not (path.is_file() or path.is_dir()) and (":" in source or MODEL_ID.fullmatch(source) is not None)


# what a step that lacks a path says (on an agent: a path of the machine that enqueued the pipeline)
REGISTER_HINT = ("a path is read on the machine that runs the step; for a ClearML agent, register the model "
                 "(a run's register step does, online or after import-offline) and set NAME:TAG or its "
                 "model id instead")


def check_reachable(key: str, source: str) -> None:
    """A source that is a path must exist where the step runs; refused in one line naming it otherwise. A
    registry reference, or a run's name or id (looked up under ``output_dir``), passes."""
    path = Path(source).expanduser()
    if is_registry_reference(source) or path.exists():
        return
    if path.is_absolute() or "/" in source or path.suffix == ".pt":
        raise InitSourceError(f"{key}={source}: no such file or folder on this machine "
                              f"({socket.gethostname()}); {REGISTER_HINT}")


def source_here(key: str, source: str, output_dir: str) -> str:
    """``source`` as a path on the machine that runs the step: a registry model downloaded, a path checked,
    a run resolved to its checkpoint (the tokenize step reads only the tokenizer the weights carry)."""
    check_reachable(key, source)
    if Path(source).expanduser().exists():
        return source
    try:
        return str(locate(source, output_dir)[0])
    except InitSourceError as err:  # the shared locating code names the key init_from
        raise InitSourceError(str(err).replace("model.init_from", key)) from None


def resolve_in_step(cfg: ExperimentConfig) -> ExperimentConfig:
    """The train step's config with its sources resolved where it runs: a registry model (kept by ``train
    --queue``) downloaded here and its sizes set, a path checked to exist here; a source resolved at
    ``train``'s start resolves to itself."""
    for key, source in (("model.init_from", cfg.model.init_from),
                        ("training.distill_from", cfg.training.distill_from)):
        if source is not None:
            check_reachable(key, source)
    return resolve_distill_from(resolve_init_from(cfg))


def _from_hf_folder(cfg: ExperimentConfig, folder: Path) -> ExperimentConfig:
    """The folder's sizes in place of the config's (logged), and its vocabulary checked against the
    tokenizer the run will use."""
    from src.training.init_from import check_vocabulary, source_tokenizer

    hf_config = read_hf_config(folder)
    keys = hf_model_keys(hf_config, cfg.model.family, str(folder))
    for key in ("image_size", "in_channels"):  # these describe the data, which the weights cannot change
        if key in keys and keys[key] != getattr(cfg.model, key):
            raise InitSourceError(f"model.init_from={folder} is a ViT for model.{key}={keys[key]}, the data "
                                  f"have model.{key}={getattr(cfg.model, key)}")
    if cfg.task != "image_classification":
        specials = ("pad", "bos", "eos", "unk") if cfg.task == "language_modeling" else ("pad",)
        tokenizer = source_tokenizer(str(folder), specials=specials)
        rows = hf_vocab_size(hf_config)
        if tokenizer is not None:
            check_vocabulary(str(folder), rows, tokenizer.get_vocab_size(), "config.json's vocab_size")
            logger.info(f"model.init_from={folder}: the tokenizer is its tokenizer.json "
                        f"({tokenizer.get_vocab_size()} tokens)")
        elif cfg.tokenizer.kind in ("bpe", "word") and rows != cfg.tokenizer.vocab_size:
            # the run trains its own, of tokenizer.vocab_size tokens (characters and bytes: known after
            # tokenizing, and checked when the train step starts)
            raise InitSourceError(f"model.init_from={folder}: vocabulary mismatch: config.json's vocab_size "
                                  f"is {rows}, tokenizer.vocab_size={cfg.tokenizer.vocab_size} (the folder "
                                  "has no tokenizer.json: set tokenizer.vocab_size to its size, or add it)")
    return _with_sizes(cfg, keys, str(folder), str(folder / "config.json"))


def _from_checkpoint(cfg: ExperimentConfig, checkpoint: Path) -> ExperimentConfig:
    """The checkpoint's family checked; its sizes in place of the config's, as a folder's (logged)."""
    from src.training.checkpoint_format import stored_config
    from src.training.init_from import checkpoint_state

    state = checkpoint_state(str(checkpoint), cfg.model.family)
    stored = stored_config(state)["model"]
    unused = {"encoder_classifier": "n_decoder_layers", "encoder_mlm": "n_decoder_layers",
              "vit": "n_decoder_layers",
              "decoder_lm": "n_encoder_layers"}  # the family builds no such stack
    keys = {key: stored[key] for key in SIZE_KEYS if key in stored and key != unused.get(cfg.model.family)}
    return _with_sizes(cfg, keys, str(checkpoint), f"{checkpoint} (from {cfg.model.init_from})")


def _with_sizes(cfg: ExperimentConfig, keys: dict, init_from: str, source: str) -> ExperimentConfig:
    """``cfg`` with the source's model keys and ``init_from`` as the resolved path; each change logged."""
    return _with_model_keys(cfg, keys | {"init_from": init_from}, f"model.init_from={source}")


def _with_model_keys(cfg: ExperimentConfig, keys: dict, label: str,
                     training: dict | None = None) -> ExperimentConfig:
    """``cfg`` with ``keys`` in its model section (and ``training`` in its training section), validated; each
    changed size logged as set by ``label`` (``model.init_from=...``, ``training.distill_from=...``)."""
    model = config_to_dict(cfg.model)
    changed = {key: (model.get(key), value) for key, value in keys.items()
               if model.get(key) != value and key != "init_from"}
    if changed:
        logger.info(f"{label} sets "
                    + ", ".join(f"model.{key}={new!r} (was {old!r})" for key, (old, new) in changed.items()))
    data = config_to_dict(cfg)
    data["model"] = model | keys
    data["training"] = data["training"] | (training or {})
    return validate_config(data, source=f"config set by {label}")


def _registry_checkpoint(source: str) -> Path:
    """``NAME:TAG`` or a model id: the registered model's weights file, downloaded from the ClearML server."""
    from src.orchestration.model_store import ModelNotFoundError, fetch_model
    from src.orchestration.server import ServerMisconfiguredError, ServerUnreachableError

    name, _, tag = source.partition(":")
    try:
        found = fetch_model(source) if MODEL_ID.fullmatch(source) else fetch_model(name=name, tag=tag or None)
    except (ModelNotFoundError, ServerMisconfiguredError, ServerUnreachableError) as err:
        raise InitSourceError(f"model.init_from={source}: {err}") from None
    # the weights' provenance, for the fine-tuning task's input model (init_model_source)
    source_note(found.local_path).write_text(json.dumps({"model_id": found.id, "model_name": found.name}),
                                             encoding="utf-8")
    return found.local_path


# the keys a student takes from its teacher: every size and switch but the depth, and the pooling the head
# was trained on
STUDENT_KEYS = tuple(key for key in SIZE_KEYS if key not in ("n_encoder_layers", "n_decoder_layers")) + (
    "pooling",)


def resolve_distill_from(cfg: ExperimentConfig, fetch: bool = True) -> ExperimentConfig:
    """``cfg`` with ``training.distill_from`` as the teacher's checkpoint file or folder, and the student's
    model keys the teacher's (``model.n_encoder_layers``: as set, else half the teacher's); unchanged
    without ``distill_from``, or (``fetch=False``) when it names a registry model. A student that cannot
    take the teacher's weights is refused in one line."""
    source = cfg.training.distill_from
    if source is None:
        return cfg
    if cfg.model.init_from is not None:
        raise InitSourceError(f"training.distill_from={source} starts the student from the teacher's layers; "
                              f"model.init_from={cfg.model.init_from} would start it from other weights "
                              "(set one of them)")
    if not fetch and is_registry_reference(source):
        return cfg
    try:
        return _student_of(cfg, source)
    except InitSourceError as err:  # the shared locating and checking code names the key init_from
        raise InitSourceError(str(err).replace("model.init_from", "training.distill_from")) from None


def _student_of(cfg: ExperimentConfig, source: str) -> ExperimentConfig:
    from src.training.init_from import checkpoint_state, source_tokenizer

    if cfg.model.family != "encoder_classifier":
        raise InitSourceError(f"training.distill_from={source}: the student is the teacher's architecture, "
                              f"an encoder_classifier; got model.family={cfg.model.family!r}")
    path, hf_folder = locate(source, cfg.output_dir)
    if hf_folder:
        # BertForSequenceClassification's head reads the pooler on [CLS]
        teacher = hf_model_keys(read_hf_config(path), "encoder_classifier", str(path)) | {"pooling": "cls"}
        from src.models.hf_weights import read_hf_weights

        if not any(name.endswith("classifier.weight") for name in read_hf_weights(path)):
            raise InitSourceError(f"training.distill_from={source} has no classifier: a teacher is a trained "
                                  "classifier (a BertForSequenceClassification folder, or a classifier run), "
                                  "not a pretrained encoder")
    else:
        state = checkpoint_state(str(path), None)
        if state.get("family") != "encoder_classifier":
            raise InitSourceError(f"training.distill_from={source} holds a {state.get('family')!r} model; a "
                                  "teacher is a trained encoder_classifier (e.g. an imdb-classifier run)")
        from src.training.checkpoint_format import stored_config

        teacher = stored_config(state)["model"]
    if source_tokenizer(str(path)) is None:
        raise InitSourceError(f"training.distill_from={source}: the teacher carries no tokenizer; the "
                              "student must read the teacher's token ids")
    layers, half = teacher["n_encoder_layers"], max(1, teacher["n_encoder_layers"] // 2)
    chosen = cfg.model.n_encoder_layers if "n_encoder_layers" in cfg.model.model_fields_set else half
    if chosen > layers:
        raise InitSourceError(f"training.distill_from={source}: a student of model.n_encoder_layers={chosen} "
                              f"cannot take the weights of a teacher of {layers} layers (expected 1 to "
                              f"{layers}; by default {half}, half)")
    keys = {key: teacher[key] for key in STUDENT_KEYS if key in teacher} | {"n_encoder_layers": chosen}
    return _with_model_keys(cfg, keys, f"training.distill_from={path}", {"distill_from": str(path)})


def source_note(weights: Path) -> Path:
    """The file beside downloaded registry weights that names the model they came from."""
    return weights.with_name(weights.name + ".source.json")


def init_model_source(init_from: str) -> dict[str, str] | None:
    """The model a resolved ``model.init_from`` (or ``training.distill_from``) path came from, for the train
    task's input model (its lineage in the ClearML web UI): ``{"model_id", "model_name"}`` for the registry's
    weights; for a run's checkpoint, its train step's model, with the task and the offline session that made
    it (an offline model gets its server id when that session is imported). None for a Hugging Face folder or
    a loose file.
    """
    from src.runs import read_json, run_dir_of_checkpoint

    path = Path(init_from)
    if source_note(path).is_file():
        return json.loads(source_note(path).read_text(encoding="utf-8"))
    run_dir = run_dir_of_checkpoint(path) if path.is_file() else None
    output = (read_json(run_dir / "status.json").get("steps", {}).get("train", {}).get("output") or {}
              if run_dir is not None else {})
    if not output.get("model_id"):
        return None
    source = {"model_id": str(output["model_id"]), "task_id": str(output.get("task_id", ""))}
    session = run_dir / "train" / "clearml_offline" / f"{source['task_id']}.zip"
    return source | ({"session": str(session)} if session.is_file() else {})
