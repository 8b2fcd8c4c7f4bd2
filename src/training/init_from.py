"""``model.init_from``: start a run from existing weights instead of random ones.

The training loop (``src/training/trainer.py``) builds the model as always and, before the optimizer sees
it and never on a resume, calls ``initialise_from``. By then the source is a path
(``src/orchestration/init_source.py`` resolves runs, run ids, ``latest`` and the registry to a checkpoint
file at ``train``'s start, and sets the sizes of a Hugging Face folder):

- a Hugging Face folder: BERT, GPT-2 or ViT weights under our names (``src/models/hf_weights.py``);
- a checkpoint of this project (``.pt``): its ``model`` tensors as they are (a LoRA checkpoint's with its
  adapters merged into the weights, ``src/training/finetune.py``).

Every tensor of the model that the source has, with the same shape, is loaded; the rest keep their fresh
initialisation (a classifier's head on a pretrained encoder); what the source has and the model does not
is ignored (BERT's masked-LM head). One table says which is which. A tensor of another shape is refused,
naming it and both shapes: a model of other sizes is a config error, not a partial start.

The tokenizer comes with the weights (``source_tokenizer``): the tokenize step encodes with it instead of
training one, so the ids mean what the pretrained embeddings learned.
"""

from dataclasses import dataclass, field
from pathlib import Path

from loguru import logger
from torch import Tensor, nn

from src.models.hf_config import InitSourceError, hf_vocab_size, is_hf_folder, read_hf_config

# a checkpoint's family -> the families it may start (the same model; a new pretraining family adds itself)
FAMILIES_THAT_LOAD = {family: {family} for family in (
    "encoder_decoder", "lstm_classifier", "gru_classifier", "rnn_classifier", "decoder_lm", "vit")}
# a masked-LM pretrained encoder and a classifier share the embeddings and encoder (src/models/masked_lm.py)
FAMILIES_THAT_LOAD |= {"encoder_mlm": {"encoder_mlm", "encoder_classifier"},
                       "encoder_classifier": {"encoder_classifier", "encoder_mlm"}}


@dataclass
class LoadReport:
    """Which tensors came from the source, which kept their fresh initialisation, which were left out."""

    source: str
    loaded: list[str] = field(default_factory=list)
    new: list[str] = field(default_factory=list)  # the model's, not in the source
    ignored: list[str] = field(default_factory=list)  # the source's, not in the model
    key: str = "init_from"  # what the table is headed by (a distillation's student: distill_from)

    def table(self) -> str:
        """One table: a row per kind, its count and its tensors (the first few)."""
        rows = [("loaded", self.loaded), ("newly initialised", self.new), ("ignored", self.ignored)]
        lines = [f"{self.key} {self.source}:", f"  {'tensors':<18} {'count':>5}  names"]
        for kind, names in rows:
            shown = ", ".join(names[:4]) + (f", ... ({len(names) - 4} more)" if len(names) > 4 else "")
            lines.append(f"  {kind:<18} {len(names):>5}  {shown or '-'}")
        return "\n".join(lines)


def load_matching(model: nn.Module, source: dict[str, Tensor], name: str,
                  ignored: list[str] | None = None) -> LoadReport:
    """Copy every tensor of ``source`` that ``model`` has into it; a shape mismatch raises, naming the tensor.

    Tied tensors (the encoder classifier's ``embeddings.src``/``tgt``, a decoder's tied head) are one
    parameter under two names: they are filled together and counted once.
    """
    own = model.state_dict(keep_vars=True)
    names_of: dict[int, list[str]] = {}
    for key, tensor in own.items():
        names_of.setdefault(id(tensor), []).append(key)
    report = LoadReport(name, ignored=sorted([k for k in source if k not in own] + list(ignored or [])))
    values = {}
    for names in names_of.values():
        found = next((k for k in names if k in source), None)
        if found is None:
            report.new.append(names[0])
            continue
        expected, got = tuple(own[found].shape), tuple(source[found].shape)
        if expected != got:
            raise InitSourceError(f"model.init_from={name}: tensor {found} has shape {got}, the model's is "
                                  f"{expected} (the source is a model of other sizes)")
        values.update({k: source[found] for k in names})
        report.loaded.append(names[0])
    model.load_state_dict(values, strict=False)
    return report


def initialise_from(model: nn.Module, source: str, family: str,
                    vocab_size: int | None = None) -> LoadReport:
    """Load ``source`` (a Hugging Face folder or a checkpoint file) into the freshly built ``model`` and log
    the table. ``vocab_size``: the run's tokenizer's, checked against the source's token table."""
    state, ignored = source_state(source, family, vocab_size)
    report = load_matching(model, state, source, ignored)
    if not report.loaded:
        raise InitSourceError(f"model.init_from={source}: none of its tensors is a tensor of this "
                              f"{family} model")
    logger.info(report.table())
    return report


