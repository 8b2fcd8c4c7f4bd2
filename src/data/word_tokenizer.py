"""A word-level tokenizer: the whitespace-separated words of the training split, as a
``tokenizers.Tokenizer``.

For inputs whose words are a small closed set, such as ListOps (``[MAX``, ``]``, ``7``; see
``src/data/listops.py``), where subwords would only blur the symbols. A ``WordLevel`` model over
the words seen at least ``min_frequency`` times in training (the most frequent first, at most
``vocab_size`` ids with the four special tokens at 0-3, as ``src/data/tokenizer.py``), an NFC
normaliser, a pre-tokenizer that splits at whitespace only, and the default decoder, which joins
words with single spaces: ``decode(encode(x)) == " ".join(x.split())`` for text of seen words;
an unseen word is ``<unk>``.
"""

from collections.abc import Iterable
from pathlib import Path

from loguru import logger
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers

from src.data.special_tokens import BOS_ID, EOS_ID, PAD_ID, SPECIAL_TOKENS, UNK, UNK_ID


def new_word_tokenizer() -> Tokenizer:
    """An untrained word-level tokenizer with the normaliser and pre-tokenizer described above."""
    tokenizer = Tokenizer(models.WordLevel(unk_token=UNK))
    tokenizer.normalizer = normalizers.NFC()
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return tokenizer


def train_word(texts: Iterable[str], path: Path, vocab_size: int, min_frequency: int = 1) -> Path:
    """The words of ``texts`` (the training split only), at most ``vocab_size`` ids in all, saved."""
    tokenizer = new_word_tokenizer()
    trainer = trainers.WordLevelTrainer(vocab_size=vocab_size, min_frequency=min_frequency,
                                        special_tokens=SPECIAL_TOKENS, show_progress=False)
    tokenizer.train_from_iterator(texts, trainer=trainer)
    ids = [tokenizer.token_to_id(t) for t in SPECIAL_TOKENS]
    if ids != [PAD_ID, BOS_ID, EOS_ID, UNK_ID]:
        raise RuntimeError(f"special token ids: expected {[PAD_ID, BOS_ID, EOS_ID, UNK_ID]}, got {ids}")
    tokenizer.save(str(path))
    logger.info("word tokenizer: {} words + {} special tokens -> {}",
                tokenizer.get_vocab_size() - len(SPECIAL_TOKENS),
                len(SPECIAL_TOKENS), path)
    return path
