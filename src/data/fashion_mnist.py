"""Fashion-MNIST (Xiao et al. 2017) from its IDX files: reader, validation split, data card.

Debian's ``dataset-fashion-mnist`` installs the four gzipped IDX files (60,000 training and
10,000 test images of 28 x 28 grey pixels, 10 classes) under ``/usr/share/datasets/fashion-mnist``.
The test files are the test split; the validation split is carved from the training images with
a permutation fixed by ``data.split_salt``, so every run with the same settings holds out the
same images.

IDX (LeCun's MNIST format): a big-endian header, two zero bytes, a dtype code (0x08 = uint8), the
number of dimensions, then one uint32 size per dimension, then the data in row-major order.
"""

import gzip
import hashlib
from pathlib import Path

import numpy as np

CLASS_NAMES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
               "Ankle boot")
FILES = {"train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
         "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")}
IMAGE_MAGIC, LABEL_MAGIC = 0x00000803, 0x00000801  # uint8 with 3 dimensions (N, rows, cols); with 1 (N,)
INSTALL_HINT = "run `bash .ci/install` or `apt-get install dataset-fashion-mnist`"
Split = tuple[np.ndarray, np.ndarray]  # images (N, 28, 28) uint8, labels (N,) uint8


def read_idx(path: str | Path, magic: int, max_items: int | None = None) -> np.ndarray:
    """The array in one IDX file (gzipped if its name ends in .gz), checking its magic number.

    Args:
        path: the IDX file.
        magic: the expected magic number (``IMAGE_MAGIC`` or ``LABEL_MAGIC``).
        max_items: read only the first items along the first dimension; None: all.

    Shape:
        -> (N, *dims) as the header says, dtype uint8.
    """
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        found = int.from_bytes(f.read(4), "big")
        if found != magic:
            raise ValueError(f"{path} is not an IDX file of the expected kind: magic number 0x{found:08x}, "
                             f"expected 0x{magic:08x}")
        dims = [int.from_bytes(f.read(4), "big") for _ in range(magic & 0xFF)]
        n = dims[0] if max_items is None else min(dims[0], max_items)
        size = n * int(np.prod(dims[1:], dtype=np.int64))
        data = np.frombuffer(f.read(size), dtype=np.uint8)
    if data.size != size:
        raise ValueError(f"{path} is truncated: header promises {dims}, read {data.size} of {size} bytes")
    return data.reshape(n, *dims[1:])


def read_fashion_mnist(root: str | Path, max_rows: int | None = None) -> dict[str, Split]:
    """The training and test images and labels, each capped at ``max_rows`` (tiny configs)."""
    root = Path(root)
    missing = [name for files in FILES.values() for name in files if not (root / name).is_file()]
    if missing:
        raise FileNotFoundError(f"Fashion-MNIST not found in {root} (missing {', '.join(missing)}): "
                                f"{INSTALL_HINT}, or set data.fashion_mnist_path")
    splits = {}
    for split, (images, labels) in FILES.items():
        x, y = read_idx(root / images, IMAGE_MAGIC, max_rows), read_idx(root / labels, LABEL_MAGIC, max_rows)
        if len(x) != len(y):
            raise ValueError(f"{root}: {len(x)} {split} images but {len(y)} labels")
        if y.size and int(y.max()) >= len(CLASS_NAMES):
            raise ValueError(f"{root}: {split} label {int(y.max())} outside 0..{len(CLASS_NAMES) - 1}")
        splits[split] = (x, y)
    return splits


def validation_indices(n: int, valid_size: float | int, salt: str) -> np.ndarray:
    """Which of ``n`` training images are held out: a fixed permutation's first ``valid_size``.

    Args:
        n: training images.
        valid_size: a count (int >= 1) or a fraction of ``n`` (float < 1).
        salt: seeds the permutation (``data.split_salt``).
    """
    count = int(valid_size) if valid_size >= 1 else round(n * valid_size)
    if not 0 < count < n:
        raise ValueError(f"the validation split must take between 1 and {n - 1} of {n} training images, got "
                         f"{count}")
    seed = int.from_bytes(hashlib.sha256(salt.encode()).digest()[:8], "big")
    return np.sort(np.random.default_rng(seed).permutation(n)[:count])


def split_train(train: Split, valid_size: float | int, salt: str) -> dict[str, Split]:
    """The training images cut into train and validation; images keep their original order."""
    images, labels = train
    held = np.zeros(len(images), dtype=bool)
    held[validation_indices(len(images), valid_size, salt)] = True
    return {"train": (images[~held], labels[~held]), "validation": (images[held], labels[held])}


def class_balance(labels: np.ndarray) -> dict[str, int]:
    """Images per class name."""
    counts = np.bincount(labels, minlength=len(CLASS_NAMES))
    return {name: int(c) for name, c in zip(CLASS_NAMES, counts)}


def example_indices(labels: np.ndarray, per_class: int) -> list[int]:
    """The first ``per_class`` images of each class, class by class: the data card's grid."""
    return [int(i) for k in range(len(CLASS_NAMES)) for i in np.flatnonzero(labels == k)[:per_class]]


def prepare_fashion_mnist(root: str | Path, out_dir: Path, valid_size: float | int, salt: str,
                          max_rows: int | None = None) -> dict:
    """Read, split and save ``out_dir/dataset/splits.npz`` (uint8); return the data card.

    The npz holds ``{split}_images`` (N, 28, 28) and ``{split}_labels`` (N,) for train,
    validation and test, uncompressed: 55 MB that load in well under a second.
    """
    raw = read_fashion_mnist(root, max_rows)
    splits = {**split_train(raw["train"], valid_size, salt), "test": raw["test"]}
    (out_dir / "dataset").mkdir(parents=True, exist_ok=True)
    np.savez(out_dir / "dataset" / "splits.npz",
             **{f"{name}_{part}": array for name, split in splits.items()
                for part, array in zip(("images", "labels"), split)})
    return {"source": {"description": "Fashion-MNIST (Xiao et al. 2017), Debian dataset-fashion-mnist",
                       "path": str(root)},
            "labels": list(CLASS_NAMES), "image_shape": list(raw["train"][0].shape[1:]),
            "counts": {name: int(len(split[1])) for name, split in splits.items()},
            "class_balance": {name: class_balance(split[1]) for name, split in splits.items()},
            "max_rows": max_rows, "valid_size": valid_size, "split_salt": salt}


def load_splits(data_dir: Path) -> dict[str, Split]:
    """The splits ``prepare_fashion_mnist`` saved under ``data_dir/dataset``."""
    with np.load(data_dir / "dataset" / "splits.npz") as saved:
        return {name: (saved[f"{name}_images"], saved[f"{name}_labels"]) for name in ("train", "validation",
                                                                                      "test")}
