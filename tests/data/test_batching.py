"""Token-budget sampler: budget, coverage, determinism, exact resume; efficiency; collation."""

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from src.data.batching import (
    TokenBudgetBatchSampler,
    collate_translation,
    fill_batches,
    padding_efficiency,
    random_batches,
)
from src.data.special_tokens import PAD_ID

MAX_TOKENS = 512


def lengths(n: int = 3000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Sentence-like lengths: log-normal source, target about 1.1x the source with noise."""
    rng = np.random.default_rng(seed)
    src = np.clip(rng.lognormal(2.5, 0.5, n).astype(int), 2, 100)
    tgt = np.clip((src * rng.normal(1.1, 0.15, n)).astype(int), 2, 100)
    return src, tgt


def sampler(shuffle: bool = True, seed: int = 0, **kw) -> TokenBudgetBatchSampler:
    src, tgt = lengths()
    return TokenBudgetBatchSampler(src, tgt, MAX_TOKENS, shuffle=shuffle, seed=seed, **kw)


@pytest.mark.parametrize("shuffle", [True, False])
def test_every_pair_once_and_budget_respected(shuffle):
    s = sampler(shuffle)
    src, tgt = lengths()
    batches = list(s)
    assert sorted(i for b in batches for i in b) == list(range(len(src)))
    assert all(len(b) * max(src[b].max(), tgt[b].max()) <= MAX_TOKENS for b in batches)
    assert len(batches) == len(s.batches(0))


def test_same_seed_same_batches_other_epoch_or_seed_different():
    assert sampler(seed=3).batches(0) == sampler(seed=3).batches(0)
    assert sampler(seed=3).batches(0) != sampler(seed=3).batches(1)
    assert sampler(seed=3).batches(0) != sampler(seed=4).batches(0)


def test_a_finished_pass_rewinds_and_set_epoch_changes_the_order():
    s = sampler()
    first = list(s)
    assert s.state_dict() == {"epoch": 0, "position": 0}
    assert list(s) == first
    s.set_epoch(1)
    assert list(s) == s.batches(1) != first


@pytest.mark.parametrize("stop", [0, 1, 7])
def test_resume_mid_epoch_yields_exactly_the_remaining_batches(stop):
    reference = sampler(seed=5)
    reference.set_epoch(2)
    full = list(reference)

    interrupted = sampler(seed=5)
    interrupted.set_epoch(2)
    it = iter(interrupted)
    seen = [next(it) for _ in range(stop)]
    state = interrupted.state_dict()
    assert state == {"epoch": 2, "position": stop}

    resumed = sampler(seed=5)
    resumed.load_state_dict(state)
    resumed.set_epoch(2)  # a training loop calling set_epoch for the current epoch keeps the position
    assert seen + list(resumed) == full
    assert resumed.state_dict() == {"epoch": 2, "position": 0}


def test_resume_with_the_trainer_loop_pattern():
    """``yield from sampler; sampler.set_epoch(epoch + 1)``: an interruption anywhere, even
    after the last batch of an epoch, continues exactly where the uninterrupted stream was."""

    def stream(s):
        while True:
            yield from s
            s.set_epoch(s.state_dict()["epoch"] + 1)

    n_epoch0 = len(sampler(seed=9).batches(0))
    total = 2 * n_epoch0 + 5
    reference = stream(sampler(seed=9))
    expected = [next(reference) for _ in range(total)]
    for cut in (5, n_epoch0, n_epoch0 + 3):
        first = sampler(seed=9)
        it = stream(first)
        head = [next(it) for _ in range(cut)]
        resumed = sampler(seed=9)
        resumed.load_state_dict(first.state_dict())
        rest = stream(resumed)
        assert head + [next(rest) for _ in range(total - cut)] == expected


def test_load_state_dict_rejects_positions_past_the_epoch():
    s = sampler()
    with pytest.raises(ValueError, match=r"0 <= position <= \d+"):
        s.load_state_dict({"epoch": 0, "position": len(s) + 1})


def test_pair_longer_than_budget_is_an_error():
    with pytest.raises(ValueError, match=r"pair 1 alone needs 600 tokens, more than max_tokens=512"):
        TokenBudgetBatchSampler([3, 600], [4, 5], MAX_TOKENS)


def test_token_budget_beats_random_batching():
    src, tgt = lengths()
    budget = sampler().batches(0)
    naive = random_batches(len(src), round(len(src) / len(budget)), seed=0)
    assert padding_efficiency(budget, src, tgt) >= 0.9
    assert padding_efficiency(naive, src, tgt) < 0.7


def test_padding_efficiency_by_hand():
    # batch [0, 1]: real 2+4 + 3+3 = 12, padded 2*4 + 2*3 = 14; batch [2]: real 2, padded 2
    assert padding_efficiency([[0, 1], [2]], [2, 4, 1], [3, 3, 1]) == pytest.approx(14 / 16)


def test_fill_batches_greedy():
    sizes = np.array([1, 2, 2, 3, 4])
    assert fill_batches(np.arange(5), sizes, 6) == [[0, 1, 2], [3], [4]]


def test_collate_pads_with_pad_id():
    batch = collate_translation(
        [{"src_ids": [5, 6, 2], "tgt_ids": [1, 7, 2]}, {"src_ids": [8, 2], "tgt_ids": [1, 9, 9, 9, 2]}]
    )
    assert batch["src"].dtype == torch.long and batch["src"].shape == (2, 3) and batch["tgt"].shape == (2, 5)
    assert batch["src"].tolist() == [[5, 6, 2], [8, 2, PAD_ID]]
    assert batch["tgt"][0].tolist() == [1, 7, 2, PAD_ID, PAD_ID]


def test_works_as_a_dataloader_batch_sampler():
    src, tgt = lengths(200)
    data = [{"src_ids": [7] * int(s), "tgt_ids": [8] * int(t)} for s, t in zip(src, tgt)]
    s = TokenBudgetBatchSampler(src, tgt, MAX_TOKENS, seed=1)
    loader = DataLoader(data, batch_sampler=s, collate_fn=collate_translation)
    batches = list(loader)
    assert len(batches) == len(s.batches(0))
    assert sum(b["src"].shape[0] for b in batches) == 200
    assert all(b["src"].numel() <= MAX_TOKENS and b["tgt"].numel() <= MAX_TOKENS for b in batches)


# --- data parallel: the sharded stream ----------------------------------------------------------------
def take(stream, n: int) -> list[list[int]]:
    return [next(stream) for _ in range(n)]


@pytest.mark.parametrize("world_size", [2, 4])  # 87 batches an epoch: neither divides it
def test_ranks_together_read_the_single_process_stream_across_epochs(world_size):
    """Round-robin dealing of the endless global order: batch g goes to rank g % world_size, and an
    epoch whose batch count is not a multiple of the world size flows into the next one, no batch lost."""
    n_epoch = len(sampler().batches(0))
    rounds = (2 * n_epoch) // world_size + 3  # past two epoch boundaries
    single = take(sampler().stream(), rounds * world_size)
    ranks = [take(sampler(rank=r, world_size=world_size).stream(), rounds) for r in range(world_size)]
    interleaved = [ranks[g % world_size][g // world_size] for g in range(rounds * world_size)]
    assert interleaved == single
    assert n_epoch % world_size, "the case worth testing: an epoch that does not split evenly"
    assert single[:n_epoch] == sampler().batches(0) and single[n_epoch:2 * n_epoch] == sampler().batches(1)


def test_every_rank_holds_the_same_state_after_each_round_and_a_resume_is_exact():
    world = 2
    samplers = [sampler(rank=r, world_size=world) for r in range(world)]
    streams = [s.stream() for s in samplers]
    n_epoch = len(samplers[0].batches(0))
    for _ in range(n_epoch // world + 2):  # into epoch 1
        for st in streams:
            next(st)
        assert samplers[0].state_dict() == samplers[1].state_dict()
    state = samplers[1].state_dict()
    assert state["epoch"] == 1 and state["position"] == (n_epoch // world + 2) * world - n_epoch
    uninterrupted = take(streams[1], 7)
    resumed = sampler(rank=1, world_size=world)
    resumed.load_state_dict(state)
    assert take(resumed.stream(), 7) == uninterrupted
    # and the single-process sampler resumes from the same state onto the same global order
    single = sampler()
    single.load_state_dict(state)
    assert take(single.stream(), 14)[1::2] == uninterrupted


def test_the_stream_resumes_from_a_state_saved_at_an_epoch_end_by_the_epoch_iterator():
    s = sampler()
    n_epoch = len(list(s))  # state (0, 0) again after a full pass; a checkpoint mid-way saved (0, n)
    end_of_epoch = sampler()
    end_of_epoch.load_state_dict({"epoch": 0, "position": n_epoch})
    assert next(end_of_epoch.stream()) == sampler().batches(1)[0]


def test_sharding_arguments_are_checked():
    with pytest.raises(ValueError, match="rank=2, world_size=2"):
        sampler(rank=2, world_size=2)
    with pytest.raises(ValueError, match="read stream"):
        iter(sampler(rank=0, world_size=2)).__next__()
