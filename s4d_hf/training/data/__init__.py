"""Training data, by role:

* :mod:`.core`: the container (:class:`DatasetSplits`), task names, byte ids, splitting, checks, normalisation;
* :mod:`.user_files`: readers for ``--dataset PATH`` (.npz, .csv, .txt, folders of audio or images);
* :mod:`.audio`: the one audio-file reader of the package side;
* :mod:`.builtin`: the built-in offline datasets, one module per family, and their registry;
* :mod:`.hf_datasets`: ``--dataset SPEC`` for 🤗 Datasets (save_to_disk folders, data files, builders, Hub ids);
* :mod:`.loading`: ``--dataset SPEC`` -> :class:`DatasetSplits` (a built-in name, a path or a 🤗 dataset).

The names below are the public interface; the modules import each other directly, never this package.
"""

from .builtin import BUILTIN_DATASETS, BUILTIN_TASKS, DatasetNotInstalledError, load_builtin
from .core import (
    BYTE_OFFSET,
    BYTE_VOCAB_SIZE,
    CLASSIFICATION_TASKS,
    EOS_ID,
    PAD_ID,
    SPLIT_NAMES,
    TASKS,
    UNK_ID,
    DatasetSplits,
    check_splits,
    data_seed,
    decode_bytes,
    fit_normalization,
    input_stats,
    normalize_input,
    normalize_splits,
    split_indices,
    stratified_split,
    text_to_ids,
    with_image_size,
)
from .hf_datasets import HF_DATASET_ARGS, hf_dataset_options, load_hf_dataset
from .loading import load_dataset_spec
from .user_files import encode_class_labels, load_csv, load_folder, load_npz, load_text

__all__ = [
    "BUILTIN_DATASETS", "BUILTIN_TASKS", "BYTE_OFFSET", "BYTE_VOCAB_SIZE", "CLASSIFICATION_TASKS", "EOS_ID",
    "HF_DATASET_ARGS", "PAD_ID", "SPLIT_NAMES", "TASKS", "UNK_ID", "DatasetNotInstalledError", "DatasetSplits",
    "check_splits", "data_seed", "decode_bytes", "encode_class_labels", "fit_normalization", "hf_dataset_options",
    "input_stats", "load_builtin", "load_csv", "load_dataset_spec", "load_folder", "load_hf_dataset", "load_npz",
    "load_text", "normalize_input", "normalize_splits",
    "split_indices", "stratified_split", "text_to_ids", "with_image_size",
]
