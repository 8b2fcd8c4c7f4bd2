"""Reader for the Ding German-English dictionary (Debian package ``trans-de-en``).

A line reads ``de1 | de2 :: en1 | en2``: the i-th German field translates the i-th English field,
and inside a field alternatives are separated by ``; ``. Annotations are removed before pairing:

- ``{}`` grammar: ``{m}``, ``{vt}``, ``{+Gen.}``, irregular forms ``{sought; sought}``;
- ``[]`` usage labels: ``[Br.]``, ``[übtr.]``, ``[zool.]``;
- ``<>`` search keywords and spelling variants: ``<Abfahrtszeitpunkt>``;
- ``()`` glosses and optional words: "If you can't behave (yourself) we'll have to leave." The
  dictionary brackets only material that may be left out, so removing it keeps the shorter
  reading grammatical, while keeping it would teach the model to emit glosses such as "(of a thing)";
- standalone acronyms between slashes: ``/NBCRV/``.

Sentence rule (``is_sentence``), measured on trans-de-en 2023-01-30: a pair of alternatives is a
sentence pair when both sides start with an upper-case letter or digit (after an optional opening
quote), end with ``.``, ``!`` or ``?`` (optionally followed by a closing quote), do not end with a
placeholder abbreviation (``etw.``, ``jdn.``, ``sth.``, ...), and the German side has at least
``min_words`` words. With ``min_words=2`` this gives 23,990 candidate sentence pairs (23,864
after cleaning, 21,725 distinct German sentences; ``min_words`` 1/3/4 give 24,543/23,053/21,609). Every
other aligned field yields one word/phrase pair from its first alternatives (370,947 rows;
the full cross product of alternatives would be about 880k), usable as extra training data.
"""

import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from loguru import logger

from src.data.cleaning import not_utf8

INSTALL_HINT = "install it with `sudo apt-get install trans-de-en` (Debian/Ubuntu) or set data.ding_path"

_INNERMOST_ANNOTATION = re.compile(r"\{[^{}]*\}|\[[^\[\]]*\]|<[^<>]*>|\([^()]*\)")
_ACRONYM = re.compile(r"(?<![^\s;|])/[^\s/;|]+/(?![^\s;|])")
_SPACES = re.compile(r"\s+")
_SPACE_BEFORE_PUNCT = re.compile(r" (?=[.,!?;:])")
_LEFTOVER_BRACKET = re.compile(r"[{}\[\]<>()]")
_SENTENCE_START = re.compile(r"^[\"'„“»«‚‘]?[A-ZÄÖÜ0-9]")
_SENTENCE_END = re.compile(r"[.!?][\"'“”»«‘’]?$")
_PLACEHOLDER_END = re.compile(r"\b(etw|jdn|jdm|jds|sth|sb|usw|etc|bzw|ca|Abk|od)\.$")


@dataclass
class DingPairs:
    """What the reader found. Every candidate pair is one input row; a line that cannot be parsed
    counts as one dropped row, so ``len(sentences) + phrase_rows + sum(dropped)`` is the row total."""

    sentences: list[tuple[str, str]] = field(default_factory=list)
    phrases: list[tuple[str, str]] = field(default_factory=list)  # filled only when asked for
    phrase_rows: int = 0
    dropped: Counter = field(default_factory=Counter)


def strip_annotations(text: str) -> str:
    """Remove ``{}``, ``[]``, ``<>``, ``()`` spans (innermost first, so nesting works) and ``/ACR/``."""
    previous = None
    while previous != text:
        previous, text = text, _INNERMOST_ANNOTATION.sub(" ", text)
    text = _ACRONYM.sub(" ", text)
    text = _SPACES.sub(" ", text).strip()
    return _SPACE_BEFORE_PUNCT.sub("", text)


def split_alternatives(field_text: str) -> list[str]:
    """``"Er ist krank.; Er ist erkrankt."`` -> both sentences; empty alternatives are dropped."""
    return [alt.strip() for alt in field_text.split(";") if alt.strip()]


def is_sentence(text: str, min_words: int = 1) -> bool:
    """The sentence rule of the module docstring, for one side of a pair."""
    return (
        _SENTENCE_START.match(text) is not None
        and _SENTENCE_END.search(text) is not None
        and _PLACEHOLDER_END.search(text) is None
        and len(text.split()) >= min_words
    )


def parse_line(line: str) -> list[tuple[list[str], list[str]]] | str:
    """Aligned fields ``[(german_alternatives, english_alternatives), ...]``, or a drop reason."""
    german, sep, english = line.partition("::")
    if not sep:
        return "malformed_line"
    german_fields = strip_annotations(german).split("|")
    english_fields = strip_annotations(english).split("|")
    if len(german_fields) != len(english_fields):
        return "field_count_mismatch"
    return [(split_alternatives(d), split_alternatives(e)) for d, e in zip(german_fields, english_fields)]


def field_pairs(
    german: list[str], english: list[str], min_words: int
) -> tuple[list[tuple[str, str]], tuple[str, str]]:
    """Sentence pairs of one aligned field (all combinations of sentence alternatives), else
    ``([], phrase_pair)`` built from the first alternative of each side ("" when a side is empty)."""
    sentences = [(d, e) for d in german if is_sentence(d, min_words) for e in english if is_sentence(e)]
    phrase = (german[0] if german else "", english[0] if english else "")
    return sentences, phrase


def read_ding(
    path: str | Path, *, min_words: int = 2, with_phrases: bool = False, max_sentences: int | None = None
) -> DingPairs:
    """Parse the dictionary file. Bytes that are not UTF-8 drop their line (reason ``not_utf8``).

    ``max_sentences`` stops reading once that many sentence pairs are found; phrase rows then
    come from the same lines (a prefix of the dictionary), for quick experiments.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Ding dictionary not found at {path}: {INSTALL_HINT}")
    text = path.read_bytes().decode("utf-8", errors="surrogateescape")
    out = DingPairs()
    n_lines = 0
    for line in text.splitlines():
        if max_sentences is not None and len(out.sentences) >= max_sentences:
            del out.sentences[max_sentences:]
            break
        if not line.strip() or line.startswith("#"):
            continue
        n_lines += 1
        _add_line(line, out, min_words, with_phrases)
    logger.info(
        "ding: {} lines -> {} sentence pairs, {} phrase rows, dropped {}",
        n_lines,
        len(out.sentences),
        out.phrase_rows,
        dict(out.dropped),
    )
    return out


def _add_line(line: str, out: DingPairs, min_words: int, with_phrases: bool) -> None:
    if not_utf8(line):
        out.dropped["not_utf8"] += 1
        return
    fields = parse_line(line)
    if isinstance(fields, str):
        out.dropped[fields] += 1
        return
    for german, english in fields:
        if _LEFTOVER_BRACKET.search(" ".join(german + english)):
            out.dropped["malformed_annotation"] += 1
            continue
        sentences, phrase = field_pairs(german, english, min_words)
        if sentences:
            out.sentences.extend(sentences)
            continue
        out.phrase_rows += 1
        if with_phrases:
            out.phrases.append(phrase)
