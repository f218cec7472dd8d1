"""Fashion-MNIST as pixel sequences, read from Debian's ``dataset-fashion-mnist`` (idx ``.gz`` files)."""

from __future__ import annotations

import gzip
import math
import pathlib
import struct

import numpy as np

from ..core import DatasetSplits, stratified_split
from .common import DatasetNotInstalledError, as_dir, as_float, as_int

FASHION_MNIST_DESCRIPTION = (
    "Fashion-MNIST clothing images as pixel sequences (10 classes, 60,000 train / 10,000 test), "
    "from Debian's dataset-fashion-mnist; MIT licence (Zalando SE; Xiao et al. 2017).")

FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"


FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
                         "Bag", "Ankle boot")


FASHION_MNIST_CITATION = ("Xiao, H., Rasul, K., Vollgraf, R. Fashion-MNIST: a Novel Image Dataset for Benchmarking "
                          "Machine Learning Algorithms. arXiv:1708.07747, 2017.")
_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path) -> np.ndarray:
    """Read an idx file (LeCun's MNIST format, optionally gzipped) into an array of its declared shape.

    Layout: two zero bytes, a dtype code (0x08 ubyte ... 0x0E float64), the number of dimensions d, then d
    big-endian uint32 sizes, then the data in C order.
    """
    raw = pathlib.Path(path).read_bytes()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    if len(raw) < 4 or raw[:2] != b"\x00\x00" or raw[2] not in _IDX_DTYPES:
        raise ValueError(f"read_idx({str(path)!r}): not an idx file (header {raw[:4].hex()})")
    ndim = raw[3]
    shape = struct.unpack(f">{ndim}I", raw[4:4 + 4 * ndim])
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    data = raw[4 + 4 * ndim:]
    expected = math.prod(shape) * dtype.itemsize
    if len(data) != expected:
        raise ValueError(f"read_idx({str(path)!r}): header shape {shape} needs {expected} bytes, file has {len(data)}")
    return np.frombuffer(data, dtype).reshape(shape).astype(dtype.newbyteorder("="))


def load_fashion_mnist(seed: int = 0, *, data_dir=FASHION_MNIST_DIR, image_size=14,
                       eval_fraction=0.1) -> DatasetSplits:
    """Fashion-MNIST 60,000 train / 10,000 test as raster-scan pixel sequences, input_values (image_size², 1).

    image_size: 28 (L=784), 14 (default, L=196: 2x2 average pooling, ~4x cheaper on a CPU) or 7 (L=49).
    Pixels are float32 in [0, 1] (uint8 / 255); normalise in the processor (see `input_stats`).
    eval_fraction: share of the official training split held out per class as the eval split.
    """
    image_size = as_int("image_size", image_size, 1)
    if image_size not in (7, 14, 28):
        raise ValueError(f"option image_size={image_size!r}: expected 28, 14 or 7")
    eval_fraction = as_float("eval_fraction", eval_fraction, 0.0, 0.5)
    data_dir = as_dir("data_dir", data_dir)
    names = {"train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
             "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")}
    splits = {}
    for split, (image_file, label_file) in names.items():
        if not (data_dir / image_file).is_file() or not (data_dir / label_file).is_file():
            raise DatasetNotInstalledError(
                f"Fashion-MNIST not found in {data_dir} (expected {image_file} and {label_file}). Install it with: "
                "apt-get install dataset-fashion-mnist (Debian/Ubuntu), or pass data_dir= a folder with the "
                "original idx .gz files")
        images, labels = read_idx(data_dir / image_file), read_idx(data_dir / label_file)
        if images.ndim != 3 or images.shape[1:] != (28, 28) or labels.shape != (len(images),):
            raise ValueError(f"{data_dir}: expected (N, 28, 28) images and (N,) labels, got {images.shape} "
                             f"and {labels.shape}")
        k = 28 // image_size
        pixels = images.reshape(len(images), image_size, k, image_size, k).mean((2, 4), dtype=np.float32) / 255.0
        pixels = pixels.reshape(len(images), image_size * image_size, 1)
        splits[split] = [{"input_values": x, "labels": int(y)} for x, y in zip(pixels, labels)]
    kept, held = stratified_split([e["labels"] for e in splits["train"]], eval_fraction, seed)
    return DatasetSplits(
        train=[splits["train"][i] for i in kept], eval=[splits["train"][i] for i in held], test=splits["test"],
        id2label=dict(enumerate(FASHION_MNIST_CLASSES)), input_dim=1,
        description=FASHION_MNIST_DESCRIPTION + f" Images {image_size}x{image_size}, raster scan.",
        license="MIT (Zalando SE)", citation=FASHION_MNIST_CITATION)
