"""A character-level tokenizer, saved as a Hugging Face ``tokenizers.Tokenizer`` like the BPE ones.

One token per character seen in the training text, after the four special tokens at ids 0-3
(``<pad>``, ``<s>``, ``</s>``, ``<unk>``, as ``src/data/tokenizer.py``), in code-point order. A
``WordLevel`` model over those characters, a pre-tokenizer that isolates every character
(Oniguruma's ``(?m).`` also matches newlines), and a ``Fuse`` decoder that joins them again: so
``decode(encode(x)) == NFC(x)`` for any text of seen characters, spaces and newlines included,
and a checkpoint carries it as a JSON string exactly as it carries a BPE tokenizer.
"""

from collections import Counter
from collections.abc import Iterable
from pathlib import Path

from loguru import logger
from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers

from src.data.special_tokens import SPECIAL_TOKENS, UNK

VISIBLE = {" ": "▁", "\n": "↵", "\t": "⇥"}  # how whitespace is drawn on heatmap axes


def char_tokenizer(characters: Iterable[str]) -> Tokenizer:
    """A tokenizer with the special tokens, then ``characters`` (deduplicated, sorted)."""
    vocab = {token: i for i, token in enumerate(SPECIAL_TOKENS)}
    for ch in sorted(set(characters) - set(vocab)):
        vocab[ch] = len(vocab)
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token=UNK))
    tokenizer.normalizer = normalizers.NFC()
    tokenizer.pre_tokenizer = pre_tokenizers.Split(Regex(r"(?m)."), behavior="isolated")
    tokenizer.decoder = decoders.Fuse()
    tokenizer.add_special_tokens(SPECIAL_TOKENS)  # so that decode(skip_special_tokens=True) drops them
    return tokenizer


def train_char(texts: Iterable[str], path: Path, min_frequency: int = 1) -> Path:
    """The characters of ``texts`` (the training split only) seen at least ``min_frequency`` times, saved."""
    import unicodedata

    counts: Counter = Counter()
    for text in texts:
        counts.update(unicodedata.normalize("NFC", text))
    tokenizer = char_tokenizer(ch for ch, n in counts.items() if n >= min_frequency)
    tokenizer.save(str(path))
    logger.info("character tokenizer: {} characters + {} special tokens -> {}",
                tokenizer.get_vocab_size() - 4, 4, path)
    return path


def char_labels(tokenizer: Tokenizer, ids: list[int]) -> list[str]:
    """Each id's character, whitespace made visible (the heatmap axis labels at character level)."""
    return [VISIBLE.get(t, t) for t in (tokenizer.id_to_token(int(i)) or f"<id {i}>" for i in ids)]
