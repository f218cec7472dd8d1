"""``--dataset SPEC`` for data in 🤗 Datasets -> :class:`~.core.DatasetSplits`, with the option names of the
transformers example scripts (``--audio-column-name``, ``--train-split-name``, ``--max-train-samples``, ...).

Sources (:func:`hf_source` decides; everything else goes to :mod:`.user_files` / :mod:`.builtin`):

* a folder written by ``Dataset.save_to_disk`` / ``DatasetDict.save_to_disk`` (``datasets.load_from_disk``; a
  single ``Dataset`` is the train split);
* data files ``.parquet`` / ``.arrow`` / ``.csv`` / ``.json`` / ``.jsonl``, or a glob of them, read with
  ``datasets.load_dataset`` as the train split; a folder of such files (``train.parquet``, ``test.parquet``, ...) is
  one split per file name, as ``load_dataset(folder)`` names them. A ``.csv`` is read here for audio, image and
  causal-lm tasks, or when a column option is given; otherwise it is the wide time-series CSV of :mod:`.user_files`;
* a builder name with ``data_dir``: ``audiofolder``, ``imagefolder`` (and ``parquet``, ``csv``, ``json``,
  ``arrow``, ``text``);
* a Hub dataset id (``user/name`` or a canonical name), with ``dataset_config_name``. Offline
  (``HF_HUB_OFFLINE=1`` / ``HF_DATASETS_OFFLINE=1``) a dataset not in the local cache is a one-line error.

Options (:data:`HF_DATASET_ARGS`; the ``s4d-hf train`` flags of the same names, recorded in training_args.json so
``evaluate`` and ``release`` re-make the same splits):

* splits: ``train_split_name`` [train], ``eval_split_name`` [validation, valid, val, eval or dev, whichever
  exists], ``test_split_name`` [test]. A missing eval/test split is carved out of train as the user-file readers do
  it (:data:`~.core.EVAL_FRACTION`, :data:`~.core.TEST_FRACTION`, stratified by class; text: the last 10 % of the
  train text's bytes, as :func:`~.user_files.load_text`). ``max_train_samples`` / ``max_eval_samples`` /
  ``max_test_samples``: a seeded random subset (kept in order), taken after carving, before anything is decoded
  (causal-lm: of the ``block_size`` chunks).
* columns (default: the first column of the right feature type, else the usual name):
  ``audio_column_name`` [an ``Audio`` column, else ``audio``], ``image_column_name`` [an ``Image`` column, else
  ``image``/``img``], ``text_column_name`` [``text``], ``series_column_name`` [``series``, ``input_values``,
  ``values``, ``past_values``; comma-separated names stack univariate columns as channels], ``label_column_name``
  [a ``ClassLabel`` column, else ``label``/``labels``], ``target_column_name`` (time series: the label/target
  column, taking precedence over ``label_column_name``) [regression: ``target``, ``label``, ``labels``, ``y``].
* ``audio_sampling_rate``: decode every clip at this rate (resampled with scipy). Without it, an ``Audio`` feature
  cast with ``Audio(sampling_rate=HZ)`` is decoded at HZ; otherwise the clips' own rate, which must be one rate.
  The processor saved with the model gets that rate; audio at other rates is handled at inference by the
  processor's ``rate_policy`` (the S4D rate change, or resampling).
* ``dataset_config_name``, ``data_dir``, ``cache_dir`` (where ``datasets`` prepares data files) as in
  ``datasets.load_dataset``.

Values: labels from a ``ClassLabel`` keep its names as ``id2label``; integer or string labels become classes
0..K-1 over the sorted distinct values (:func:`~.user_files.encode_class_labels`). ``Audio`` columns are cast to
``Audio(decode=False)`` and decoded here from their bytes or file (soundfile; torchcodec, which ``datasets`` 5
decodes with, is not needed). ``Image`` columns are decoded with Pillow and converted as the saved image processor
does (grayscale when every image is, else RGB; bilinear resize to ``image_size``; /255). Time series: (L,) or (L, C)
(time first) per example. Text: each split's texts joined by newlines, as bytes, cut into ``block_size`` chunks
(:class:`TextStream`, :func:`text_split`).

Lazy: each split is a ``datasets.Dataset`` (a :data:`LazySplit`) whose transform (``with_transform``) decodes an
example when it is read, so a dataset larger than memory trains without being materialised; ``len()``, indexing
and iteration give the same example dicts as the other readers' lists (see :func:`~.core.is_lazy`). Loading makes
one pass over the selected inputs, one example at a time (the checks above; the audio rate, image size and
channel count), and holds only the label columns. The container's checks, the train-split normalisation
statistics and the normalisation itself stream over the split too (:func:`~.core.map_examples`). Causal-lm text is
lazy too: a split is a ``datasets.Dataset`` of block indices over an index of where each text row starts in the byte
stream (8 bytes per row and per block); a block's bytes are read from the Arrow buffers when it is. Nothing is
tokenised up front, and the blocks are those of joining everything and cutting it (``tests/test_hf_datasets.py``).
"""

from __future__ import annotations

import dataclasses
import glob
import io
import os
import re
import sys
from pathlib import Path

import numpy as np

from .audio import read_audio, read_wav_bytes
from .core import (
    BYTE_OFFSET,
    BYTE_VOCAB_SIZE,
    CLASSIFICATION_TASKS,
    EVAL_FRACTION,
    TEST_FRACTION,
    DatasetSplits,
    iter_examples,
    split_indices,
    subsample,
)
from .user_files import encode_class_labels

DATA_FILE_BUILDERS = {".parquet": "parquet", ".arrow": "arrow", ".csv": "csv", ".json": "json", ".jsonl": "json"}
FOLDER_BUILDERS = ("audiofolder", "imagefolder")
BUILDER_NAMES = FOLDER_BUILDERS + ("parquet", "csv", "json", "arrow", "text")
EVAL_SPLIT_CANDIDATES = ("validation", "valid", "val", "eval", "dev")

