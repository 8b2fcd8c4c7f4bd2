"""Normalisation, filters, de-duplication and the hash split.

Every input row ends up either kept (in exactly one split) or counted under exactly one drop
reason, so ``input rows == kept + dropped`` holds by construction. Reasons, checked in this order:
``not_text`` (None or not a string), ``not_utf8`` (bytes that were not UTF-8), ``empty``,
``too_short``, ``too_long`` (characters, either side), ``length_ratio`` (longer side over shorter
side, in characters), ``duplicate`` (same normalised pair seen before; the first one is kept).
"""

import hashlib
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from src.config.data import DataConfig

SPLITS = ("train", "validation", "test")

_SPACES = re.compile(r"\s+")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u200b\ufeff]")
_SURROGATE = re.compile(r"[\ud800-\udfff]")


def not_utf8(text: str) -> bool:
    """True if ``text`` holds lone surrogates: bytes that were not UTF-8, kept by ``surrogateescape``."""
    return _SURROGATE.search(text) is not None


@dataclass
class CleanPairs:
    """Kept pairs in input order and the count of every dropped row by reason."""

    src: list[str] = field(default_factory=list)
    tgt: list[str] = field(default_factory=list)
    dropped: Counter = field(default_factory=Counter)

    def __len__(self) -> int:
        return len(self.src)


def normalize_text(text: str) -> str:
    """Unicode NFC; control and zero-width characters removed; whitespace runs -> one space; stripped."""
    text = unicodedata.normalize("NFC", text)
    text = _CONTROL.sub("", text)
    return _SPACES.sub(" ", text).strip()


def drop_reason(src: object, tgt: object, cfg: DataConfig) -> str | None:
    """The first filter a raw pair fails, or None. Expects already-normalised text for length checks."""
    if not isinstance(src, str) or not isinstance(tgt, str):
        return "not_text"
    if not_utf8(src) or not_utf8(tgt):
        return "not_utf8"
    if not src or not tgt:
        return "empty"
    shorter, longer = sorted((len(src), len(tgt)))
    if shorter < cfg.min_chars:
        return "too_short"
    if longer > cfg.max_chars:
        return "too_long"
    if longer / shorter > cfg.max_length_ratio:
        return "length_ratio"
    return None


def clean_pairs(
    src: Iterable[object], tgt: Iterable[object], cfg: DataConfig, seen: set[tuple[str, str]] | None = None
) -> CleanPairs:
    """Normalise, filter and de-duplicate. ``seen`` (updated in place) carries pairs kept earlier."""
    seen = set() if seen is None else seen
    out = CleanPairs()
    for s, t in zip(src, tgt, strict=True):
        if isinstance(s, str) and isinstance(t, str) and not (not_utf8(s) or not_utf8(t)):
            s, t = normalize_text(s), normalize_text(t)
        reason = drop_reason(s, t, cfg)
        if reason is None and (s, t) in seen:
            reason = "duplicate"
        if reason is not None:
            out.dropped[reason] += 1
            continue
        seen.add((s, t))
        out.src.append(s)
        out.tgt.append(t)
    return out


def split_hash(text: str, salt: str) -> int:
    """The salted 64-bit blake2b of a text that decides its split (``split_of``; counts in text
    classification)."""
    digest = hashlib.blake2b((salt + "\x00" + text).encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def split_of(src: str, cfg: DataConfig) -> str:
    """Split by a salted hash of the source text alone.

    The hash maps to u in [0, 1): test if u < test_fraction, validation if below test + valid,
    train otherwise. A row's split depends on nothing but its own source text, so adding rows
    never moves existing ones, and identical sources always share a split (no source leaks from
    train into evaluation).
    """
    u = split_hash(src, cfg.split_salt) / 2**64
    if u < cfg.test_fraction:
        return "test"
    if u < cfg.test_fraction + cfg.valid_fraction:
        return "validation"
    return "train"


def assign_splits(pairs: CleanPairs, cfg: DataConfig) -> dict[str, CleanPairs]:
    """Partition kept pairs by ``split_of``; input order is preserved within each split."""
    splits = {name: CleanPairs() for name in SPLITS}
    for s, t in zip(pairs.src, pairs.tgt):
        part = splits[split_of(s, cfg)]
        part.src.append(s)
        part.tgt.append(t)
    return splits
