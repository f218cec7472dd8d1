"""``--dataset SPEC`` -> :class:`~.core.DatasetSplits`: a built-in dataset's name (:mod:`.builtin`), a path to a
user file or folder (:mod:`.user_files`), or data in 🤗 Datasets (:mod:`.hf_datasets`: a save_to_disk folder, data
files, a builder with a data dir, a Hub id)."""

from __future__ import annotations

from pathlib import Path

from . import builtin
from .core import TASKS, DatasetSplits, subsample_splits, with_image_size
from .hf_datasets import SUBSET_ARGS, HubDatasetUnavailable, check_dataset_args, hf_source, load_hf_dataset
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
        return builtin.load_builtin(spec, task, seed=seed, **options)
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