# argparse dest -> flag help; the train flags of these names (None when not given) feed the loader
HF_DATASET_ARGS = {
    "dataset_config_name": "the dataset configuration (load_dataset(..., name=))",
    "data_dir": "the data folder of a builder --dataset (audiofolder, imagefolder, parquet, ...)",
    "cache_dir": "where 🤗 datasets prepares data files [its default cache]",
    "train_split_name": "[train]",
    "eval_split_name": "[validation/valid/val/eval/dev, whichever exists; else carved from train]",
    "test_split_name": "[test; else carved from train]",
    "audio_column_name": "[the first Audio column, else 'audio']",
    "image_column_name": "[the first Image column, else 'image' or 'img']",
    "text_column_name": "causal-lm [text]",
    "series_column_name": "time series: the input series, (L,) or (L, C) per example; comma-separated names stack "
                          "univariate columns as channels [series, input_values, values, past_values]",
    "label_column_name": "[the first ClassLabel column, else 'label' or 'labels']",
    "target_column_name": "time series: the label/target column (overrides --label-column-name) "
                          "[regression: target, label, labels, y]",
    "audio_sampling_rate": "decode audio at this rate [the Audio feature's rate, else the clips' own single rate]",
    "max_train_samples": "a seeded random subset of the train split (after carving eval/test)",
    "max_eval_samples": "a seeded random subset of the eval split",
    "max_test_samples": "a seeded random subset of the test split",
}
SUBSET_ARGS = ("max_train_samples", "max_eval_samples", "max_test_samples")
INT_ARGS = SUBSET_ARGS + ("audio_sampling_rate",)


def hf_dataset_options(args) -> dict:
    """The 🤗 dataset options among parsed train arguments (a Namespace) or a saved run's training_args.json (a
    dict): {name: value} of those given (not None)."""
    get = args.get if isinstance(args, dict) else (lambda key, default=None: getattr(args, key, default))
    return {name: get(name, None) for name in HF_DATASET_ARGS if get(name, None) is not None}


def check_dataset_args(options: dict, where: str) -> dict:
    """The given (not None) 🤗 dataset options, checked: known names, positive integers where a count is expected."""
    unknown = sorted(set(options) - set(HF_DATASET_ARGS))
    if unknown:
        raise ValueError(f"{where}: unknown dataset option(s) {unknown}; expected some of {sorted(HF_DATASET_ARGS)}")
    out = {}
    for name, value in options.items():
        if value is None:
            continue
        if name in INT_ARGS:
            try:
                value = int(value)
            except (TypeError, ValueError):
                value = None
            if value is None or value < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be a positive integer; got {options[name]!r}")
        out[name] = value
    return out


def _is_glob(spec: str) -> bool:
    return any(c in spec for c in "*?[")


FILE_SUFFIXES = tuple(DATA_FILE_BUILDERS) + (".npz", ".txt", ".wav", ".flac", ".ogg", ".png", ".jpg", ".jpeg")


def _looks_like_hub_id(spec: str) -> bool:
    """``name`` or ``namespace/name`` (and not a file name: a missing local file is reported as one)."""
    return bool(re.fullmatch(r"[A-Za-z0-9][\w.-]*(/[\w.-]+)?", spec)) and ".." not in spec \
        and not spec.lower().endswith(FILE_SUFFIXES)


def is_saved_dataset(path: Path) -> bool:
    """A folder written by ``Dataset.save_to_disk`` (state.json) or ``DatasetDict.save_to_disk``
    (dataset_dict.json)."""
    return path.is_dir() and ((path / "dataset_dict.json").is_file() or (path / "state.json").is_file())


def _data_files_in(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in DATA_FILE_BUILDERS
            and not p.name.startswith(("metadata.", ".")) and "cache" not in p.parts]


def hf_source(spec: str, task: str, options: dict | None = None) -> str | None:
    """Which 🤗 source ``--dataset SPEC`` is ("saved", "files", "builder", "hub"), or None when it is for the
    built-in / user-file readers (a built-in name is never passed here)."""
    options = {k: v for k, v in (options or {}).items() if v is not None}
    column_given = any(k.endswith("_column_name") for k in options)
    path = Path(spec)
    if path.exists():
        if path.is_dir():
            if is_saved_dataset(path):
                return "saved"
            if _data_files_in(path) and not any(p.is_dir() and not p.name.startswith(".")
                                                and p.name not in ("train", "val", "validation", "eval", "test")
                                                for p in path.iterdir()):
                return "files"  # a folder of data files (a local dataset repository), not class sub-folders
            return None
        suffix = path.suffix.lower()
        if suffix == ".csv":
            return "files" if column_given or not task.startswith("time-series") else None
        return "files" if suffix in DATA_FILE_BUILDERS else None
    if _is_glob(spec):
        return "files"
    if spec in BUILDER_NAMES:
        return "builder"
    if _looks_like_hub_id(spec):
        return "hub"
    return None


# ----------------------------------------------------------------------------------------------------------------
# Opening the source: {split name: datasets.Dataset}
# ----------------------------------------------------------------------------------------------------------------

class HubDatasetUnavailable(ValueError):
    """``--dataset SPEC`` named no local data and no 🤗 Hub dataset that loads (offline: none in the cache)."""

    def __init__(self, spec: str, reason: str, builtins: str = ""):
        self.spec, self.reason = spec, reason
        listed = f" ({builtins})" if builtins else ""
        super().__init__(f"--dataset {spec!r} is neither a built-in dataset{listed}, an existing file or folder, nor "
                         f"a 🤗 Hub dataset that loads: {reason}")