def source_state(source: str, family: str, vocab_size: int | None) -> tuple[dict[str, Tensor], list[str]]:
    """The source's tensors under our names, and the Hugging Face names no mapping uses."""
    if is_hf_folder(source):
        from src.models.hf_config import hf_model_keys
        from src.models.hf_weights import HF_MAPPINGS, read_hf_weights

        config = read_hf_config(source)
        hf_model_keys(config, family, source)  # a wrong family's folder: refused here too
        check_vocabulary(source, hf_vocab_size(config), vocab_size, "config.json's vocab_size")
        hf_state = read_hf_weights(source)
        ours, used = HF_MAPPINGS[config["model_type"]](hf_state)
        return ours, [name for name in hf_state if name not in used]
    from src.training.finetune import model_weights

    state = checkpoint_state(source, family)
    return model_weights(state), []  # a LoRA run's adapters merged into its weights


def checkpoint_state(source: str, family: str | None) -> dict:
    """A checkpoint file's contents; refused when it is no checkpoint or (``family`` given) another
    family's."""
    from src.training.checkpoint import CheckpointError, load_checkpoint

    path = Path(source)
    if not path.is_file():
        raise InitSourceError(f"model.init_from={source}: no such file or folder (expected a Hugging Face "
                              "folder with config.json, a checkpoint .pt, a run, or a registry NAME:TAG)")
    try:
        state = load_checkpoint(path)
    except CheckpointError as err:  # not a checkpoint, or an altered one
        raise InitSourceError(f"model.init_from: {err}") from None
    stored = state.get("family")
    if family is not None and stored is not None and family not in FAMILIES_THAT_LOAD.get(stored, set()):
        takes = sorted(k for k, v in FAMILIES_THAT_LOAD.items() if family in v)
        raise InitSourceError(f"model.init_from={source} holds a {stored!r} model; model.family={family!r} "
                              f"starts from {takes}")
    return state


def check_vocabulary(source: str, rows: int | None, vocab_size: int | None, where: str) -> None:
    """The source's token table must have a row per token of the run's tokenizer."""
    if rows is not None and vocab_size is not None and rows != vocab_size:
        raise InitSourceError(f"model.init_from={source}: vocabulary mismatch: {where} is {rows}, the "
                              f"run's tokenizer has {vocab_size} tokens (use the tokenizer that came with "
                              "the weights)")


def source_tokenizer(source: str, side: str = "text", specials: tuple[str, ...] = ("pad",)):
    """The tokenizer that comes with ``source``: a Hugging Face folder's ``tokenizer.json`` (its own
    normaliser, lower-casing included, and its ``[CLS] ... [SEP]`` template), or the one a checkpoint carries
    for ``side``; None when the source has none (a ViT, a GPT-2 folder saved without one): the run then
    trains its own, whose size ``check_vocabulary`` compares.

    A folder's tokenizer is refused unless the ``specials`` the task relies on have this project's ids
    (``src/data/special_tokens.py``): classification pads with id 0, which BERT's ``[PAD]`` is.
    """
    from tokenizers import Tokenizer

    if not is_hf_folder(source):
        text = (checkpoint_state(source, family=None).get("tokenizers") or {}).get(side)
        return Tokenizer.from_str(text) if text is not None else None
    path = Path(source) / "tokenizer.json"
    if not path.is_file():
        return None
    tokenizer = Tokenizer.from_file(str(path))
    tokenizer.no_padding()  # batches pad themselves; a saved max_length would cut texts behind our back
    tokenizer.no_truncation()
    check_special_ids(tokenizer, source, specials)
    return tokenizer


def check_special_ids(tokenizer, source: str, specials: tuple[str, ...]) -> None:
    from src.data.special_tokens import BOS, BOS_ID, EOS, EOS_ID, PAD, PAD_ID, UNK, UNK_ID

    names = {"pad": ((PAD, "[PAD]"), PAD_ID), "bos": ((BOS, "[CLS]"), BOS_ID),
             "eos": ((EOS, "[SEP]"), EOS_ID), "unk": ((UNK, "[UNK]"), UNK_ID)}
    for special in specials:
        spellings, expected = names[special]
        got = {token: tokenizer.token_to_id(token) for token in spellings
               if tokenizer.token_to_id(token) is not None}
        if expected not in got.values():
            raise InitSourceError(f"model.init_from={source}: tokenizer.json's {special} token is "
                                  f"{got or 'absent'}; this task needs it at id {expected} "
                                  f"({' or '.join(spellings)})")
