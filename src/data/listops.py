"""ListOps, generated as the Long Range Arena generates it: nested list operations over digits.

ListOps (Nangia & Bowman 2018, "ListOps: A Diagnostic Dataset for Latent Tree Learning", NAACL
Student Research Workshop, arXiv:1804.06028) is a 10-class task: an expression such as
``[MAX 2 9 [MIN 4 7 ] 0 ]`` is labelled with its value, 9. Its operators are ``[MAX``, ``[MIN``, ``[MED``
(median, rounded down) and ``[SM`` (sum modulo 10), each closed by ``]``; the arguments are digits
0-9 or further expressions. A model must follow the whole tree to get the label, so every token can
matter, however far from the root.

The Long Range Arena (Tay et al., "Long Range Arena: A Benchmark for Efficient Transformers",
arXiv:2011.04006, 2020, ICLR 2021, Sec. 2.2.1; generator ``lra_benchmarks/data/listops.py`` of
google-research/long-range-arena) made it long: trees of depth up to 10 with up to 10 arguments per
operator, kept when their length (operators, ``]`` and digits) lies strictly between 500 and 2000.
``generate_listops`` follows that generator step for step: a node shallower than the maximum depth
is an operator with probability ``VALUE_P`` = 0.25, else a digit (at the maximum depth, always a
digit); an operator draws its argument count in [2, max_args], then its arguments, then itself,
with the same ``random`` calls in the same order. So ``generate_listops(n, seed=s)`` yields the
trees that LRA's ``generate_tree`` yields after ``random.seed(s)``, kept or rejected alike; only
the order differs (LRA writes its set of trees in hash order, here the order of generation). As in
LRA, a tree already kept does not count again, so no text repeats.

Two string forms of the same tree:

- ``parentheses=True``: the ``Source`` column of LRA's TSV files, with the binarised tree of
  Nangia & Bowman written in ``( ... )``: ``( ( ( [MAX 2 ) 9 ) ] )`` for ``[MAX 2 9 ]``, one
  pair per argument and per operator, so 3n - 2 tokens for a tree of length n.
- ``parentheses=False`` (what the data source uses by default): the same tokens without the
  parentheses, ``[MAX 2 9 ]``, whose whitespace-token count is exactly the length. LRA's input
  pipeline never shows its models the parentheses either: its ``tfds.deprecated.text.Tokenizer``
  (``alphanum_only=True``, the default) drops every non-alphanumeric character, so its models read
  ``MAX 2 9``, without the brackets too. Here ``]`` stays: without it the text no longer
  determines the value (``[MAX 1 [MIN 2 3 ] 4 ]`` and ``[MAX 1 [MIN 2 3 4 ] ]`` would read alike).

``evaluate_listops`` computes the value from either string with a stack, independently of the
generator's tree. Bounds are inclusive here: LRA's ``500 < length < 2000`` is
``min_length=501, max_length=1999``, the defaults.

Speed (measured on this project's 2-core CPU, Python 3.11, with other jobs running): 2,000
LRA-sized examples (501-1999 tokens) in 1.8 s, 5,000 in 4.6 s (5.9 s with parentheses), 10,000
in 9 s: about 12 trees are drawn per example kept, and the time goes into ``random``'s own calls,
which parity with LRA fixes. Tiny settings (20-100 tokens, depth <= 5): 5,000 in 0.3 s.
"""

import random
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from src.data.text_classification import LabelledRows

MIN, MAX, MED, SUM_MOD, END = "[MIN", "[MAX", "[MED", "[SM", "]"
OPERATORS = [MIN, MAX, MED, SUM_MOD]  # LRA's order: rng.choice over this list picks the operator
VALUES = range(10)
VALUE_P = 0.25  # chance that a node above the maximum depth is an operator (LRA: r <= VALUE_P)
LRA_MIN_LENGTH, LRA_MAX_LENGTH = 501, 1999  # LRA keeps 500 < length < 2000
LRA_MAX_DEPTH, LRA_MAX_ARGS = 10, 10
LONGEST_TOKEN = max(map(len, [*OPERATORS, END, *map(str, VALUES)]))  # "[MAX": 4 characters
# an operator with its arguments drawn, not yet applied: (operator, [argument trees])
Tree = int | tuple[str, list["Tree"]]