def _audio_path_feature():
    """``datasets.Audio`` that stores files as (bytes, path) without torchcodec: ``datasets`` 5 imports torchcodec
    to encode any audio value, even a file name, so the audiofolder builder fails without it. The stored feature is
    a plain ``Audio`` (same ``_type``), so the prepared cache is the one torchcodec would have written."""
    import datasets

    @dataclasses.dataclass
    class AudioFile(datasets.Audio):
        def encode_example(self, value):
            if isinstance(value, (str, os.PathLike)):
                return {"bytes": None, "path": str(value)}
            if isinstance(value, (bytes, bytearray)):
                return {"bytes": bytes(value), "path": None}
            if isinstance(value, dict) and "array" not in value:
                return {"bytes": value.get("bytes"), "path": value.get("path")}
            return super().encode_example(value)

    return AudioFile


def _load(builder: str, where: str, **kwargs):
    """``datasets.load_dataset(builder, **kwargs)`` (the audiofolder builder without torchcodec, see
    :func:`_audio_path_feature`)."""
    import datasets

    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    if builder != "audiofolder":
        return datasets.load_dataset(builder, **kwargs)
    cache_dir = kwargs.pop("cache_dir", None)
    dataset_builder = datasets.load_dataset_builder(builder, cache_dir=cache_dir, **kwargs)
    dataset_builder.BASE_FEATURE = _audio_path_feature()
    dataset_builder.download_and_prepare()
    return dataset_builder.as_dataset()


def _offline() -> bool:
    import datasets

    return bool(getattr(datasets.config, "HF_HUB_OFFLINE", False)) or \
        os.environ.get("HF_DATASETS_OFFLINE", "").upper() in ("1", "ON", "YES", "TRUE")


def open_source(spec: str, source: str, options: dict, where: str) -> tuple[dict, list[Path]]:
    """(``{split name: datasets.Dataset}``, the folders relative audio/image file paths may be relative to)."""
    import datasets

    config_name, data_dir, cache_dir = (options.get(k) for k in ("dataset_config_name", "data_dir", "cache_dir"))
    if source == "saved":
        if config_name or data_dir:
            raise ValueError(f"{where}: --dataset-config-name / --data-dir do not apply to a save_to_disk folder")
        try:
            loaded = datasets.load_from_disk(spec)
        except IndexError:  # datasets 5 cannot read back a split saved with no rows
            raise ValueError(f"{where}: datasets.load_from_disk fails on this folder (a split saved with no rows?); "
                             "leave empty splits out of the DatasetDict") from None
        bases = [Path(spec)]
    elif source == "files":
        if config_name:
            raise ValueError(f"{where}: --dataset-config-name does not apply to data files")
        path = Path(spec)
        if path.is_dir():
            builder = {DATA_FILE_BUILDERS[p.suffix.lower()] for p in _data_files_in(path)}
            if len(builder) > 1:
                raise ValueError(f"{where}: the folder holds data files of several kinds ({sorted(builder)}); keep "
                                 "one kind per folder, or pass a glob")
            loaded, bases = _load(str(path), where, cache_dir=cache_dir, data_dir=data_dir), [path]
        else:
            files = sorted(glob.glob(spec)) if _is_glob(spec) else [spec]
            if not files:
                raise ValueError(f"{where}: the glob matches no file")
            kinds = {DATA_FILE_BUILDERS.get(Path(f).suffix.lower()) for f in files}
            if None in kinds or len(kinds) != 1:
                raise ValueError(f"{where}: expected data files of one kind ({', '.join(DATA_FILE_BUILDERS)}); got "
                                 f"{sorted({Path(f).suffix for f in files})}")
            loaded = _load(kinds.pop(), where, data_files={"train": files}, cache_dir=cache_dir)
            bases = sorted({Path(f).resolve().parent for f in files})
    elif source == "builder":
        if not data_dir:
            raise ValueError(f"{where}: the {spec} builder needs the data folder: --data-dir PATH")
        if not Path(data_dir).is_dir():
            raise ValueError(f"{where}: --data-dir {data_dir} is not a folder")
        loaded = _load(spec, where, name=config_name, data_dir=data_dir, cache_dir=cache_dir)
        bases = [Path(data_dir)]
    else:  # a Hub id
        try:
            loaded = _load(spec, where, name=config_name, data_dir=data_dir, cache_dir=cache_dir)
        except (ConnectionError, FileNotFoundError, datasets.exceptions.DatasetNotFoundError) as e:
            if _offline():
                raise HubDatasetUnavailable(spec, "not in the local cache, and downloads are off (HF_HUB_OFFLINE / "
                                            "HF_DATASETS_OFFLINE is set)") from None
            reason = " ".join(str(e).split())[:300]
            raise HubDatasetUnavailable(spec, f"does not load ({type(e).__name__}: {reason})") from None
        bases = [Path(data_dir)] if data_dir else []
    if isinstance(loaded, datasets.Dataset):
        loaded = {"train": loaded}
    elif not isinstance(loaded, (dict, datasets.DatasetDict)):
        raise ValueError(f"{where}: loaded a {type(loaded).__name__}, expected a Dataset or DatasetDict (streaming "
                         "datasets are not supported)")
    return dict(loaded), bases


# ----------------------------------------------------------------------------------------------------------------
# Splits and columns
# ----------------------------------------------------------------------------------------------------------------

def choose_splits(available: dict, options: dict, where: str, allow_empty: bool = False) -> dict[str, str | None]:
    """{"train": name, "val": name or None, "test": name or None}: the dataset's split names (None: carve it).
    ``allow_empty``: a split without rows is kept as it is (a built-in's test-only dataset), not refused."""
    names = list(available)
    listed = ", ".join(names) or "none"

    def given(flag, name):
        if name not in available:
            raise ValueError(f"{where}: --{flag} {name!r}: no such split; the dataset has: {listed}")
        return name

    train = given("train-split-name", options.get("train_split_name") or "train") \
        if options.get("train_split_name") or "train" in available else None
    if train is None:
        if len(names) == 1:
            train = names[0]
        else:
            raise ValueError(f"{where}: no 'train' split; the dataset has: {listed} (choose one with "
                             "--train-split-name)")
    if options.get("eval_split_name"):
        eval_ = given("eval-split-name", options["eval_split_name"])
    else:
        eval_ = next((n for n in EVAL_SPLIT_CANDIDATES if n in available and n != train), None)
    if options.get("test_split_name"):
        test = given("test-split-name", options["test_split_name"])
    else:
        test = "test" if "test" in available and "test" != train else None
    chosen = {"train": train, "val": eval_, "test": test}
    for role, name in chosen.items():
        if name is not None and len(available[name]) == 0 and not allow_empty:
            raise ValueError(f"{where}: empty dataset: the {name!r} split ({role}) has no examples")
    return chosen


