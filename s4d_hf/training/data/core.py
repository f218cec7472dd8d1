"""The data every training run, evaluation and baseline shares: the container, the task names, the byte ids of
language-model data, splitting, checks and normalisation. Readers (:mod:`.user_files`, :mod:`.builtin`) produce it;
nothing here reads files.

Every dataset, built-in or from a user path, arrives as a :class:`DatasetSplits`: three splits of examples plus
metadata. 🤗 Datasets sources and the built-ins (through :func:`~.loading.builtin_dataset_dict`) give lazy
``datasets.Dataset`` splits that decode on access (:func:`is_lazy`); the package's own file readers give lists.
An example is a dict of numpy arrays, raw (not normalised):

* audio-classification: ``{"input_values": (L, C) float32 waveform in [-1, 1], "labels": int}``,
  with ``sampling_rate`` set;
* image-classification: ``{"input_values": (H*W, C) float32 pixel intensities in [0, 1] (uint8 / 255), raster
  order, "labels": int}``, with ``image_size = (H, W)`` (may be left None for square images);
* time-series-classification / -regression: ``{"input_values": (L, C) float32, "labels": int | float | (T,) float}``;
* causal-lm: ``{"input_ids": (L,) int64}`` of ByT5 ids (byte + 3, see :func:`text_to_ids`), ``vocab_size = 259``;
  no labels (the collator sets labels = input_ids).

Normalisation happens later, in :func:`normalize_splits`, exactly as the processor saved with the model does it,
with statistics from the train split only.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from ...processing.timeseries_processing_s4d import transform_series


TASKS = (
    "audio-classification",
    "image-classification",
    "time-series-classification",
    "time-series-regression",
    "causal-lm",
)
CLASSIFICATION_TASKS = ("audio-classification", "image-classification", "time-series-classification")
SPLIT_NAMES = ("train", "eval", "test")
EVAL_FRACTION = 0.1  # of a user dataset's train split, when it has no eval / test split of its own
TEST_FRACTION = 0.1

# Byte-level text: ByT5Tokenizer(extra_ids=0) ids, what the saved S4DByteTokenizer gives.
PAD_ID, EOS_ID, UNK_ID = 0, 1, 2  # <pad>, </s>, <unk>
BYTE_OFFSET = 3  # byte b -> id b + 3
BYTE_VOCAB_SIZE = 256 + BYTE_OFFSET


@dataclasses.dataclass
class DatasetSplits:
    """Train / eval / test examples (see the module docstring for their layout per task) and their metadata.

    A split is a list of examples, or (🤗 Datasets sources, :mod:`.hf_datasets`) a lazy ``datasets.Dataset`` whose
    transform decodes each example on access (:func:`is_lazy`): ``len()``, indexing and iteration work the same;
    transform a split with :func:`map_examples`, slice it with :func:`take`."""

    train: list
    eval: list
    test: list
    id2label: dict[int, str] | None = None
    input_dim: int | None = None
    vocab_size: int | None = None
    sampling_rate: int | None = None
    image_size: tuple[int, int] | None = None  # (height, width) of image datasets
    description: str = ""
    license: str = "unknown"
    citation: str = ""
    # time series: a per-series transform of the raw series the splits hold, applied before normalisation, in training
    # (normalize_splits) and by the saved processor (the keyword arguments downsample, series_features, log_floor of
    # S4DTimeSeriesProcessor and transform_series); input_dim counts the channels it makes
    series_transform: dict | None = None

    @property
    def series_channels(self) -> int | None:
        """Channels of the examples as the splits hold them: 1 where ``series_transform`` computes the model's
        ``input_dim`` channels from a one-channel series (``series_features``), else ``input_dim``."""
        return 1 if (self.series_transform or {}).get("series_features") else self.input_dim


def text_to_ids(text: str | bytes) -> np.ndarray:
    """UTF-8 text (or bytes) -> (n,) int64 ByT5 ids (byte + 3), as ``ByT5Tokenizer(extra_ids=0)`` without special
    tokens (no final ``</s>``)."""
    data = text.encode("utf-8") if isinstance(text, str) else bytes(text)
    return np.frombuffer(data, dtype=np.uint8).astype(np.int64) + BYTE_OFFSET


def decode_bytes(ids) -> str:
    """Token ids -> text; special ids (pad, eos, unk) are dropped, invalid UTF-8 becomes U+FFFD."""
    ids = np.asarray(ids, np.int64)
    return (ids[ids >= BYTE_OFFSET] - BYTE_OFFSET).astype(np.uint8).tobytes().decode("utf-8", errors="replace")


def data_seed(args) -> int:
    """The seed of the data splits (and generated data): --data-seed if given, else --seed.

    args: the parsed train arguments, or a saved run's arguments as a dict (training_args.json).
    """
    get = args.get if isinstance(args, dict) else (lambda key, default=None: getattr(args, key, default))
    value = get("data_seed", None)
    return get("seed", 0) if value is None else value

# ----------------------------------------------------------------------------------------------------------------
# Splitting
# ----------------------------------------------------------------------------------------------------------------

def split_indices(n: int, fractions: tuple[float, ...], seed: int, stratify: np.ndarray | None = None,
                  groups: np.ndarray | None = None) -> list[np.ndarray]:
    """Deterministically cut ``range(n)`` into ``len(fractions) + 1`` disjoint parts: part i gets about
    ``fractions[i] * n`` items (at least one while the last part keeps one), the last part the rest.

    ``groups``: whole groups go to one part (no speaker/subject in two splits). ``stratify``: the items are put in an
    order where every prefix holds the classes in proportion (each class shuffled, then interleaved by relative
    position), so every part is stratified. Every part is returned sorted.
    """
    rng = np.random.default_rng(seed)
    targets, left = [], n
    for f in fractions:
        k = min(max(1, int(round(f * n))), left - 1) if left > 1 else 0
        targets.append(k)
        left -= k
    if groups is not None:
        units = [np.flatnonzero(groups == g) for g in np.unique(groups)]
        units = [units[i] for i in rng.permutation(len(units))]
        parts, u = [], 0
        for k in targets:  # whole units until the part holds at least its target (the last unit always stays)
            part = []
            while len(part) < k and u < len(units) - 1:
                part.extend(units[u].tolist())
                u += 1
            parts.append(part)
        parts.append([i for unit in units[u:] for i in unit.tolist()])
        return [np.sort(np.asarray(p, dtype=np.int64)) for p in parts]
    order = rng.permutation(n)
    if stratify is not None:
        position = np.empty(n)
        for c in np.unique(stratify):
            members = order[stratify[order] == c]  # this class, in random order
            position[members] = (np.arange(len(members)) + 0.5) / len(members)
        order = order[np.argsort(position[order], kind="stable")]
    cuts = np.cumsum([0] + targets)
    parts = [order[a:b] for a, b in zip(cuts[:-1], cuts[1:])] + [order[cuts[-1]:]]
    return [np.sort(p.astype(np.int64)) for p in parts]


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


def quantile_bins(y: np.ndarray, n_bins: int = 5) -> np.ndarray:
    """Regression targets -> quantile bin codes, so a carved eval split covers the whole target range."""
    edges = np.quantile(y, np.linspace(0, 1, n_bins + 1)[1:-1])
    return np.digitize(y, edges)


def subsample(examples, n: int | None, seed: int):
    """A seeded random subset of `n` examples (a list, an array of indices or a lazy split, see :func:`is_lazy`),
    kept in their original order (all of them if n is None). A lazy split stays lazy."""
    if n is None or n >= len(examples):
        return examples
    keep = np.sort(np.random.default_rng(seed).permutation(len(examples))[:n])
    if isinstance(examples, np.ndarray):
        return examples[keep]
    return examples.select(keep) if is_lazy(examples) else [examples[i] for i in keep]


def subsample_splits(splits: DatasetSplits, limits: dict, seed: int) -> DatasetSplits:
    """``max_train_samples`` / ``max_eval_samples`` / ``max_test_samples`` in ``limits``: a seeded subset of that
    split (seeds seed, seed + 1, seed + 2), in place; returns ``splits``."""
    for offset, split in enumerate(SPLIT_NAMES):
        setattr(splits, split, subsample(getattr(splits, split), limits.get(f"max_{split}_samples"), seed + offset))
    return splits

# ----------------------------------------------------------------------------------------------------------------
# Checks (before any training)
# ----------------------------------------------------------------------------------------------------------------

def check_splits(task: str, splits: DatasetSplits, num_labels: int | None = None) -> None:
    """Raise ValueError, before training starts, for anything that would fail later or silently train wrong:
    empty splits, a missing input or label, inconsistent channels (input_dim), labels outside num_labels,
    NaN/inf inputs, image pixels outside [0, 1] or not H*W of them, token ids outside the vocabulary.

    One pass over every example (a lazy split streams, :func:`iter_examples`), except lazy text splits: their
    blocks are byte ids of at least 2 tokens by construction (:func:`~.hf_datasets.text_split`), so only their first
    example is read; a text corpus is not tokenised to be checked."""
    for name in ("train", "eval", "test"):
        if not len(getattr(splits, name)):
            raise ValueError(f"empty dataset: the {name} split has no examples")
    if task == "causal-lm" and splits.vocab_size != BYTE_VOCAB_SIZE:
        raise ValueError(f"causal-lm datasets must use ByT5 ids (byte + 3) with vocab_size={BYTE_VOCAB_SIZE} "
                         f"(the tokenizer saved with the model); got vocab_size={splits.vocab_size}")
    if task == "image-classification":
        if splits.image_size is None:
            raise ValueError("image-classification needs DatasetSplits.image_size = (height, width)")
        H, W = splits.image_size
    key = "input_ids" if task == "causal-lm" else "input_values"
    regression_shape = None
    for name in ("train", "eval", "test"):
        examples = getattr(splits, name)
        if task == "causal-lm" and is_lazy(examples):
            examples = take(examples, 0, 1)
        for i, ex in enumerate(iter_examples(examples)):
            where = f"{name} example {i}"
            if key not in ex:
                raise ValueError(f"{where}: {task} needs {key!r}; got keys {sorted(ex)}")
            x = np.asarray(ex[key])
            if task == "causal-lm":
                if x.ndim != 1 or x.dtype.kind not in "iu" or len(x) < 2:
                    raise ValueError(f"{where}: input_ids must be integers of shape (L,), L >= 2; got {x.dtype} "
                                     f"{x.shape}")
                if x.min() < 0 or x.max() >= splits.vocab_size:
                    raise ValueError(f"{where}: token id {int(x.max())} outside vocab_size={splits.vocab_size}")
                continue
            if x.ndim != 2 or x.shape[0] < 1:
                raise ValueError(f"{where}: input_values must have shape (L, C); got {x.shape}")
            expected = splits.series_channels
            if expected is not None and x.shape[1] != expected:
                computed = " computed from 1 channel (series_features)" if expected != splits.input_dim else ""
                raise ValueError(f"{where}: input_dim mismatch: {x.shape[1]} channels, but the dataset declares "
                                 f"input_dim={splits.input_dim}{computed}")
            if not np.all(np.isfinite(x)):
                raise ValueError(f"{where}: input_values contain NaN or inf")
            if task == "image-classification":
                if x.min() < 0 or x.max() > 1:
                    raise ValueError(f"{where}: image pixels must be in [0, 1] (8-bit values / 255, what the saved "
                                     f"image processor's rescale gives); got values up to {float(x.max()):g}")
                if x.shape[0] != H * W:
                    raise ValueError(f"{where}: {x.shape[0]} pixels, expected H*W = {H}*{W} = {H * W}")
            if "labels" not in ex:
                raise ValueError(f"{where}: labels missing; {task} needs a label for every example")
            y = ex["labels"]
            if task == "time-series-regression":
                shape = np.shape(y)
                if regression_shape is None:
                    regression_shape = shape
                if shape != regression_shape or len(shape) > 1 or not np.all(np.isfinite(y)):
                    raise ValueError(f"{where}: regression labels must be finite numbers of one shape "
                                     f"({regression_shape}); got {y!r}")
            else:
                K = num_labels if num_labels is not None else len(splits.id2label or {})
                if not isinstance(y, (int, np.integer)) or not 0 <= y < K:
                    raise ValueError(f"{where}: label/num_labels mismatch: label {y!r} is not a class index in "
                                     f"0..{K - 1} (num_labels={K})")
    if task == "causal-lm":
        return
    if splits.input_dim is None:
        raise ValueError("the dataset does not declare input_dim (the number of channels)")
    if task in CLASSIFICATION_TASKS and not splits.id2label:
        raise ValueError(f"{task} needs the class names (DatasetSplits.id2label)")
    if task == "audio-classification" and not splits.sampling_rate:
        raise ValueError("audio-classification needs DatasetSplits.sampling_rate")


def with_image_size(splits: DatasetSplits) -> DatasetSplits:
    """Image datasets that leave ``image_size`` None: square images (H = W = sqrt(L)), else a ValueError."""
    if splits.image_size is not None or not splits.train:
        return splits
    length = len(splits.train[0]["input_values"])
    side = int(round(length ** 0.5))
    if side * side != length:
        raise ValueError(f"image-classification: DatasetSplits.image_size is not set and {length} pixels is not a "
                         "square image; set image_size = (height, width)")
    return dataclasses.replace(splits, image_size=(side, side))

# ----------------------------------------------------------------------------------------------------------------
# Statistics and normalisation (as the saved processor)
# ----------------------------------------------------------------------------------------------------------------

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


def fit_normalization(task: str, train) -> dict:
    """Normalisation statistics from the TRAIN split only, the ones stored in the saved processor.

    time series: per-channel mean and (population) std over every time step of every train series;
    images: per-channel mean and std of the [0, 1] pixels; audio: none (each clip is normalised on its own);
    causal-lm: none. ``train``: a list of examples, or a lazy split (a ``datasets.Dataset`` whose transform decodes
    the examples, see :func:`is_lazy`), read one example at a time in two passes (mean, then variance).
    """
    if task.startswith("time-series") or task == "image-classification":
        if is_lazy(train):
            mean, std = _streamed_mean_std(train)
        else:
            x = np.concatenate([np.asarray(ex["input_values"], dtype=np.float64) for ex in train])
            mean, std = x.mean(0), x.std(0)
        std = np.where(std < 1e-8, 1.0, std)  # a constant channel stays centred, not divided by zero
        return {"mean": mean.astype(np.float32), "std": std.astype(np.float32)}
    return {}


def _streamed_mean_std(examples) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and population std (float64) over every time step, one example in memory at a time."""
    total, count = 0.0, 0
    for ex in iter_examples(examples):
        x = np.asarray(ex["input_values"], dtype=np.float64)
        total = total + x.sum(0)
        count += x.shape[0]
    if not count:
        raise ValueError("fit_normalization: the train split has no time steps")
    mean = total / count
    sum_sq = 0.0
    for ex in iter_examples(examples):
        d = np.asarray(ex["input_values"], dtype=np.float64) - mean
        sum_sq = sum_sq + (d * d).sum(0)
    return mean, np.sqrt(sum_sq / count)


