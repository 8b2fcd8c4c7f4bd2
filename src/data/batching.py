"""Token-budget batching (like fairseq's ``max_tokens``), padding efficiency and collation.

Cost of a batch: B pairs are padded to the longest source and, separately, the longest target,
so each side holds B * max(len) tokens. The sampler keeps the larger side within the budget:
``B * max_i max(src_len_i, tgt_len_i) <= max_tokens``; both padded tensors therefore fit.
"""

from collections.abc import Iterator, Sequence

import numpy as np
import torch
from loguru import logger
from torch.utils.data import Sampler

from src.data.special_tokens import PAD_ID


class TokenBudgetBatchSampler(Sampler[list[int]]):
    """Groups pairs of similar length and fills each batch up to ``max_tokens`` padded tokens.

    With ``shuffle``, each epoch permutes the indices (seeded by ``seed`` and the epoch), cuts them
    into buckets of ``bucket_size_multiplier`` typical batches, sorts each bucket by length,
    fills batches greedily, and shuffles the batch order. Without it, batches run over the whole
    corpus sorted by length. The same (seed, epoch) always gives the same batches.

    Resuming: ``state_dict()`` is ``{"epoch", "position"}`` where position counts the batches
    this sampler has yielded in the epoch; after ``load_state_dict`` the next iteration yields
    exactly the remaining batches of that epoch. A finished pass rewinds to the start of the
    same epoch; call ``set_epoch(e)`` before each epoch (as with ``DistributedSampler``).
    With a multi-worker DataLoader the sampler runs ahead of training (prefetch), so save
    ``{"epoch": e, "position": batches_trained}`` from the training loop instead.

    Data parallelism (``rank``, ``world_size``): ``stream()`` is the endless global order (epoch 0's
    batches, then epoch 1's, ...) dealt out round-robin: global batch ``g`` goes to rank
    ``g % world_size``. Every rank builds the same global order from the same seed, so no
    communication is needed, and ``position`` counts *global* batches: after each round of
    ``world_size`` batches all ranks hold the same state, and one process reading the same stream
    with ``world_size=1`` sees exactly the batches of all ranks, in order. A round that runs past
    an epoch's end continues into the next epoch, so no batch is dropped or repeated.
    """

    def __init__(
        self,
        src_lengths: Sequence[int],
        tgt_lengths: Sequence[int],
        max_tokens: int,
        *,
        shuffle: bool = True,
        seed: int = 0,
        bucket_size_multiplier: int = 100,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"rank={rank}, world_size={world_size}: expected world_size >= 1 and 0 <= rank "
                             "< world_size")
        self.rank, self.world_size = rank, world_size
        self.src_lengths, self.tgt_lengths, self.sizes = _pair_sizes(src_lengths, tgt_lengths, max_tokens)
        self.max_tokens = max_tokens
        self.shuffle = shuffle
        self.seed = seed
        typical_batch = max(1, max_tokens // max(1, int(self.sizes.mean()))) if len(self.sizes) else 1
        self.bucket_size = bucket_size_multiplier * typical_batch
        self.epoch = 0
        self.position = 0
        self._cached: tuple[int, list[list[int]]] | None = None

    def batches(self, epoch: int) -> list[list[int]]:
        """All batches of ``epoch`` in order (cached for the latest epoch asked for)."""
        if self._cached is None or self._cached[0] != epoch:
            self._cached = (epoch, self._make_batches(epoch))
        return self._cached[1]

    def _make_batches(self, epoch: int) -> list[list[int]]:
        if not self.shuffle:
            return fill_batches(self._by_length(np.arange(len(self.sizes))), self.sizes, self.max_tokens)
        rng = np.random.default_rng([self.seed, epoch])
        order = rng.permutation(len(self.sizes))
        batches: list[list[int]] = []
        for start in range(0, len(order), self.bucket_size):
            bucket = self._by_length(order[start : start + self.bucket_size])
            batches.extend(fill_batches(bucket, self.sizes, self.max_tokens))
        return [batches[i] for i in rng.permutation(len(batches))]

    def _by_length(self, indices: np.ndarray) -> np.ndarray:
        """Sort by the larger side, then source, then target length (stable): neighbours then
        match on both sides, which lifts padding efficiency (0.90 -> 0.93 on Ding sentences)."""
        keys = (self.tgt_lengths[indices], self.src_lengths[indices], self.sizes[indices])
        return indices[np.lexsort(keys)]

    def stream(self) -> Iterator[list[int]]:
        """This rank's batches of the endless global order, from the current ``(epoch, position)`` on.

        The state moves one round (``world_size`` global batches) per batch yielded, before the yield:
        a checkpoint taken after training on it resumes after the whole round.
        """
        if not len(self.sizes):
            raise ValueError("the sampler has no items: an endless stream of batches needs at least one")
        while True:
            round_: list[list[int]] = []
            epoch, position = self.epoch, self.position
            while len(round_) < self.world_size:
                batches = self.batches(epoch)
                taken = batches[position : position + self.world_size - len(round_)]
                round_ += taken
                position += len(taken)
                if position >= len(batches):
                    epoch, position = epoch + 1, 0
            self.epoch, self.position = epoch, position
            yield round_[self.rank]

    def __iter__(self) -> Iterator[list[int]]:
        """One pass over the current epoch (unsharded; data-parallel training reads ``stream()``)."""
        if self.world_size > 1:
            raise ValueError(f"iterating an epoch is unsharded; with world_size={self.world_size} read "
                             "stream()")
        batches = self.batches(self.epoch)
        while self.position < len(batches):
            # counted before the yield: a checkpoint taken after training on it resumes after it
            self.position += 1
            yield batches[self.position - 1]
        self.position = 0

    def __len__(self) -> int:
        return len(self.batches(self.epoch))

    def set_epoch(self, epoch: int) -> None:
        """Start ``epoch`` from its first batch (no-op when already in it, so resuming survives)."""
        if epoch != self.epoch:
            self.epoch, self.position = epoch, 0

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "position": self.position}

    def load_state_dict(self, state: dict[str, int]) -> None:
        epoch, position = int(state["epoch"]), int(state["position"])
        n = len(self.batches(epoch))
        if epoch < 0 or not 0 <= position <= n:
            raise ValueError(
                f"state {state}: expected epoch >= 0 and 0 <= position <= {n} (batches in that epoch)"
            )
        self.epoch, self.position = epoch, position