def _feature_kind(feature) -> str:
    """Audio, Image, ClassLabel (subclasses included, e.g. the audiofolder shim), else the class name (Value,
    List, ...)."""
    import datasets

    for kind in (datasets.Audio, datasets.Image, datasets.ClassLabel):
        if isinstance(feature, kind):
            return kind.__name__
    return type(feature).__name__


def _pick_column(features: dict, flag: str, given: str | None, kinds: tuple[str, ...], names: tuple[str, ...],
                 where: str, split: str) -> str:
    columns = list(features)
    if given is not None:
        if given not in features:
            raise ValueError(f"{where}: --{flag} {given!r}: no such column in the {split!r} split; it has: "
                             f"{', '.join(columns)}")
        return given
    for name, feature in features.items():
        if _feature_kind(feature) in kinds:
            return name
    for name in names:
        if name in features:
            return name
    raise ValueError(f"{where}: no {'/'.join(names)} column in the {split!r} split (columns: {', '.join(columns)}); "
                     f"name it with --{flag}")


def _input_column(task: str, features: dict, options: dict, where: str, split: str) -> list[str]:
    if task == "audio-classification":
        return [_pick_column(features, "audio-column-name", options.get("audio_column_name"), ("Audio",),
                             ("audio", "file", "path"), where, split)]
    if task == "image-classification":
        return [_pick_column(features, "image-column-name", options.get("image_column_name"), ("Image",),
                             ("image", "img", "pixel_values"), where, split)]
    if task == "causal-lm":
        return [_pick_column(features, "text-column-name", options.get("text_column_name"), (),
                             ("text", "content"), where, split)]
    given = options.get("series_column_name")
    if given is not None and "," in given:
        return [_pick_column(features, "series-column-name", name.strip(), (), (), where, split)
                for name in given.split(",") if name.strip()]
    return [_pick_column(features, "series-column-name", given, (), ("series", "input_values", "values",
                                                                     "past_values"), where, split)]


def _label_column(task: str, features: dict, options: dict, where: str, split: str) -> str:
    if task.startswith("time-series") and options.get("target_column_name"):
        return _pick_column(features, "target-column-name", options["target_column_name"], (), (), where, split)
    if task == "time-series-regression":
        return _pick_column(features, "label-column-name", options.get("label_column_name"), (),
                            ("target", "label", "labels", "y"), where, split)
    return _pick_column(features, "label-column-name", options.get("label_column_name"), ("ClassLabel",),
                        ("label", "labels"), where, split)


def _class_labels(task: str, column: str, parts: dict, where: str) -> tuple[dict, dict, dict | None]:
    """{role: (N,) int64 class indices}, id2label and {label value: class index} (None for a ClassLabel, whose
    values are the indices), from a ClassLabel, integer or string column."""
    first = next(iter(parts.values())).features[column]
    kind = _feature_kind(first)
    if kind == "ClassLabel":
        names = list(first.names)
        out = {}
        for role, ds in parts.items():
            if _feature_kind(ds.features[column]) != "ClassLabel" or list(ds.features[column].names) != names:
                raise ValueError(f"{where}: label column {column!r} has different ClassLabel names across splits")
            y = np.asarray(ds[column], dtype=np.int64)
            bad = y[(y < 0) | (y >= len(names))]
            if bad.size:
                raise ValueError(f"{where}: label column {column!r}: label {int(bad[0])} ({role} split) is not one of "
                                 f"the ClassLabel's {len(names)} classes (-1 is an unlabelled example)")
            out[role] = y
        return out, dict(enumerate(names)), None
    dtype = getattr(first, "dtype", None)
    if kind != "Value" or not (dtype == "string" or dtype == "large_string" or dtype == "bool"
                               or str(dtype).startswith(("int", "uint"))):
        raise ValueError(f"{where}: label column {column!r} is {first}; {task} needs a ClassLabel, integer or string "
                         "column (name another with --label-column-name)")
    roles = list(parts)
    arrays, index = [], {}
    for role in roles:
        values = parts[role][column]
        if any(v is None for v in values):
            raise ValueError(f"{where}: label column {column!r} has empty labels in the {role} split")
        arrays.append(np.asarray(values))
    encoded, id2label = encode_class_labels(arrays, None, f"{where}: label column {column!r}")
    for role, codes in zip(roles, encoded):
        index.update(zip(map(_Label.key, parts[role][column]), codes.tolist()))
    return dict(zip(roles, encoded)), id2label, index


def _regression_targets(column: str, parts: dict, where: str) -> dict:
    out = {}
    for role, ds in parts.items():
        try:
            y = np.asarray(ds[column], dtype=np.float32)
        except (TypeError, ValueError):
            y = None
        if y is None or y.ndim not in (1, 2) or not np.all(np.isfinite(y)):
            raise ValueError(f"{where}: target column {column!r} ({role} split, {ds.features[column]}) must hold "
                             "finite numbers, one or a fixed-length list per example")
        out[role] = y
    return out

# ----------------------------------------------------------------------------------------------------------------
# Decoding inputs
# ----------------------------------------------------------------------------------------------------------------

