"""A small random BERT saved as a Hugging Face folder with a WordPiece ``tokenizer.json``, as a pretrained
model arrives (``config.json``, ``model.safetensors``, ``tokenizer.json``), for ``model.init_from`` tests."""

from pathlib import Path

import torch
import transformers
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

WORDS = (
    "the film was great and the acting superb but the plot was slow and long i loved it hated it "
    "a dull boring movie with a wonderful cast brilliant terrible awful good bad story ending"
)


def wordpiece_tokenizer(vocab_size: int = 120) -> Tokenizer:
    """BERT's tokenizer pipeline: lower-casing BertNormalizer, BertPreTokenizer, WordPiece, and the
    ``[CLS] $A [SEP]`` template; ``[PAD]`` is id 0 as in BERT's vocabulary."""
    tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.decoder = decoders.WordPiece()
    trainer = trainers.WordPieceTrainer(
        vocab_size=vocab_size, special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    )
    tokenizer.train_from_iterator([WORDS] * 3, trainer=trainer)
    cls, sep = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", cls), ("[SEP]", sep)]
    )
    tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")  # as sentence-transformers saves it: we drop it
    return tokenizer


def save_bert_folder(
    folder: Path, *, layers: int = 1, width: int = 32, positions: int = 128, mlm: bool = False, seed: int = 0
) -> Path:
    """A random BertForSequenceClassification (or BertForMaskedLM) and its tokenizer in ``folder``."""
    tokenizer = wordpiece_tokenizer()
    config = transformers.BertConfig(
        vocab_size=tokenizer.get_vocab_size(),
        hidden_size=width,
        num_hidden_layers=layers,
        num_attention_heads=2,
        intermediate_size=2 * width,
        max_position_embeddings=positions,
    )
    torch.manual_seed(seed)
    model = (transformers.BertForMaskedLM if mlm else transformers.BertForSequenceClassification)(config)
    model.save_pretrained(folder)
    tokenizer.save(str(Path(folder) / "tokenizer.json"))
    return Path(folder)
