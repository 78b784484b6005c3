"""EpochShuffleSampler: per-epoch seeded order, equal padded shards for training, exact shards for evaluation."""

from __future__ import annotations

from ibit_deploy.train.distributed import DistEnv, EpochShuffleSampler


def _shards(length: int, world: int, shuffle: bool, epoch: int = 0) -> list[list[int]]:
    out = []
    for rank in range(world):
        sampler = EpochShuffleSampler(length, DistEnv(rank, world), shuffle=shuffle, seed=4)
        sampler.set_epoch(epoch)
        assert len(list(sampler)) == len(sampler)
        out.append(list(sampler))
    return out


def test_training_shards_cover_everything_with_equal_lengths():
    shards = _shards(11, 3, shuffle=True)
    assert {len(s) for s in shards} == {4}
    assert set().union(*map(set, shards)) == set(range(11))


def test_order_depends_only_on_seed_and_epoch():
    assert _shards(20, 1, True, epoch=3) == _shards(20, 1, True, epoch=3)
    assert _shards(20, 1, True, epoch=3) != _shards(20, 1, True, epoch=4)


def test_evaluation_shards_count_every_sample_once():
    shards = _shards(11, 3, shuffle=False)
    assert sorted(sum(shards, [])) == list(range(11))
