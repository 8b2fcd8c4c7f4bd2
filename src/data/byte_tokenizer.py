"""A byte-level tokenizer: one token per UTF-8 byte, saved as a Hugging Face ``tokenizers.Tokenizer``.

The Long Range Arena's text task (Tay et al. 2021, Sec. 2.2.2) reads IMDB reviews byte by byte,
so that a model must compose characters into words and words into sentiment over 1-4K positions.
The vocabulary is fixed: the four special tokens at ids 0-3 (``<pad>``, ``<s>``, ``</s>``,
``<unk>``, as ``src/data/tokenizer.py``), then byte ``b`` at id ``4 + b``. Nothing is trained.

It is byte-level BPE before its first merge: GPT-2's ``ByteLevel`` pre-tokenizer maps every byte
to a printable stand-in character, a ``BPE`` model with no merges keeps each one a token, and the
``ByteLevel`` decoder maps them back to bytes and decodes UTF-8. There is no normaliser and no
prefix space, so ``decode(encode(x)) == x`` for any text (non-ASCII, newlines, edge spaces), and
``encode(x)`` has ``len(x.encode("utf-8"))`` ids. The one exception, shared with the BPE
tokenizers: text that spells a special token (``<s>``) encodes as that token; the IMDB cleaning
removes such tags. A checkpoint carries it as JSON exactly as it carries a BPE tokenizer, and the
heatmap labels (``src/training/probe.py:token_labels``) decode its bytes as they do BPE's.
"""

from pathlib import Path

from loguru import logger
from tokenizers import Tokenizer, decoders, models, pre_tokenizers

from src.data.special_tokens import SPECIAL_TOKENS, UNK

N_BYTES = 256


def byte_symbols() -> list[str]:
    """GPT-2's printable stand-in for each byte 0-255, in byte order (``bytes_to_unicode``): printable
    Latin-1 bytes stand for themselves, the others for the code points from 256 on."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1),
                 *range(ord("®"), ord("ÿ") + 1)]
    symbols, extra = [], 0
    for byte in range(N_BYTES):
        if byte in printable:
            symbols.append(chr(byte))
        else:
            symbols.append(chr(N_BYTES + extra))
            extra += 1
    return symbols


def byte_tokenizer() -> Tokenizer:
    """The special tokens at ids 0-3, then byte ``b`` at ``4 + b``."""
    vocab = {token: i for i, token in enumerate(SPECIAL_TOKENS)}
    vocab.update({symbol: len(SPECIAL_TOKENS) + byte for byte, symbol in enumerate(byte_symbols())})
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token=UNK))
    # the regex only cuts the text into words for BPE's cache; with no merges every byte stays a token
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.add_special_tokens(SPECIAL_TOKENS)  # so that decode(skip_special_tokens=True) drops them
    return tokenizer


def save_byte_tokenizer(path: Path) -> Path:
    """Write the byte tokenizer's ``tokenizer.json`` (the same file for every corpus)."""
    tokenizer = byte_tokenizer()
    tokenizer.save(str(path))
    logger.info("byte tokenizer: {} bytes + {} special tokens -> {}", N_BYTES, len(SPECIAL_TOKENS), path)
    return path