@dataclass(frozen=True)
class ListOpsExample:
    """One expression: its text, its value (the class) and its length (tokens without parentheses)."""

    text: str
    label: int
    length: int


def apply_operator(op: str, args: list[int]) -> int:
    """The value of ``op`` over digit arguments; the median of an even count is the mean of the middle
    two rounded down, as LRA's ``int(np.median(...))``."""
    if op == MAX:
        return max(args)
    if op == MIN:
        return min(args)
    if op == SUM_MOD:
        return sum(args) % 10
    if op == MED:
        middle = sorted(args)
        half = len(middle) // 2
        return middle[half] if len(middle) % 2 else (middle[half - 1] + middle[half]) // 2
    raise ValueError(f"unknown ListOps operator {op!r} (expected one of {OPERATORS})")


def draw_tree(rng: random.Random, depth: int, max_depth: int, max_args: int) -> tuple[Tree, int]:
    """LRA's ``generate_tree``: a random tree from ``depth`` down, and its length in tokens."""
    r = rng.random() if depth < max_depth else 1.0
    if r > VALUE_P:
        return rng.choice(VALUES), 1
    length, args = 2, []  # the operator and its "]"
    for _ in range(rng.randint(2, max_args)):
        arg, arg_length = draw_tree(rng, depth + 1, max_depth, max_args)
        args.append(arg)
        length += arg_length
    return (rng.choice(OPERATORS), args), length


def tree_value(tree: Tree) -> int:
    """The value of a tree, the label."""
    if isinstance(tree, int):
        return tree
    op, args = tree
    return apply_operator(op, [tree_value(arg) for arg in args])


def tree_tokens(tree: Tree, parentheses: bool) -> Iterator[str]:
    """The tree as tokens; with ``parentheses``, LRA's binarised form ``( ( ( op a ) b ) ] )``."""
    if isinstance(tree, int):
        yield str(tree)
        return
    op, args = tree
    # (op, a0), then ((op, a0), a1), ..., then (..., "]"): one pair per argument and one for "]"
    if parentheses:
        yield from ["("] * (len(args) + 1)
    yield op
    for arg in args:
        yield from tree_tokens(arg, parentheses)
        if parentheses:
            yield ")"
    yield END
    if parentheses:
        yield ")"


def longest_listops(max_depth: int, max_args: int) -> int:
    """The greatest length a tree can reach: every node above ``max_depth`` an operator with ``max_args``
    arguments."""
    length = 1  # a node at max_depth is a digit
    for _ in range(max_depth - 1):
        length = 2 + max_args * length
    return length


def max_listops_chars(max_length: int, parentheses: bool) -> int:
    """An upper bound on the characters of an expression of at most ``max_length`` tokens.

    Tokens take at most ``LONGEST_TOKEN`` characters and one space each. A tree of length n has
    n - 1 parenthesis pairs (one per argument and one per operator), each adding "( " and " )".
    """
    chars = (LONGEST_TOKEN + 1) * max_length - 1
    return chars + 4 * (max_length - 1) if parentheses else chars


def check_listops_settings(min_length: int, max_length: int, max_depth: int, max_args: int) -> None:
    """ValueError, naming expected and actual values, unless trees of the asked lengths can be drawn
    (``DataConfig`` restates these rules for the ``data.listops_*`` keys)."""
    if max_args < 2:
        raise ValueError(
            f"an operator takes 2 to max_args arguments (expected max_args >= 2, got {max_args})")
    if not 1 <= min_length <= max_length:
        raise ValueError(f"expected 1 <= min_length <= max_length, got min_length={min_length}, "
                         f"max_length={max_length}")
    longest = longest_listops(max_depth, max_args)
    if min_length > longest:
        raise ValueError(f"trees of depth <= {max_depth} with <= {max_args} arguments are at most {longest} "
                         f"tokens long (expected min_length <= {longest}, got {min_length})")