def _resolve(path: str, bases: list[Path]) -> Path:
    candidate = Path(path)
    if candidate.is_file() or candidate.is_absolute():
        return candidate
    for base in bases:
        if (base / path).is_file():
            return base / path
    return candidate


def _read_audio_value(value, bases: list[Path], where: str) -> tuple[np.ndarray, int]:
    """An ``Audio(decode=False)`` value ({bytes, path}), a path string or an {array, sampling_rate} dict ->
    ((L, C) float32, rate)."""
    if isinstance(value, str):
        value = {"bytes": None, "path": value}
    if not isinstance(value, dict):
        raise ValueError(f"{where}: expected audio (a file path, {{bytes, path}} or {{array, sampling_rate}}); got "
                         f"{type(value).__name__}")
    if value.get("array") is not None:
        x = np.asarray(value["array"], dtype=np.float32)
        if not value.get("sampling_rate"):
            raise ValueError(f"{where}: an audio array without its sampling_rate")
        return (x[:, None] if x.ndim == 1 else x), int(value["sampling_rate"])
    data = value.get("bytes")
    if data:
        try:
            import soundfile
        except ImportError:
            soundfile = None
        if soundfile is not None:
            x, rate = soundfile.read(io.BytesIO(data), dtype="float32", always_2d=True)
            return x, int(rate)
        if bytes(data[:4]) != b"RIFF":
            raise ImportError("decoding audio bytes needs soundfile: pip install 's4d-hf[audio]'")
        rate, samples = read_wav_bytes(bytes(data), value.get("path") or "<bytes>")
        return samples[:, None], int(rate)
    if value.get("path"):
        path = _resolve(value["path"], bases)
        if not path.is_file():
            raise ValueError(f"{where}: audio file {value['path']} not found")
        return read_audio(path)
    raise ValueError(f"{where}: an audio value with neither bytes nor path")


