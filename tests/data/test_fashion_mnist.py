"""The IDX reader and the Fashion-MNIST split, on tiny IDX files written here (no dataset needed)."""

import gzip
import json

import numpy as np
import pytest

from src.data.fashion_mnist import (
    CLASS_NAMES,
    FILES,
    IMAGE_MAGIC,
    LABEL_MAGIC,
    load_splits,
    prepare_fashion_mnist,
    read_fashion_mnist,
    read_idx,
    split_train,
    validation_indices,
)


def write_idx(path, array: np.ndarray, magic: int | None = None) -> None:
    """IDX: magic (0, 0, 0x08 = uint8, ndim), one big-endian uint32 per dimension, the bytes."""
    magic = (0x0800 | array.ndim) if magic is None else magic
    header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in array.shape)
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def fake_dataset(root, n_train=40, n_test=20, side=28):
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    arrays = {}
    for split, (images, labels) in FILES.items():
        n = n_train if split == "train" else n_test
        arrays[split] = (rng.integers(0, 256, (n, side, side)), np.arange(n) % 10)
        write_idx(root / images, arrays[split][0])
        write_idx(root / labels, arrays[split][1])
    return arrays


@pytest.mark.parametrize("name", ["images-idx3-ubyte", "images-idx3-ubyte.gz"])
def test_read_idx_returns_the_written_array(tmp_path, name):
    array = np.arange(2 * 3 * 4).reshape(2, 3, 4)
    write_idx(tmp_path / name, array)
    read = read_idx(tmp_path / name, IMAGE_MAGIC)
    assert read.dtype == np.uint8 and read.shape == (2, 3, 4) and (read == array).all()
    assert read_idx(tmp_path / name, IMAGE_MAGIC, max_items=1).shape == (1, 3, 4)


def test_read_idx_checks_the_magic_number_and_the_length(tmp_path):
    write_idx(tmp_path / "labels.gz", np.arange(5))
    with pytest.raises(ValueError, match="magic number 0x00000801, expected 0x00000803"):
        read_idx(tmp_path / "labels.gz", IMAGE_MAGIC)
    header = LABEL_MAGIC.to_bytes(4, "big") + (10).to_bytes(4, "big")
    (tmp_path / "short").write_bytes(header + bytes(3))
    with pytest.raises(ValueError, match="truncated"):
        read_idx(tmp_path / "short", LABEL_MAGIC)


def test_missing_files_name_the_install_command(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"bash \.ci/install.*apt-get install dataset-fashion-mnist"):
        read_fashion_mnist(tmp_path)


def test_reader_caps_rows_and_keeps_labels(tmp_path):
    arrays = fake_dataset(tmp_path)
    splits = read_fashion_mnist(tmp_path, max_rows=15)
    assert splits["train"][0].shape == (15, 28, 28) and splits["test"][0].shape == (15, 28, 28)
    assert (splits["train"][1] == arrays["train"][1][:15]).all()


def test_validation_split_is_fixed_by_the_salt_and_disjoint(tmp_path):
    first, again = validation_indices(100, 0.2, "a"), validation_indices(100, 0.2, "a")
    assert len(first) == 20 and (first == again).all()
    assert not (first == validation_indices(100, 0.2, "b")).all()
    assert len(validation_indices(100, 7, "a")) == 7  # a count instead of a fraction
    images, labels = np.arange(100)[:, None, None], np.arange(100) % 10
    parts = split_train((images, labels), 0.2, "a")
    held, kept = parts["validation"][0].ravel(), parts["train"][0].ravel()
    assert set(held) == set(first) and set(held).isdisjoint(kept) and len(held) + len(kept) == 100
    with pytest.raises(ValueError, match="between 1 and 99"):
        validation_indices(100, 100, "a")


def test_prepare_saves_uint8_splits_and_a_card(tmp_path):
    arrays = fake_dataset(tmp_path / "raw")
    card = prepare_fashion_mnist(tmp_path / "raw", tmp_path / "out", 10, "salt")
    assert card["counts"] == {"train": 30, "validation": 10, "test": 20} and card["labels"] == list(
        CLASS_NAMES)
    assert sum(card["class_balance"]["train"].values()) == 30 and card["class_balance"]["test"]["Bag"] == 2
    splits = load_splits(tmp_path / "out")
    assert splits["test"][0].dtype == np.uint8 and (splits["test"][0] == arrays["test"][0]).all()
    json.dumps(card)  # the card is an artifact: plain JSON