def generate_listops(
    n: int,
    *,
    min_length: int = LRA_MIN_LENGTH,
    max_length: int = LRA_MAX_LENGTH,
    max_depth: int = LRA_MAX_DEPTH,
    max_args: int = LRA_MAX_ARGS,
    seed: int = 0,
    parentheses: bool = False,
    max_draws_per_example: int = 200,
) -> list[ListOpsExample]:
    """``n`` distinct expressions of ``min_length`` to ``max_length`` tokens (inclusive), labelled with their
    value.

    Deterministic given the arguments. Trees are drawn with LRA's rule until ``n`` distinct ones
    fit the lengths; more than ``max_draws_per_example * n`` draws is an error (lengths that the
    depth and argument limits almost never produce) rather than an endless loop.
    """
    check_listops_settings(min_length, max_length, max_depth, max_args)
    rng, seen, examples = random.Random(seed), set(), []
    draws, budget = 0, max_draws_per_example * n
    while len(examples) < n:
        if draws >= budget:
            raise RuntimeError(f"drew {draws} trees and kept {len(examples)} of {n}: lengths "
                               f"{min_length}-{max_length} are too rare at max_depth={max_depth}, "
                               f"max_args={max_args}; widen them")
        tree, length = draw_tree(rng, 1, max_depth, max_args)
        draws += 1
        if not min_length <= length <= max_length:
            continue
        text = " ".join(tree_tokens(tree, parentheses))
        if text in seen:
            continue
        seen.add(text)
        examples.append(ListOpsExample(text, tree_value(tree), length))
    return examples


def evaluate_listops(text: str) -> int:
    """The value of an expression in either string form, read with a stack; ValueError if it is malformed."""
    stack: list[tuple[str, list[int]]] = []
    value = None
    for position, token in enumerate(text.split()):
        if token in ("(", ")"):
            continue
        if value is not None:
            raise ValueError(f"token {position} ({token!r}) follows the end of the expression")
        if token in OPERATORS:
            stack.append((token, []))
        elif token == END:
            if not stack:
                raise ValueError(f"token {position}: ']' closes no operator")
            op, args = stack.pop()
            if not args:
                raise ValueError(f"token {position}: {op} closed with no arguments (expected >= 1)")
            value = _hand_up(stack, apply_operator(op, args))
        elif token.isdigit() and len(token) == 1:
            value = _hand_up(stack, int(token))
        else:
            raise ValueError(f"token {position} is {token!r}; expected an operator {OPERATORS}, ']' or a "
                             "digit 0-9")
    if stack or value is None:
        raise ValueError(f"the expression is incomplete: {len(stack)} operator(s) left open")
    return value


def _hand_up(stack: list[tuple[str, list[int]]], value: int) -> int | None:
    """Give ``value`` to the open operator as an argument; None while one is open, else the final value."""
    if stack:
        stack[-1][1].append(value)
        return None
    return value


def class_counts(examples: list[ListOpsExample]) -> dict[int, int]:
    """Examples per value 0-9 (LRA's classes are far from balanced: MAX and SM pull the values around)."""
    counts = Counter(example.label for example in examples)
    return {value: counts.get(value, 0) for value in VALUES}


def read_listops(data) -> "LabelledRows":
    """``data.listops_rows`` generated expressions as labelled rows (``data``: a ``DataConfig`` with source
    listops). The imports are here so that the generator above needs nothing beyond the standard library."""
    import time

    from loguru import logger

    from src.data.text_classification import LabelledRows

    start = time.perf_counter()
    examples = generate_listops(data.listops_rows, min_length=data.listops_min_length,
                                max_length=data.listops_max_length, max_depth=data.listops_max_depth,
                                max_args=data.listops_max_args, seed=data.listops_seed,
                                parentheses=data.listops_parentheses)
    logger.info("generated {} ListOps expressions ({}-{} tokens, seed {}) in {:.1f} s; values {}",
                len(examples),
                data.listops_min_length, data.listops_max_length, data.listops_seed,
                time.perf_counter() - start,
                class_counts(examples))
    description = (f"ListOps as the Long Range Arena generates it: {len(examples)} expressions of "
                   f"{data.listops_min_length}-{data.listops_max_length} tokens, "
                   f"depth <= {data.listops_max_depth}, "
                   f"<= {data.listops_max_args} arguments, seed {data.listops_seed}"
                   + (", with LRA's parentheses" if data.listops_parentheses else ""))
    return LabelledRows([e.text for e in examples], [e.label for e in examples], Counter(), description)