def _resample(x: np.ndarray, rate: int, target: int) -> np.ndarray:
    from math import gcd

    try:
        from scipy.signal import resample_poly
    except ImportError:
        raise ImportError("resampling audio needs scipy: pip install 's4d-hf[audio]'") from None
    g = gcd(rate, target)
    return resample_poly(x, target // g, rate // g, axis=0).astype(np.float32)


def _audio_decoder(parts: dict, column: str, options: dict, bases: list[Path], where: str
                   ) -> tuple[dict, "_AudioInput", int, set]:
    """({role: the split with its Audio column cast to Audio(decode=False)}, the decoder, the sampling rate, the
    channel counts seen), after one pass over every clip (one at a time) that checks they decode at one rate."""
    import datasets

    feature = next(iter(parts.values())).features[column]
    target = options.get("audio_sampling_rate") or getattr(feature, "sampling_rate", None)
    mono = getattr(feature, "num_channels", None) == 1
    decoder = _AudioInput(column, bases, target, mono, where)
    out, rates, channels = {}, {}, set()
    for role, ds in parts.items():
        if _feature_kind(ds.features[column]) == "Audio":
            ds = ds.cast_column(column, datasets.Audio(decode=False))
        out[role] = ds
        for i, row in enumerate(iter_examples(ds.select_columns([column]))):
            x, rate = decoder.decode(row, f"{where}: {role} example {i}, column {column!r}")
            rates.setdefault(rate, f"{role} example {i}")
            channels.add(x.shape[1])
    if len(rates) > 1:
        seen = ", ".join(f"{r} Hz ({w})" for r, w in sorted(rates.items()))
        raise ValueError(f"{where}: audio column {column!r} has clips at mixed sampling rates ({seen}); decode them at "
                         "one rate with --audio-sampling-rate HZ (or cast the column with Audio(sampling_rate=HZ))")
    return out, decoder, next(iter(rates)) if rates else target, channels


class _AudioInput:
    """A row's audio value -> (L, C) float32 at the decoding rate (mono when the feature says so)."""

    def __init__(self, column, bases, target, mono, where):
        self.column, self.bases, self.target, self.mono, self.where = column, bases, target, mono, where

    def decode(self, row: dict, where: str) -> tuple[np.ndarray, int]:
        x, rate = _read_audio_value(row[self.column], self.bases, where)
        if self.mono and x.shape[1] > 1:
            x = x.mean(1, keepdims=True)
        if self.target and rate != self.target:
            x, rate = _resample(x, rate, self.target), self.target
        return x, rate

    def __call__(self, row: dict) -> np.ndarray:
        return self.decode(row, f"{self.where}: column {self.column!r}")[0]


GRAY_MODES = ("1", "L", "LA", "I", "I;16", "F")


def _image_decoder(parts: dict, column: str, image_size, where: str) -> tuple["_ImageInput", tuple[int, int], set]:
    """Images -> (H*W, C) float32 in [0, 1], as :func:`~.user_files._read_images` (and the saved image processor):
    grayscale when every image is, else RGB; bilinear resize to ``image_size``. One pass over every image (one at a
    time) checks them and finds the size and whether any is in colour."""
    decoder = _ImageInput(column, image_size, where)
    sizes, any_colour, channels = set(), False, set()
    for role, ds in parts.items():
        for i, row in enumerate(iter_examples(ds.select_columns([column]))):
            a = decoder.decode(row, f"{where}: {role} example {i}")
            any_colour |= a.shape[2] > 1
            sizes.add(a.shape[:2])
            channels.add(a.shape[2])
    if len(sizes) > 1:
        raise ValueError(f"{where}: images have different sizes {sorted(sizes)[:4]}; pass --image-size HxW to resize "
                         "them")
    decoder.any_colour = any_colour  # gray next to colour: as PIL's L -> RGB, the gray value in every channel
    return decoder, tuple(int(s) for s in next(iter(sizes))), ({3} if any_colour else channels)


class _ImageInput:
    """A row's image -> (H*W, C) float32 in [0, 1] (C = 3 when any image of the dataset is in colour)."""

    def __init__(self, column, image_size, where):
        self.column, self.image_size, self.where, self.any_colour = column, image_size, where, False

    def decode(self, row: dict, where: str) -> np.ndarray:
        """(H, W, C) float32 in [0, 1], C as the image has it (1 or 3)."""
        from PIL import Image

        value, column, image_size = row[self.column], self.column, self.image_size
        if isinstance(value, Image.Image):
            im = value
            im = im.convert("L" if im.mode in GRAY_MODES else "RGB")
            if image_size is not None and im.size != (image_size[1], image_size[0]):
                im = im.resize((image_size[1], image_size[0]), Image.Resampling.BILINEAR)
            a = np.asarray(im, dtype=np.float32) / np.float32(255)
        else:  # an array column: (H, W) or (H, W, C), 8-bit or [0, 1]
            a = np.asarray(value)
            if a.ndim not in (2, 3) or a.dtype.kind not in "iuf":
                raise ValueError(f"{where}: image column {column!r} holds {a.dtype} {a.shape}; expected an Image "
                                 "feature or (H, W[, C]) numbers")
            a = a.astype(np.float32) / (np.float32(255) if a.dtype.kind in "iu" else np.float32(1))
            if image_size is not None and a.shape[:2] != tuple(image_size):
                raise ValueError(f"{where}: --image-size resizes Image features only; this array image is "
                                 f"{a.shape[:2]}")
        return a.reshape(a.shape[0], a.shape[1], -1)

    def __call__(self, row: dict) -> np.ndarray:
        a = self.decode(row, self.where)
        return (np.repeat(a, 3, axis=2) if self.any_colour and a.shape[2] == 1 else a).reshape(
            -1, 3 if self.any_colour else a.shape[2])


class _SeriesInput:
    """A row's series column(s) -> (L, C) float32 (time first; several univariate columns stacked as channels)."""

    def __init__(self, columns, where):
        self.columns, self.where = columns, where

    def decode(self, row: dict, where: str) -> np.ndarray:
        columns = self.columns
        try:
            channels = [np.asarray(row[c], dtype=np.float32) for c in columns]
        except (TypeError, ValueError):
            raise ValueError(f"{where}: series column(s) {columns} must hold numbers") from None
        if len(channels) > 1:
            if any(c.ndim != 1 for c in channels) or len({len(c) for c in channels}) > 1:
                raise ValueError(f"{where}: columns {columns} must each hold one series of the same length")
            x = np.stack(channels, axis=1)
        else:
            x = channels[0]
            x = x[:, None] if x.ndim == 1 else x
        if x.ndim != 2 or x.shape[0] < 1:
            raise ValueError(f"{where}: a series must be (L,) or (L, C) (time first); got {x.shape}")
        return x

    def __call__(self, row: dict) -> np.ndarray:
        return self.decode(row, self.where)


def _check_series(parts: dict, decoder: _SeriesInput, where: str) -> set:
    """One pass over every series (one at a time): they decode; the channel counts seen."""
    channels = set()
    for role, ds in parts.items():
        for i, row in enumerate(iter_examples(ds.select_columns(decoder.columns))):
            channels.add(decoder.decode(row, f"{where}: {role} example {i}").shape[1])
    return channels


class _Label:
    """A row's label value -> the example's label: a class index (ClassLabel value, or the index of an int/str
    label), or a regression target (a float, or a (T,) float32 array)."""

    def __init__(self, column: str, classes: dict | None, regression: bool):
        self.column, self.classes, self.regression = column, classes, regression

    @staticmethod
    def key(value):
        return str(value) if isinstance(value, str) else int(value)

    def __call__(self, row: dict):
        value = row[self.column]
        if self.regression:  # a number keeps the column's precision (float64 in Python); a list is float32
            y = np.asarray(value)
            return float(y) if y.ndim == 0 else y.astype(np.float32)
        return self.classes[self.key(value)] if self.classes is not None else int(value)


class _Decode:
    """The decoding transform of a lazy split (``Dataset.with_transform``): a batch of rows -> the examples
    ``{"input_values": (L, C) float32, "labels": ...}`` the other readers hold in lists."""

    def __init__(self, inputs, label: _Label):
        self.inputs, self.label = inputs, label

    def __call__(self, batch: dict) -> dict:
        keys = list(batch)
        n = len(batch[keys[0]]) if keys else 0
        rows = [{k: batch[k][i] for k in keys} for i in range(n)]
        return {"input_values": [self.inputs(row) for row in rows], "labels": [self.label(row) for row in rows]}


# ----------------------------------------------------------------------------------------------------------------
# The loader
# ----------------------------------------------------------------------------------------------------------------

def _quiet_progress():
    """datasets' progress bars off while stderr is a log file (restored by the returned function)."""
    import datasets

    if sys.stderr.isatty() or not datasets.is_progress_bar_enabled():
        return lambda: None
    datasets.disable_progress_bars()
    return datasets.enable_progress_bars


def load_hf_dataset(spec: str, task: str, seed: int = 0, *, options: dict | None = None,
                    block_size: int | None = None, image_size: tuple[int, int] | None = None,
                    source: str | None = None) -> DatasetSplits:
    """A 🤗 dataset (see the module docstring for ``spec`` and ``options``) -> DatasetSplits in raw units.

    seed: carves the missing eval/test splits and draws the max_*_samples subsets (train, eval, test: seed, seed + 1,
    seed + 2, as the built-ins do). Raises ValueError (one line) for a missing split or column, a label column of the
    wrong type, an empty split, audio at mixed rates, a Hub dataset missing from the cache offline.
    """
    try:
        import datasets  # noqa: F401
    except ImportError:
        raise ImportError("--dataset: reading 🤗 datasets needs the datasets package: pip install datasets") from None
    where = f"--dataset {spec}"
    options = check_dataset_args(dict(options or {}), where)
    source = source or hf_source(spec, task, options)
    if source is None:
        raise ValueError(f"{where}: not a 🤗 dataset (a save_to_disk folder, data files, a builder or a Hub id)")
    restore = _quiet_progress()
    try:
        available, bases = open_source(spec, source, options, where)
        return _to_splits(spec, task, seed, available, bases, options, block_size, image_size, where)
    finally:
        restore()


def dataset_dict_splits(available: dict, task: str, name: str, seed: int = 0) -> DatasetSplits:
    """``{split name: datasets.Dataset}`` built in memory (a built-in dataset, see
    :func:`~.loading.builtin_dataset_dict`) -> DatasetSplits, through everything a save_to_disk folder goes through
    (columns, ClassLabel names, label encoding, the decoding checks, lazy splits); a split may be empty."""
    where = f"--dataset {name}"
    return _to_splits(name, task, seed, dict(available), [], {}, None, None, where, allow_empty=True)


def _to_splits(spec, task, seed, available, bases, options, block_size, image_size, where,
               allow_empty=False) -> DatasetSplits:
    chosen = choose_splits(available, options, where, allow_empty)
    parts = {role: available[name] for role, name in chosen.items() if name is not None}
    for role, ds in parts.items():  # the same columns everywhere
        input_columns = _input_column(task, ds.features, options, where, chosen[role])
        if task != "causal-lm":
            label_column = _label_column(task, ds.features, options, where, chosen[role])
    info = parts["train"].info
    metadata = dict(description=f"🤗 dataset {Path(spec).name if os.path.exists(spec) else spec}"
                    + (f": {' '.join(info.description.split())[:500]}" if info.description else ""),
                    license=info.license or "unknown", citation=info.citation or "")
    limits = [options.get(k) for k in SUBSET_ARGS]
    if task == "causal-lm":
        return _text_splits(parts, input_columns[0], seed, block_size or 256, limits, metadata, where)

    if task in CLASSIFICATION_TASKS:
        labels, id2label, class_index = _class_labels(task, label_column, parts, where)
    else:
        labels, id2label, class_index = _regression_targets(label_column, parts, where), None, None
    indices = {role: np.arange(len(ds)) for role, ds in parts.items()}
    missing = [role for role in ("val", "test") if role not in parts]
    if missing:  # carved as the user-file readers do (user_files._assemble)
        n = len(parts["train"])
        if n < len(missing) + 1:
            raise ValueError(f"{where}: the train split has {n} example(s): too few to carve out "
                             f"{' and '.join(missing)} splits")
        fractions = tuple(EVAL_FRACTION if s == "val" else TEST_FRACTION for s in missing)
        stratify = labels["train"] if task in CLASSIFICATION_TASKS else None
        *carved, rest = split_indices(n, fractions, seed, stratify=stratify)
        for role, idx in zip(missing, carved):
            indices[role] = idx
        indices["train"] = rest
    sources = {"val": chosen["val"] or chosen["train"], "test": chosen["test"] or chosen["train"],
               "train": chosen["train"]}
    for offset, role in enumerate(("train", "val", "test")):
        indices[role] = subsample(indices[role], limits[offset], seed + offset)
    selected = {role: available[sources[role]].select(indices[role]) for role in ("train", "val", "test")}
    if task == "audio-classification":
        selected, inputs, metadata["sampling_rate"], channels = _audio_decoder(selected, input_columns[0], options,
                                                                               bases, where)
    elif task == "image-classification":
        inputs, metadata["image_size"], channels = _image_decoder(selected, input_columns[0], image_size, where)
    else:
        inputs = _SeriesInput(input_columns, where)
        channels = _check_series(selected, inputs, where)
    if len(channels) > 1:
        raise ValueError(f"{where}: input_dim mismatch: examples have {sorted(channels)} channels; expected one count")
    input_dim = channels.pop()
    label = _Label(label_column, None if task == "time-series-regression" else class_index,
                   task == "time-series-regression")
    decode = _Decode(inputs, label)
    columns = list(dict.fromkeys(input_columns + [label_column]))
    lazy = {role: _as_lazy_split(ds.with_transform(decode, columns=columns)) for role, ds in selected.items()}
    return DatasetSplits(train=lazy["train"], eval=lazy["val"], test=lazy["test"], id2label=id2label,
                         input_dim=input_dim, **metadata)


LazySplit = None  # the datasets.Dataset subclass of lazy splits, made on first use (datasets is optional)


def _as_lazy_split(ds):
    """``ds`` (a ``datasets.Dataset`` with its decoding transform) as a :data:`LazySplit`: a ``datasets.Dataset``
    that also concatenates like a list (``split + other`` is the list of both splits' examples)."""
    global LazySplit
    if LazySplit is None:
        import datasets

        class LazySplit(datasets.Dataset):  # noqa: F811 (module-level once made, so it pickles)
            """A split of decoded examples: ``datasets.Dataset`` with a decoding transform; ``+`` as a list."""

            def __add__(self, other):
                return list(self) + list(other)

            def __radd__(self, other):
                return list(other) + list(self)

        LazySplit.__module__, LazySplit.__qualname__ = __name__, "LazySplit"
    ds.__class__ = LazySplit
    return ds


# ----------------------------------------------------------------------------------------------------------------
# Text: byte blocks cut lazily from a text column
# ----------------------------------------------------------------------------------------------------------------

class TextStream:
    """The byte ids of a text column joined into one stream, never materialised: each non-empty row's ids (UTF-8
    bytes + 3, :func:`~.core.text_to_ids`) followed by ``separator``; with ``separator_at_end=False`` the last
    separator is left off (texts joined *between*, as ``"\\n".join``). Empty and null rows add nothing.

    Construction reads only the rows' byte lengths (pyarrow, no Python strings) and keeps an index of where each row
    starts in the stream: 8 bytes per row, however long the texts (24 while it is built). :meth:`ids` reads the bytes of a range from the
    dataset's Arrow buffers (memory-mapped for a save_to_disk folder) when it is asked for.
    """

    def __init__(self, ds, column: str, separator: tuple[int, ...], separator_at_end: bool, where: str):
        import pyarrow.compute as pc

        feature = ds.features[column]
        if getattr(feature, "dtype", None) not in ("string", "large_string"):
            raise ValueError(f"{where}: text column {column!r} must hold strings; it is {feature}")
        self.rows = ds.select_columns([column]).with_format("arrow")
        self.separator = np.asarray(separator, dtype=np.int64)
        spans = [pc.binary_length(batch.column(0)).fill_null(0).to_numpy().astype(np.int64)
                 for batch in self.rows.iter(batch_size=65536)]
        spans = np.concatenate(spans) if spans else np.zeros(0, np.int64)
        spans[spans > 0] += len(self.separator)  # a row's bytes, then the separator
        self.starts = np.zeros(len(spans) + 1, np.int64)  # row i: stream[starts[i]:starts[i + 1]]
        np.cumsum(spans, out=self.starts[1:])
        trailing = 0 if separator_at_end or not self.starts[-1] else len(self.separator)
        self.length = int(self.starts[-1]) - trailing

    def ids(self, start: int, stop: int) -> np.ndarray:
        """``stream[start:stop]`` as (stop - start,) int64 ids, read from the rows that overlap it."""
        first = int(np.searchsorted(self.starts, start, side="right")) - 1
        last = int(np.searchsorted(self.starts, stop, side="left")) - 1
        table = self.rows[first:last + 1]
        pieces = []
        for offset, value in enumerate(table.column(0)):
            row = first + offset
            begin, end = self.starts[row], self.starts[row + 1]
            text_end = end - len(self.separator) if end > begin else end
            a, b = max(start, begin), min(stop, text_end)
            if a < b:
                data = np.frombuffer(value.as_buffer(), dtype=np.uint8)
                pieces.append(data[a - begin:b - begin].astype(np.int64) + BYTE_OFFSET)
            a, b = max(start, text_end), min(stop, end)
            if a < b:
                pieces.append(self.separator[a - text_end:b - text_end])
        return np.concatenate(pieces) if pieces else np.zeros(0, np.int64)


class TextBlocks:
    """The decoding transform of a lazy text split: a batch of block indices -> ``{"input_ids": [(L,) int64]}``,
    block k being ``stream[start + k * block_size : min(start + (k + 1) * block_size, stop)]``."""

    def __init__(self, stream: TextStream, start: int, stop: int, block_size: int):
        self.stream, self.start, self.stop, self.block_size = stream, start, stop, block_size

    def __call__(self, batch: dict) -> dict:
        begin = [self.start + int(k) * self.block_size for k in batch["block"]]
        return {"input_ids": [self.stream.ids(b, min(b + self.block_size, self.stop)) for b in begin]}


def text_split(stream: TextStream, block_size: int, *, start: int = 0, stop: int | None = None,
               short_piece: bool = True, limit: int | None = None, seed: int = 0):
    """A lazy split (:data:`LazySplit`) of ``stream[start:stop]`` cut into ``block_size`` ids: every full block;
    the shorter remainder is dropped (as run_clm.py), unless ``short_piece`` and the whole piece is shorter than one
    block (then it is one block, when it holds at least 2 ids). ``limit``: a seeded random subset of the blocks,
    kept in order (:func:`~.core.subsample`). Nothing is read from the texts until an example is."""
    stop = stream.length if stop is None else stop
    count = (stop - start) // block_size
    if count == 0 and short_piece and stop - start >= 2:
        count = 1
    blocks = in_memory_dataset({"block": subsample(np.arange(count, dtype=np.int64), limit, seed)})
    return _as_lazy_split(blocks.with_transform(TextBlocks(stream, start, stop, block_size)))


def in_memory_dataset(columns: dict, features=None):
    """``datasets.Dataset.from_dict(columns, features)`` for columns already in Arrow or numpy, without its content
    fingerprint: to fingerprint an in-memory table, ``datasets`` pickles and hashes it, which holds about three times
    its size in Python memory (and time) at once. The fingerprint is random instead; only ``map`` caches use it, and
    nothing here maps."""
    import datasets
    from datasets.fingerprint import generate_random_fingerprint
    from datasets.table import InMemoryTable

    info = datasets.DatasetInfo(features=features) if features is not None else None
    return datasets.Dataset(InMemoryTable.from_pydict(columns), info=info, fingerprint=generate_random_fingerprint())


NEWLINE_ID = ord("\n") + BYTE_OFFSET


def _text_splits(parts, column, seed, block_size, limits, metadata, where) -> DatasetSplits:
    """Each split's texts joined by newlines, as bytes, cut into ``block_size`` blocks on access; a missing eval /
    test split is the contiguous tail of the train text's bytes, as :func:`~.user_files.load_text`."""
    streams = {role: TextStream(ds, column, (NEWLINE_ID,), False, f"{where}: {role} split") for role, ds in
               parts.items()}
    pieces = {role: (streams[role], 0, streams[role].length) for role in streams}
    missing = [role for role in ("val", "test") if role not in parts]
    if missing:  # contiguous tail blocks of the train text's bytes
        n = streams["train"].length
        fractions = {"val": EVAL_FRACTION, "test": TEST_FRACTION}
        start = n - sum(int(n * fractions[r]) for r in missing)
        pieces["train"] = (streams["train"], 0, start)
        for role in missing:
            pieces[role] = (streams["train"], start, start + int(n * fractions[role]))
            start += int(n * fractions[role])
    out = {}
    for offset, role in enumerate(("train", "val", "test")):
        stream, start, stop = pieces[role]
        out[role] = text_split(stream, block_size, start=start, stop=stop, limit=limits[offset], seed=seed + offset)
    return DatasetSplits(train=out["train"], eval=out["val"], test=out["test"], vocab_size=BYTE_VOCAB_SIZE,
                         **metadata)