def is_lazy(examples) -> bool:
    """A lazy split: a ``datasets.Dataset`` whose transform decodes its examples on access (the 🤗 Datasets reader,
    :mod:`.hf_datasets`), not a list of examples. ``len()``, indexing and iteration give the same example dicts."""
    return hasattr(examples, "with_transform") and hasattr(examples, "format")


def iter_examples(examples, batch_size: int = 32):
    """The examples of a split one at a time. A ``datasets.Dataset`` (a lazy split, :func:`is_lazy`) is read
    ``batch_size`` rows per formatting call (``Dataset.iter``): about 3 times faster than row by row, where each row
    is formatted (and transformed) alone, while holding only ``batch_size`` decoded examples."""
    if not is_lazy(examples):
        yield from examples
        return
    for batch in examples.iter(batch_size=batch_size):
        keys = list(batch)
        for i in range(len(batch[keys[0]]) if keys else 0):
            yield {k: batch[k][i] for k in keys}


def map_examples(examples, fn):
    """``fn(example) -> example`` over a split: a list gives a list; a lazy split (:func:`is_lazy`) gives the same
    dataset with ``fn`` applied on access (nothing is decoded now)."""
    if not is_lazy(examples):
        return [fn(ex) for ex in examples]
    transform = examples.format["format_kwargs"].get("transform") if examples.format["type"] == "custom" else None
    if transform is None:
        raise ValueError("map_examples: a datasets.Dataset split must carry its decoding transform (with_transform)")
    return examples.with_transform(ChainedTransform(transform, fn))


