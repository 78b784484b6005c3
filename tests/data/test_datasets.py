"""Splits: stratified, deterministic, disjoint; subsets; fingerprints that tell splits apart."""

from __future__ import annotations

import numpy as np
import pytest

from ibit_deploy.data import build_dataset, split_arrays, stratified_split, stratified_subset

LABELS = np.repeat(np.arange(4), [10, 20, 30, 40])


def test_split_is_stratified_disjoint_and_complete():
    train, val = stratified_split(LABELS, 0.2, seed=0)
    assert np.intersect1d(train, val).size == 0
    assert np.array_equal(np.sort(np.concatenate([train, val])), np.arange(len(LABELS)))
    assert np.bincount(LABELS[val]).tolist() == [2, 4, 6, 8]


def test_split_is_deterministic_per_seed():
    a, b = stratified_split(LABELS, 0.2, seed=5), stratified_split(LABELS, 0.2, seed=5)
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert not np.array_equal(stratified_split(LABELS, 0.2, seed=6)[1], a[1])


def test_subset_is_a_stratified_part_of_train():
    train, _ = stratified_split(LABELS, 0.2, seed=0)
    part = stratified_subset(train, LABELS, 0.25, seed=0)
    assert np.isin(part, train).all()
    assert np.bincount(LABELS[part]).tolist() == [2, 4, 6, 8]  # 25% of 8/16/24/32
    assert np.array_equal(stratified_subset(train, LABELS, 1.0, seed=0), train)
    tiny = stratified_subset(train, LABELS, 0.01, seed=0)
    assert np.bincount(LABELS[tiny]).tolist() == [1, 1, 1, 1]  # never drops a class
    with pytest.raises(ValueError, match="subset fraction"):
        stratified_subset(train, LABELS, 0.0, seed=0)


def test_fingerprints_tell_splits_and_parameters_apart():
    spec = "synthetic:96"
    fp = {key: split_arrays(spec, *key)[2] for key in [("train", 0.2, 0), ("val", 0.2, 0), ("train", 0.2, 1),
                                                        ("train", 0.3, 0)]}
    assert len(set(fp.values())) == 4
    assert split_arrays(spec, "train", 0.2, 0)[2] == fp[("train", 0.2, 0)]  # stable
    assert split_arrays(spec, "train", 0.2, 0, subset=0.5)[2] != fp[("train", 0.2, 0)]


def test_dataset_items_and_split_sizes():
    train, info = build_dataset("synthetic:100", "train", val_fraction=0.2, seed=0, subset=0.5)
    val, _ = build_dataset("synthetic:100", "val", val_fraction=0.2, seed=0)
    assert (len(train), len(val)) == (40, 20)
    image, label, index = train[3]
    assert tuple(image.shape) == (1, 28, 28) and 0 <= label < 4 and index == 3
    assert train.fingerprint != val.fingerprint and info.subset == 0.5


def test_mnist5k_is_real_and_balanced():
    images, labels, _ = split_arrays("mnist5k", "val", 0.2, 0)
    assert images.shape == (1000, 28, 28, 1) and np.bincount(labels).tolist() == [100] * 10
    assert images.max() > 200 and images.mean() < 60  # white digits on black
    with pytest.raises(ValueError, match="no separate test split"):
        split_arrays("mnist5k", "test")
