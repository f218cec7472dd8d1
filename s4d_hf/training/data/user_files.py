"""Readers for the datasets users give by path (``--dataset PATH``) -> :class:`~.core.DatasetSplits`.

* ``.npz`` (read with ``allow_pickle=False``): ``X`` (N, L, C) or (N, L) [image tasks: (N, H, W) or (N, H, W, C),
  integers 0..255 or floats in [0, 1]],
  ``y`` (N,) class indices/names or regression targets (N,) / (N, T); optional ``X_val``/``y_val``,
  ``X_test``/``y_test``; optional ``lengths`` (N,) (and ``lengths_val``, ``lengths_test``) for variable-length
  sequences stored right-padded; optional ``groups`` (N,) (e.g. speaker ids: a group never straddles two splits);
  optional ``label_names`` (K,); optional ``sampling_rate`` (scalar, audio).
* a folder with one sub-folder per class holding audio (.wav/.flac/.ogg, read with :func:`~.audio.read_audio`) or
  image files (PIL); or with ``train/`` (and optional ``val/``, ``test/``) folders that each hold the class
  sub-folders.
* ``.csv`` (univariate time series, one row per series): a header row; a ``label`` column; an optional ``split``
  column (train / val / test); every other column is one time step, in column order. Trailing empty cells end a
  shorter series (variable length); an empty cell inside a series is an error.
* ``.txt`` (causal-lm): UTF-8 text read as bytes; the first 90 % is train, the next 5 % eval, the last 5 % test
  (contiguous blocks, so no sentence is in two splits), each cut into ``block_size`` chunks.

Missing eval/test splits are carved out of the train split with a fixed seed: stratified by class for
classification, by whole groups when ``groups`` is given.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np

from .audio import read_audio
from .core import (
    BYTE_VOCAB_SIZE,
    CLASSIFICATION_TASKS,
    EVAL_FRACTION,
    TEST_FRACTION,
    DatasetSplits,
    split_indices,
    text_to_ids,
)

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg")
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")


def encode_class_labels(label_arrays: list[np.ndarray], label_names: list[str] | None, where: str
                        ) -> tuple[list[np.ndarray], dict[int, str]]:
    """Class labels (names, or integers possibly stored as floats) -> indices 0..K-1 and ``id2label``.

    With ``label_names`` the labels must already be indices into it; otherwise the classes are the sorted distinct
    values over all splits.
    """
    arrays = [np.asarray(a) for a in label_arrays]
    for a in arrays:
        if a.ndim != 1:
            raise ValueError(f"{where}: class labels must have shape (N,); got {a.shape}")
        if a.dtype.kind == "f":
            if not np.all(np.isfinite(a)) or not np.all(a == np.round(a)):
                raise ValueError(f"{where}: classification labels must be class indices or names; got non-integer "
                                 "floats (use --task time-series-regression for real-valued targets)")
        elif a.dtype.kind not in "iuUSb":
            raise ValueError(f"{where}: unsupported label dtype {a.dtype}; expected integers or strings")
    if label_names is not None:
        names = [str(n) for n in label_names]
        encoded = []
        for a in arrays:
            if a.dtype.kind in "US":
                raise ValueError(f"{where}: with label_names, labels must be indices 0..{len(names) - 1}; got strings")
            a = a.astype(np.int64)
            bad = a[(a < 0) | (a >= len(names))]
            if bad.size:
                raise ValueError(f"{where}: label {int(bad[0])} is out of range for {len(names)} label_names "
                                 f"(num_labels={len(names)}); expected 0..{len(names) - 1}")
            encoded.append(a)
        return encoded, dict(enumerate(names))
    values = [a.astype(str) if a.dtype.kind in "US" else a.astype(np.int64) for a in arrays]
    kinds = {v.dtype.kind for v in values if v.size}
    if len(kinds) > 1:
        raise ValueError(f"{where}: labels mix strings and numbers across splits")
    classes = np.unique(np.concatenate(values)) if values else np.array([])
    index = {c.item() if hasattr(c, "item") else c: i for i, c in enumerate(classes)}
    encoded = [np.array([index[v.item() if hasattr(v, "item") else v] for v in a], dtype=np.int64) for a in values]
    return encoded, {i: str(c) for i, c in enumerate(classes)}


def _examples(inputs: list[np.ndarray], labels) -> list[dict]:
    if labels is None:
        return [{"input_values": x} for x in inputs]
    return [{"input_values": x, "labels": y} for x, y in zip(inputs, labels)]


def _assemble(task: str, pools: dict[str, tuple[list[np.ndarray], np.ndarray]], seed: int,
              groups: np.ndarray | None = None, label_names: list[str] | None = None, where: str = "",
              **metadata) -> DatasetSplits:
    """Turn ``{"train": (inputs, labels), ["val": ...], ["test": ...]}`` into DatasetSplits, carving the missing
    eval/test splits out of train (stratified, or by group), with labels encoded for classification."""
    names = list(pools)
    raw_labels = [pools[s][1] for s in names]
    if any(y is None for y in raw_labels):
        raise ValueError(f"{where}: labels missing; {task} needs a label for every example")
    id2label = None
    if task in CLASSIFICATION_TASKS:
        encoded, id2label = encode_class_labels(raw_labels, label_names, where)
    else:
        encoded = []
        for s, y in zip(names, raw_labels):
            y = np.asarray(y)
            if y.dtype.kind not in "iuf" or y.ndim not in (1, 2):
                raise ValueError(f"{where}: regression targets ({s}) must be numbers of shape (N,) or (N, T); got "
                                 f"dtype {y.dtype}, shape {y.shape}")
            encoded.append(y.astype(np.float32))
    labelled = {s: (pools[s][0], y) for s, y in zip(names, encoded)}
    for s, (x, y) in labelled.items():
        if len(x) != len(y):
            raise ValueError(f"{where}: {s} has {len(x)} inputs but {len(y)} labels")

    train_x, train_y = labelled["train"]
    missing = [s for s in ("val", "test") if s not in labelled]
    if missing:
        fractions = tuple(EVAL_FRACTION if s == "val" else TEST_FRACTION for s in missing)
        stratify = train_y if (task in CLASSIFICATION_TASKS and groups is None) else None
        *carved, rest = split_indices(len(train_x), fractions, seed, stratify=stratify, groups=groups)
        for s, idx in zip(missing, carved):
            labelled[s] = ([train_x[i] for i in idx], train_y[idx])
        labelled["train"] = ([train_x[i] for i in rest], train_y[rest])
    elif groups is not None:
        raise ValueError(f"{where}: 'groups' is only used to carve eval/test out of train; this file already has "
                         "X_val and X_test")
    to_list = lambda y: [v.item() if np.ndim(v) == 0 else v for v in y]  # noqa: E731
    return DatasetSplits(
        train=_examples(labelled["train"][0], to_list(labelled["train"][1])),
        eval=_examples(labelled["val"][0], to_list(labelled["val"][1])),
        test=_examples(labelled["test"][0], to_list(labelled["test"][1])),
        id2label=id2label, **metadata,
    )


def load_npz(path: str | os.PathLike, task: str, seed: int = 0) -> DatasetSplits:
    """An ``.npz`` file (layout in the module docstring) -> DatasetSplits. Never unpickles."""
    if task == "causal-lm":
        raise ValueError(f"--dataset {path}: causal-lm reads a plain .txt file, not an .npz")
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
    except ValueError as e:
        raise ValueError(f"--dataset {path}: cannot read it without unpickling ({e}); store numeric or string "
                         "arrays only (variable-length data: right-pad X and give 'lengths')") from None
    if "X" not in arrays:
        raise ValueError(f"--dataset {path}: the .npz has no 'X' array (found {sorted(arrays)}); expected X (N, L, C)")
    pools, image_size = {}, None
    for split, suffix in (("train", ""), ("val", "_val"), ("test", "_test")):
        if "X" + suffix not in arrays:
            if "y" + suffix in arrays:
                raise ValueError(f"--dataset {path}: 'y{suffix}' without 'X{suffix}'")
            continue
        X = np.asarray(arrays["X" + suffix])
        if X.dtype.kind not in "iuf":
            raise ValueError(f"--dataset {path}: X{suffix} must be numeric; got dtype {X.dtype}")
        if task == "image-classification":
            if X.ndim not in (3, 4):
                raise ValueError(f"--dataset {path}: image X{suffix} must have shape (N, H, W) or (N, H, W, C); got "
                                 f"{X.shape}")
            if image_size is not None and X.shape[1:3] != image_size:
                raise ValueError(f"--dataset {path}: X{suffix} images are {X.shape[1:3]}, X images {image_size}")
            image_size = tuple(int(s) for s in X.shape[1:3])
            X = X.reshape(X.shape[0], image_size[0] * image_size[1], -1)
            if X.dtype.kind in "iu":  # 8-bit pixels -> [0, 1], as the image processor's rescale
                X = X.astype(np.float32) / np.float32(255)
        elif X.ndim == 2:
            X = X[..., None]
        elif X.ndim != 3:
            raise ValueError(f"--dataset {path}: X{suffix} must have shape (N, L, C) or (N, L); got {X.shape}")
        X = X.astype(np.float32)
        lengths = arrays.get("lengths" + suffix)
        if lengths is not None:
            lengths = np.asarray(lengths)
            if lengths.shape != (len(X),) or lengths.dtype.kind not in "iu" or lengths.min(initial=1) < 1 \
                    or lengths.max(initial=0) > X.shape[1]:
                raise ValueError(f"--dataset {path}: lengths{suffix} must be N={len(X)} integers in 1..{X.shape[1]}")
            inputs = [X[i, : int(n)] for i, n in enumerate(lengths)]
        else:
            inputs = list(X)
        pools[split] = (inputs, arrays.get("y" + suffix))
    label_names = arrays.get("label_names")
    groups = arrays.get("groups")
    if groups is not None and groups.shape != (len(pools["train"][0]),):
        raise ValueError(f"--dataset {path}: groups must have shape (N,) = ({len(pools['train'][0])},); got "
                         f"{groups.shape}")
    sampling_rate = int(arrays["sampling_rate"]) if "sampling_rate" in arrays else None
    if task == "audio-classification" and sampling_rate is None:
        raise ValueError(f"--dataset {path}: audio needs the sampling rate: add a scalar 'sampling_rate' to the .npz")
    return _assemble(task, pools, seed, groups=groups,
                     label_names=None if label_names is None else list(label_names.astype(str)),
                     where=f"--dataset {path}", input_dim=int(pools["train"][0][0].shape[-1]) if pools["train"][0]
                     else None, sampling_rate=sampling_rate, image_size=image_size,
                     description=f"user dataset {Path(path).name}")


def _read_images(files: list[Path], image_size: tuple[int, int] | None) -> tuple[list[np.ndarray], tuple, int]:
    try:
        from PIL import Image
    except ImportError:
        raise ImportError("reading image folders needs Pillow: pip install 's4d-hf[vision]'") from None
    images = []
    for file in files:
        with Image.open(file) as im:
            im.load()
            images.append(im)
    gray = all(im.mode in ("1", "L", "LA", "I", "I;16", "F") for im in images)
    arrays, sizes = [], set()
    for file, im in zip(files, images):
        im = im.convert("L" if gray else "RGB")
        if image_size is not None and im.size != (image_size[1], image_size[0]):
            # the same PIL bilinear resize as the saved image processor's
            im = im.resize((image_size[1], image_size[0]), Image.Resampling.BILINEAR)
        a = np.asarray(im, dtype=np.float32) / np.float32(255)  # [0, 1], as the image processor's rescale
        sizes.add(a.shape[:2])
        arrays.append(a.reshape(a.shape[0] * a.shape[1], -1))
    if len(sizes) > 1:
        raise ValueError(f"images have different sizes {sorted(sizes)[:4]}; pass --image-size HxW to resize them")
    size = image_size or (next(iter(sizes)) if sizes else None)
    return arrays, size, 1 if gray else 3


def load_folder(path: str | os.PathLike, task: str, seed: int = 0, image_size: tuple[int, int] | None = None
                ) -> DatasetSplits:
    """A folder of class sub-folders (audio or images), optionally under train/ val/ test/ -> DatasetSplits."""
    root = Path(path)
    where = f"--dataset {path}"
    if task not in ("audio-classification", "image-classification"):
        raise ValueError(f"{where}: a folder of class sub-folders is for audio- or image-classification; got "
                         f"--task {task}")
    extensions = AUDIO_EXTENSIONS if task == "audio-classification" else IMAGE_EXTENSIONS
    split_dirs = {"train": root / "train"}
    if split_dirs["train"].is_dir():
        for split, candidates in (("val", ("val", "validation", "eval")), ("test", ("test",))):
            found = [root / c for c in candidates if (root / c).is_dir()]
            if found:
                split_dirs[split] = found[0]
    else:
        split_dirs = {"train": root}
    listing = {}
    for split, d in split_dirs.items():
        classes = sorted(p for p in d.iterdir() if p.is_dir() and not p.name.startswith("."))
        if not classes:
            raise ValueError(f"{where}: labels missing: expected one sub-folder per class in {d} (e.g. {d}/cat/1.png)")
        files = []
        for c in classes:
            found = sorted(f for f in c.iterdir() if f.suffix.lower() in extensions and not f.name.startswith("."))
            files += [(f, c.name) for f in found]
        if not files:
            raise ValueError(f"{where}: no {'/'.join(extensions)} files in the class folders of {d}")
        listing[split] = files
    pools, sampling_rates, channels = {}, set(), set()
    for split, files in listing.items():
        if task == "audio-classification":
            inputs = []
            for f, _ in files:
                x, rate = read_audio(f)
                inputs.append(x)
                sampling_rates.add(rate)
                channels.add(x.shape[1])
        else:
            inputs, image_size, c = _read_images([f for f, _ in files], image_size)
            channels.add(c)
        pools[split] = (inputs, np.array([label for _, label in files]))
    if len(sampling_rates) > 1:
        raise ValueError(f"{where}: audio files have different sampling rates {sorted(sampling_rates)}; resample "
                         "them to one rate first")
    if len(channels) > 1:
        raise ValueError(f"{where}: input_dim mismatch: files have {sorted(channels)} channels; expected one count")
    return _assemble(task, pools, seed, where=where, input_dim=channels.pop(),
                     sampling_rate=sampling_rates.pop() if sampling_rates else None,
                     image_size=image_size if task == "image-classification" else None,
                     description=f"user dataset {root.name}")


def load_csv(path: str | os.PathLike, task: str, seed: int = 0) -> DatasetSplits:
    """A wide CSV of univariate series (layout in the module docstring) -> DatasetSplits."""
    where = f"--dataset {path}"
    if not task.startswith("time-series"):
        raise ValueError(f"{where}: CSV files hold time series; got --task {task}")
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    if not rows:
        raise ValueError(f"{where}: empty dataset (the CSV file is empty)")
    header = [h.strip() for h in rows[0]]
    if "label" not in header:
        raise ValueError(f"{where}: labels missing: the CSV header has no 'label' column (got {header[:6]}...)")
    label_col = header.index("label")
    split_col = header.index("split") if "split" in header else None
    value_cols = [i for i in range(len(header)) if i not in (label_col, split_col)]
    per_split: dict[str, tuple[list, list]] = {}
    for line, row in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in row):
            continue
        cells = [row[i].strip() if i < len(row) else "" for i in value_cols]
        while cells and cells[-1] == "":
            cells.pop()
        try:
            values = np.array([float(c) for c in cells], dtype=np.float32)
        except ValueError:
            raise ValueError(f"{where}: line {line}: every value cell must be a number (a missing value may only "
                             "end a series)") from None
        if values.size == 0:
            raise ValueError(f"{where}: line {line}: a series with no values")
        split = row[split_col].strip().lower() if split_col is not None else "train"
        split = {"validation": "val", "eval": "val"}.get(split, split)
        if split not in ("train", "val", "test"):
            raise ValueError(f"{where}: line {line}: split must be train, val or test; got {split!r}")
        label = row[label_col].strip()
        if label == "":
            raise ValueError(f"{where}: line {line}: labels missing (empty 'label' cell)")
        inputs, labels = per_split.setdefault(split, ([], []))
        inputs.append(values[:, None])
        labels.append(label)
    if "train" not in per_split:
        raise ValueError(f"{where}: empty dataset (no training rows)")
    pools = {}
    for split, (inputs, labels) in per_split.items():
        if task == "time-series-regression":
            try:
                y = np.array([float(v) for v in labels], dtype=np.float32)
            except ValueError:
                raise ValueError(f"{where}: regression labels must be numbers") from None
        else:
            y = np.array(labels)
            as_int = np.char.lstrip(y, "-")
            if np.all(np.char.isdigit(as_int)):
                y = y.astype(np.int64)
        pools[split] = (inputs, y)
    return _assemble(task, pools, seed, where=where, input_dim=1, description=f"user dataset {Path(path).name}")


def load_text(path: str | os.PathLike, seed: int = 0, block_size: int = 256) -> DatasetSplits:
    """A UTF-8 ``.txt`` -> causal-LM chunks of ``block_size`` ByT5 ids; contiguous 90/5/5 train/eval/test."""
    data = Path(path).read_bytes()
    ids = text_to_ids(data)
    n = len(ids)
    if n < 3 * 2:
        raise ValueError(f"--dataset {path}: empty dataset ({n} bytes of text)")
    cut_eval, cut_test = int(n * (1 - EVAL_FRACTION / 2 - TEST_FRACTION / 2)), int(n * (1 - TEST_FRACTION / 2))
    chunk = lambda a: [{"input_ids": a[i:i + block_size]} for i in range(0, len(a), block_size)  # noqa: E731
                       if len(a[i:i + block_size]) >= 2]
    return DatasetSplits(
        train=chunk(ids[:cut_eval]), eval=chunk(ids[cut_eval:cut_test]), test=chunk(ids[cut_test:]),
        vocab_size=BYTE_VOCAB_SIZE, description=f"user text {Path(path).name} ({n} bytes)",
    )