class ChainedTransform:
    """A batch transform, then ``fn`` on each resulting example (picklable when ``fn`` is)."""

    def __init__(self, transform, fn):
        self.transform, self.fn = transform, fn

    def __call__(self, batch: dict) -> dict:
        out = self.transform(batch)
        keys = list(out)
        n = len(out[keys[0]]) if keys else 0
        rows = [self.fn({k: out[k][i] for k in keys}) for i in range(n)]
        if not rows:
            return out
        return {k: [row[k] for row in rows] for k in rows[0]}


def take(examples, start: int = 0, stop: int | None = None):
    """``examples[start:stop]`` for a list, or the same rows of a lazy split (still lazy)."""
    if not is_lazy(examples):
        return examples[start:stop]
    n = len(examples)
    stop = n if stop is None else min(stop, n)
    return examples.select(range(min(start, stop), stop))


def normalize_input(task: str, x: np.ndarray, stats: dict) -> np.ndarray:
    """One example's (L, C) input as the processor presents it to the model.

    audio: (x - mean_t x) / sqrt(var_t x + 1e-7) per channel (transformers' zero-mean unit-variance norm);
    images ([0, 1] pixels) and time series: (x - mean) / std with the train statistics.
    """
    x = np.asarray(x, dtype=np.float32)
    if task == "audio-classification":
        return ((x - x.mean(0)) / np.sqrt(x.var(0) + 1e-7)).astype(np.float32)
    if task == "image-classification" or task.startswith("time-series"):
        return ((x - stats["mean"]) / stats["std"]).astype(np.float32)
    return x


