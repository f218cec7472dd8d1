"""``--dataset SPEC`` -> :class:`~.core.DatasetSplits`: a built-in dataset's name (:mod:`.builtin`), a path to a
user file or folder (:mod:`.user_files`), or data in 🤗 Datasets (:mod:`.hf_datasets`: a save_to_disk folder, data
files, a builder with a data dir, a Hub id).

Built-in datasets take the 🤗 Datasets path too: :func:`builtin_dataset_dict` turns a loader's examples into a
``datasets.DatasetDict`` with the features a user's save_to_disk folder would have (``ClassLabel`` with the class
names, float32 lists for series, images and waveforms, the sampling rate next to each waveform), and
:func:`~.hf_datasets.dataset_dict_splits` reads it exactly as it reads such a folder. The examples that come out are
the loader's, bit for bit and in the same order (``tests/test_training_data.py`` checks every built-in); they are
just decoded on access, from Arrow, like every 🤗 source. A split a loader already builds as a ``datasets.Dataset``
stays as it is: ``shakespeare`` cuts its plays with the 🤗 text path (:func:`~.hf_datasets.text_split`), and
``spoken-digits`` augments its training clips afresh on every access.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from . import builtin
from .core import TASKS, DatasetSplits, is_lazy, subsample_splits, with_image_size
from .hf_datasets import (
    SUBSET_ARGS,
    HubDatasetUnavailable,
    check_dataset_args,
    dataset_dict_splits,
    hf_source,
    in_memory_dataset,
    load_hf_dataset,
)
from .user_files import load_csv, load_folder, load_npz, load_text


def load_dataset_spec(spec: str, task: str, seed: int = 0, *, block_size: int | None = None,
                      image_size: tuple[int, int] | None = None, builtin_options: dict | None = None,
                      dataset_args: dict | None = None) -> DatasetSplits:
    """``--dataset SPEC`` -> DatasetSplits: a built-in name, a path to an .npz / .csv / .txt file or a folder, or a
    🤗 dataset (see :mod:`.hf_datasets`).

    ``block_size``: tokens per chunk of a .txt file or 🤗 text (default 256); ``image_size``: (H, W) to resize the
    images of a folder or 🤗 dataset to; ``builtin_options``: keyword options of a built-in dataset's loader
    (``--dataset-option``); ``dataset_args``: the 🤗 dataset options (:data:`~.hf_datasets.HF_DATASET_ARGS`, e.g.
    from :func:`~.hf_datasets.hf_dataset_options`); of those, ``max_train_samples`` / ``max_eval_samples`` /
    ``max_test_samples`` also subsample built-in and user-file datasets.
    Image splits always come back with ``image_size`` set (square images inferred, see `with_image_size`).
    """
    splits = _load_dataset_spec(spec, task, seed, block_size, image_size, builtin_options, dataset_args)
    return with_image_size(splits) if task == "image-classification" else splits


def _load_dataset_spec(spec, task, seed, block_size, image_size, builtin_options, dataset_args) -> DatasetSplits:
    options = dict(builtin_options or {})
    if task not in TASKS:
        raise ValueError(f"--task must be one of {', '.join(TASKS)}; got {task!r}")
    hf_args = check_dataset_args(dict(dataset_args or {}), f"--dataset {spec}")
    builtins = builtin.BUILTIN_DATASETS
    not_for_files = sorted(set(hf_args) - set(SUBSET_ARGS))
    if spec in builtins:
        if not_for_files:
            raise ValueError(f"{_flags(not_for_files)}: only for 🤗 datasets; built-in datasets take their own options "
                             "through --dataset-option KEY=VALUE")
        for name in SUBSET_ARGS:  # --max-train-samples: the built-in's own subset option
            if name in hf_args:
                options.setdefault(name, hf_args[name])
        for flag, value, example in (("--image-size", image_size, "image_size=14"),
                                     ("--block-size", block_size, "context=256")):
            if value is not None:
                raise ValueError(f"{flag} applies to datasets given by path; built-in datasets take their own options "
                                 f"through --dataset-option KEY=VALUE (e.g. {example}; see "
                                 "s4d_hf/training/data/builtin/)")
        return _through_datasets(spec, task, seed, builtin.load_builtin(spec, task, seed=seed, **options))
    names = ", ".join(sorted(builtins)) or "none installed"
    source = hf_source(spec, task, hf_args)
    if source is not None:
        if options:
            raise ValueError(f"--dataset-option {sorted(options)} only applies to built-in datasets; {spec} is a 🤗 "
                             "dataset (its options have their own flags, e.g. --dataset-config-name, --data-dir)")
        try:
            return load_hf_dataset(spec, task, seed, options=hf_args, block_size=block_size, image_size=image_size,
                                   source=source)
        except HubDatasetUnavailable as e:
            raise HubDatasetUnavailable(e.spec, e.reason, names) from None
    path = Path(spec)
    if not path.exists():
        raise ValueError(f"--dataset {spec!r} is neither a built-in dataset ({names}), an existing file or folder, "
                         "nor a 🤗 Hub dataset id")
    if options:
        raise ValueError(f"--dataset-option {sorted(options)} only applies to built-in datasets; {spec} is a path")
    if not_for_files:
        raise ValueError(f"{_flags(not_for_files)}: only for 🤗 datasets (a save_to_disk folder, .parquet/.arrow/.json "
                         f"files, a builder, a Hub id); {spec} is read by the package's own reader")
    splits = _load_user_files(spec, path, task, seed, block_size, image_size)
    return subsample_splits(splits, hf_args, seed)  # --max-*-samples, as the built-ins do it


def _flags(names) -> str:
    return ", ".join("--" + n.replace("_", "-") for n in names)


def _load_user_files(spec, path, task, seed, block_size, image_size) -> DatasetSplits:
    if path.is_dir():
        return load_folder(path, task, seed, image_size=image_size)
    suffix = path.suffix.lower()
    if suffix == ".npz":
        return load_npz(path, task, seed)
    if suffix == ".csv":
        return load_csv(path, task, seed)
    if suffix == ".txt":
        if task != "causal-lm":
            raise ValueError(f"--dataset {spec}: a .txt file is text for --task causal-lm; got --task {task}")
        return load_text(path, seed, block_size=block_size or 256)
    raise ValueError(f"--dataset {spec}: unsupported file type {suffix!r}; expected .npz, .csv, .txt or a folder")


# ----------------------------------------------------------------------------------------------------------------
# Built-in datasets as 🤗 datasets
# ----------------------------------------------------------------------------------------------------------------

def _through_datasets(name: str, task: str, seed: int, raw: DatasetSplits) -> DatasetSplits:
    """A built-in's splits through the 🤗 path (see the module docstring), with the built-in's own provenance.

    A split the loader already made a ``datasets.Dataset`` (:func:`~.core.is_lazy`: ``shakespeare``'s text blocks,
    ``spoken-digits``' train clips augmented afresh on every access) is kept as it is; the others are converted."""
    lazy = {split: getattr(raw, split) for split in SPLIT_DATASET_NAMES if is_lazy(getattr(raw, split))}
    if task == "causal-lm" or len(lazy) == len(SPLIT_DATASET_NAMES):
        return raw
    listed = dataclasses.replace(raw, **{split: [] for split in lazy})
    splits = dataset_dict_splits(builtin_dataset_dict(listed, task), task, name, seed)
    return dataclasses.replace(splits, **lazy, description=raw.description, license=raw.license,
                               citation=raw.citation, input_dim=raw.input_dim, series_transform=raw.series_transform)


SPLIT_DATASET_NAMES = {"train": "train", "eval": "validation", "test": "test"}


def builtin_dataset_dict(splits: DatasetSplits, task: str):
    """A loader's DatasetSplits (lists of numpy examples, see :mod:`.core`) -> ``datasets.DatasetDict`` with splits
    train / validation / test (empty ones kept) and the columns a 🤗 dataset of that task has:

    * ``label``: ``ClassLabel(names=id2label)`` for classification; ``target`` for regression (float64, as the
      loader's Python floats; a fixed-length float32 list for several targets);
    * ``series`` (time series): float32 values, a flat list for one channel, else one list of C per time step;
    * ``image``: (H, W) float32 pixels in [0, 1] (a list of C per pixel for C > 1), H and W from ``image_size``;
    * ``audio``: ``{"array": float32 samples (a list of C per sample for C > 1), "sampling_rate": int}``.

    The arrays go to Arrow in bulk (no Python float per value), so a 60,000-image dataset converts in seconds. Not
    for causal-lm: text built-ins build their own 🤗 text splits (:func:`~.hf_datasets.text_split`).
    """
    import datasets
    import pyarrow as pa

    examples = {name: getattr(splits, split) for split, name in SPLIT_DATASET_NAMES.items()}
    everything = [ex for split in examples.values() for ex in split]
    channels = splits.series_channels or np.shape(everything[0]["input_values"])[1]
    size = with_image_size(dataclasses.replace(splits, train=everything)).image_size \
        if task == "image-classification" else None
    ndim = (3 if size else 2) - (channels == 1)  # one channel is stored without its axis: (L,) or (H, W)

    def stored(x) -> np.ndarray:  # (L, C) -> the column's layout
        x = np.asarray(x, np.float32)
        x = x.reshape(size[0], size[1], x.shape[1]) if size else x
        return x[..., 0] if channels == 1 else x

    values = datasets.Value("float32")
    for _ in range(ndim):
        values = datasets.List(values)
    column = {"audio-classification": "audio", "image-classification": "image"}.get(task, "series")
    if task == "audio-classification":
        values = {"array": values, "sampling_rate": datasets.Value("int64")}
    if task == "time-series-regression":
        label, vector = "target", np.ndim(everything[0]["labels"]) > 0 if everything else False
        label_feature = datasets.List(datasets.Value("float32")) if vector else datasets.Value("float64")
    else:
        label, vector = "label", False
        label_feature = datasets.ClassLabel(names=[str(splits.id2label[i]) for i in range(len(splits.id2label))])
    features = datasets.Features({column: values, label: label_feature})
    out = {}
    for name, split in examples.items():
        inputs = _float_lists([stored(ex["input_values"]) for ex in split], ndim)
        if task == "audio-classification":
            inputs = pa.chunked_array([pa.StructArray.from_arrays(
                [chunk, pa.array(np.full(len(chunk), splits.sampling_rate, np.int64))], names=["array", "sampling_rate"])
                for chunk in inputs.chunks])
        labels = pa.array([np.asarray(ex["labels"], np.float32) if vector else ex["labels"] for ex in split],
                          features.arrow_schema.field(label).type)
        out[name] = in_memory_dataset({column: inputs, label: labels}, features)
    return datasets.DatasetDict(out)


def _float_lists(arrays: list, ndim: int, chunk: int = 2048):
    """float32 arrays of ``ndim`` dimensions -> one Arrow column of nested lists (a row per array), built from
    the arrays' buffers and offsets, ``chunk`` rows per Arrow chunk (list offsets are 32-bit)."""
    import pyarrow as pa

    chunks = []
    for start in range(0, max(len(arrays), 1), chunk):
        part = arrays[start:start + chunk]
        values = pa.array(np.concatenate([a.ravel() for a in part]) if part else np.zeros(0, np.float32))
        shapes = np.asarray([a.shape for a in part], np.int64).reshape(len(part), ndim)
        for depth in reversed(range(ndim)):  # innermost lists first: at depth d each array has prod(shape[:d])
            lengths = np.repeat(shapes[:, depth], np.prod(shapes[:, :depth], axis=1).astype(np.int64))
            offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
            values = pa.ListArray.from_arrays(pa.array(offsets), values)
        chunks.append(values)
    return pa.chunked_array(chunks)
