"""``--dataset SPEC`` -> :class:`~.core.DatasetSplits`: a built-in dataset's name (:mod:`.builtin`) or a path to a
user file or folder (:mod:`.user_files`)."""

from __future__ import annotations

from pathlib import Path

from . import builtin
from .core import TASKS, DatasetSplits, with_image_size
from .user_files import load_csv, load_folder, load_npz, load_text


def load_dataset_spec(spec: str, task: str, seed: int = 0, *, block_size: int | None = None,
                      image_size: tuple[int, int] | None = None, builtin_options: dict | None = None) -> DatasetSplits:
    """``--dataset SPEC`` -> DatasetSplits: a built-in name, or a path to an .npz / .csv / .txt file or a folder.

    ``block_size``: tokens per chunk of a .txt file (default 256); ``image_size``: (H, W) to resize the images of a
    folder to; ``builtin_options``: keyword options of a built-in dataset's loader (``--dataset-option``).
    Image splits always come back with ``image_size`` set (square images inferred, see `with_image_size`).
    """
    splits = _load_dataset_spec(spec, task, seed, block_size, image_size, builtin_options)
    return with_image_size(splits) if task == "image-classification" else splits


def _load_dataset_spec(spec, task, seed, block_size, image_size, builtin_options) -> DatasetSplits:
    options = dict(builtin_options or {})
    if task not in TASKS:
        raise ValueError(f"--task must be one of {', '.join(TASKS)}; got {task!r}")
    builtins = builtin.BUILTIN_DATASETS
    if spec in builtins:
        for flag, value, example in (("--image-size", image_size, "image_size=14"),
                                     ("--block-size", block_size, "context=256")):
            if value is not None:
                raise ValueError(f"{flag} applies to datasets given by path; built-in datasets take their own options "
                                 f"through --dataset-option KEY=VALUE (e.g. {example}; see "
                                 "s4d_hf/training/data/builtin/)")
        return builtin.load_builtin(spec, task, seed=seed, **options)
    path = Path(spec)
    if not path.exists():
        names = ", ".join(sorted(builtins)) or "none installed"
        raise ValueError(f"--dataset {spec!r} is neither a built-in dataset ({names}) nor an existing file or folder")
    if options:
        raise ValueError(f"--dataset-option {sorted(options)} only applies to built-in datasets; {spec} is a path")
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