def normalize_splits(task: str, splits: DatasetSplits) -> tuple[DatasetSplits, dict]:
    """Apply :func:`normalize_input` to every example, with statistics fitted on train; returns (splits, stats).
    Lazy splits (:func:`is_lazy`) stay lazy: the normalisation is applied on access."""
    if task == "causal-lm":
        return splits, {}
    if task.startswith("time-series") and splits.series_transform:
        transform = _SeriesTransform(splits.series_transform)
        splits = dataclasses.replace(splits, **{name: map_examples(getattr(splits, name), transform)
                                                for name in ("train", "eval", "test")})
    stats = fit_normalization(task, splits.train)
    normalize = _Normalize(task, stats)
    return dataclasses.replace(splits, train=map_examples(splits.train, normalize),
                               eval=map_examples(splits.eval, normalize),
                               test=map_examples(splits.test, normalize)), stats


class _SeriesTransform:
    """One example with the splits' ``series_transform`` applied (the saved processor's :func:`transform_series`)."""

    def __init__(self, options: dict):
        self.options = options

    def __call__(self, ex: dict) -> dict:
        return {**ex, "input_values": transform_series(ex["input_values"], **self.options).astype(np.float32)}


class _Normalize:
    """One example with :func:`normalize_input` applied (a picklable callable for lazy splits)."""

    def __init__(self, task: str, stats: dict):
        self.task, self.stats = task, stats

    def __call__(self, ex: dict) -> dict:
        return {**ex, "input_values": normalize_input(self.task, ex["input_values"], self.stats)}