def _pair_sizes(
    src_lengths: Sequence[int], tgt_lengths: Sequence[int], max_tokens: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    src, tgt = np.asarray(src_lengths, dtype=np.int64), np.asarray(tgt_lengths, dtype=np.int64)
    if src.shape != tgt.shape:
        raise ValueError(f"src_lengths and tgt_lengths differ in size: {src.shape} vs {tgt.shape}")
    sizes = np.maximum(src, tgt)
    if len(sizes) and sizes.max() > max_tokens:
        i = int(sizes.argmax())
        raise ValueError(f"pair {i} alone needs {int(sizes[i])} tokens, more than max_tokens={max_tokens}")
    return src, tgt, sizes


def fill_batches(order: np.ndarray, sizes: np.ndarray, max_tokens: int) -> list[list[int]]:
    """Greedy: add pairs in ``order`` while ``len(batch) * longest <= max_tokens``."""
    batches: list[list[int]] = []
    batch: list[int] = []
    longest = 0
    for i, size in zip(order.tolist(), sizes[order].tolist()):
        if batch and (len(batch) + 1) * max(longest, size) > max_tokens:
            batches.append(batch)
            batch, longest = [], 0
        batch.append(i)
        longest = max(longest, size)
    if batch:
        batches.append(batch)
    return batches


def random_batches(n: int, batch_size: int, seed: int = 0) -> list[list[int]]:
    """The naive baseline: a random permutation cut into batches of ``batch_size`` pairs."""
    order = np.random.default_rng(seed).permutation(n).tolist()
    return [order[i : i + batch_size] for i in range(0, n, batch_size)]


def padding_efficiency(
    batches: Sequence[Sequence[int]], src_lengths: Sequence[int], tgt_lengths: Sequence[int]
) -> float:
    """Real tokens / all tokens after padding each side of each batch to its longest sequence."""
    src, tgt = np.asarray(src_lengths, dtype=np.int64), np.asarray(tgt_lengths, dtype=np.int64)
    real = padded = 0
    for batch in batches:
        s, t = src[list(batch)], tgt[list(batch)]
        real += int(s.sum() + t.sum())
        padded += len(batch) * int(s.max() + t.max())
    return real / padded if padded else 1.0


def collate_translation(examples: Sequence[dict], pad_id: int = PAD_ID) -> dict[str, torch.Tensor]:
    """``[{"src_ids": [...], "tgt_ids": [...]}, ...]`` -> ``{"src": (B, S), "tgt": (B, T)}`` LongTensors."""
    out = {}
    for side in ("src", "tgt"):
        seqs = [torch.as_tensor(e[f"{side}_ids"], dtype=torch.long) for e in examples]
        out[side] = torch.nn.utils.rnn.pad_sequence(seqs, batch_first=True, padding_value=pad_id)
    return out


def build_batch_sampler(split, max_tokens: int, *, shuffle: bool, seed: int, bucket_size_multiplier: int):
    """A sampler over an encoded split (columns ``src_len``, ``tgt_len`` from ``encode_corpus``)."""
    sampler = TokenBudgetBatchSampler(
        split["src_len"][:],
        split["tgt_len"][:],
        max_tokens,
        shuffle=shuffle,
        seed=seed,
        bucket_size_multiplier=bucket_size_multiplier,
    )
    logger.info(
        "token-budget sampler: {} pairs -> {} batches of <= {} tokens", len(split), len(sampler), max_tokens
    )
    return sampler
